"""verifiers.rewards: the math and code verifiers called the way TRL's GRPOTrainer calls them.

The call shape (``prompts=``, ``completions=``, ``completion_ids=``, dataset columns,
``trainer_state``, ``log_extra``, ``log_metric``) is the one in TRL's
``GRPOTrainer._calculate_rewards``. Real data: Qwen2.5-Math's labelled traces and MBPP's
reference solutions (``fixtures/``). ``tests/test_trl_training.py`` runs a real GRPO step.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from verifiers.code import CodeVerifierConfig, TestSpec
from verifiers.math import MathVerifyConfig
from verifiers.rewards import REWARDS, code_reward, completion_text, math_reward
from verifiers.sandbox import SandboxConfig

FIXTURES = Path(__file__).parent / "fixtures"
QWEN = FIXTURES / "math" / "traces_qwen25_math_cot_100.jsonl"
FAST_CODE = CodeVerifierConfig(SandboxConfig(timeout_s=3.0, cpu_s=3))


def qwen_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in QWEN.read_text().splitlines()[:n]]


def trl_call(fn, completions, **columns):
    """Call ``fn`` with the keyword arguments GRPOTrainer passes besides the columns."""
    logged: dict[str, list] = {}
    rewards = fn(
        prompts=[[{"role": "user", "content": "q"}]] * len(completions),
        completions=completions,
        completion_ids=[[1, 2]] * len(completions),
        trainer_state=object(),
        log_extra=logged.__setitem__,
        log_metric=lambda name, value: None,
        **columns,
    )
    return rewards, logged


def test_math_reward_reads_plain_and_conversational_completions():
    completions = [
        r"<think>maybe \boxed{3}</think> so the answer is \boxed{\frac{1}{2}}",
        [{"role": "assistant", "content": r"\boxed{0.5}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{0.25}"}]}],
        "I am not sure.",  # no final answer: a wrong completion, not an unverifiable one
        r"\boxed{7}",  # no reference for this row: unverifiable
    ]
    rewards, logged = trl_call(math_reward, completions, answer=["0.5", "1/2", "1/2", "1/2", None])
    assert rewards == [1.0, 1.0, 0.0, 0.0, None]
    assert logged["math_outcome"][:4] == ["passed", "passed", "failed", "failed"]
    assert logged["math_outcome"][4].startswith("unverifiable")


@pytest.mark.parametrize("column", ["answer", "reference", "solution"])
def test_math_reward_takes_the_reference_from_any_known_column(column):
    assert math_reward([r"\boxed{2}", r"\boxed{3}"], **{column: ["2", "2"]}) == [1.0, 0.0]


def test_math_reward_agrees_with_qwen_labels_on_real_traces():
    rows = qwen_rows(32)
    rewards, _ = trl_call(
        math_reward,
        [[{"role": "assistant", "content": r["response"]}] for r in rows],
        answer=[r["answer"] for r in rows],
    )
    labels = [float(r["correct"]) for r in rows]
    assert None not in rewards
    assert sum(r == y for r, y in zip(rewards, labels, strict=True)) >= 30
    assert {0.0, 1.0} <= set(rewards)


def test_a_grading_timeout_is_no_reward_rather_than_zero():
    # Past timeout_s the worker is killed (verifiers.math's hard limit): unverifiable.
    # (10^7)! is evaluated exactly by SymPy: minutes of CPU, so a 1 s limit always stops it
    # (a microsecond limit did not: a warm worker can finish a small parse first).
    config = MathVerifyConfig(timeout_s=1.0, workers=1)
    rewards, logged = trl_call(
        functools.partial(math_reward, config=config), [r"\boxed{(10^{7})!}"] * 3, answer=["1"] * 3
    )
    assert rewards == [None, None, None]
    assert logged["math_outcome"] == ["unverifiable: timeout"] * 3


def test_math_reward_from_several_threads_at_once():
    rows = qwen_rows(24)
    texts, answers = [r["response"] for r in rows], [r["answer"] for r in rows]
    expected = math_reward(texts, answer=answers)
    results: dict[int, list] = {}

    def work(i: int) -> None:
        lo, hi = i * 6, (i + 1) * 6
        results[i] = math_reward(texts[lo:hi], answer=answers[lo:hi])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r for i in range(4) for r in results[i]] == expected


def _rewards_in_child(texts: list[str], answers: list[str]) -> list:
    return math_reward(texts, answer=answers)


def test_math_reward_in_spawned_worker_processes():
    """Each spawned worker starts its own grading pool and stops it when it exits.

    Forking a process whose grading pool is running is left out: the pool's threads make
    that unsafe, as for any threaded program (start workers with spawn or forkserver).
    """
    rows = qwen_rows(8)
    texts, answers = [r["response"] for r in rows], [r["answer"] for r in rows]
    expected = math_reward(texts, answer=answers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:  # hung at exit before the fix
        halves = list(
            pool.map(_rewards_in_child, [texts[:4], texts[4:]], [answers[:4], answers[4:]])
        )
    assert halves[0] + halves[1] == expected


def test_reward_functions_pickle_with_bound_options():
    fn = pickle.loads(pickle.dumps(functools.partial(math_reward, config=MathVerifyConfig())))
    assert fn([r"\boxed{1}"], answer=["1"]) == [1.0]
    assert {"math": math_reward, "code": code_reward} == REWARDS


def test_bad_columns_name_the_fix():
    with pytest.raises(ValueError, match=r"no reference column.*\['answer', 'reference'"):
        trl_call(math_reward, ["x"], question=["q"])
    with pytest.raises(ValueError, match="'answer' has 2 values for 1 completions"):
        math_reward(["x"], answer=["1", "2"])
    with pytest.raises(TypeError, match="list of message dicts"):
        completion_text(["just a string in a list"])  # type: ignore[list-item]


def mbpp_rows(n: int) -> list[dict]:
    path = FIXTURES / "code" / "mbpp_train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["canonical_passes"]][:n]


def fenced(code: str) -> str:
    return f"<think>use a loop</think>\nHere it is:\n```python\n{code}\n```\n"


def test_code_reward_runs_the_completion_against_the_tests_in_the_sandbox():
    rows = mbpp_rows(3)
    specs = [TestSpec.mbpp(r["test_list"], r["test_setup_code"]) for r in rows]
    as_json = json.dumps({"kind": "assert", "setup": "", "test_code": specs[2].test_code})
    completions = [
        [{"role": "assistant", "content": fenced(rows[0]["canonical_solution"])}],
        fenced(f"def {rows[1]['entry_point']}(*args):\n    return None"),  # wrong answer
        fenced(rows[2]["canonical_solution"]),
        "I would write a function.",  # no code block: fails, as in the pipeline
        fenced("print(1)"),  # row without tests: unverifiable
    ]
    tests = [specs[0], specs[1].__dict__ | {"cases": []}, as_json, specs[0], None]
    rewards, logged = trl_call(
        functools.partial(code_reward, config=FAST_CODE), completions, tests=tests
    )
    assert rewards == [1.0, 0.0, 1.0, 0.0, None], logged
    assert logged["code_outcome"][-1] == "unverifiable: no tests"


def test_code_reward_with_a_malformed_spec_is_unverifiable():
    rewards, logged = trl_call(
        functools.partial(code_reward, config=FAST_CODE),
        [fenced("x = 1"), fenced("x = 1")],
        reference=['{"kind": "assert"}', "not json"],  # datagen stores tests as JSON text
    )
    assert rewards == [None, None]
    assert all(o.startswith("unverifiable") for o in logged["code_outcome"])
