"""The math verifier (``verifiers.math``) on real labelled traces and on table cases.

Traces: ``fixtures/math/traces_qwen25_math_cot_100.jsonl``, 100 MATH test problems
x 8 Qwen2.5-Math CoT samples with Qwen's correctness labels (MIT, see
``shared/data/README.md``). Every trace where our verdict differs from the label is
listed, with a reason, in ``fixtures/math/traces_disagreements.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers.math import VERSION, MathVerifyConfig, extract_answer, verify, verify_batch

FIXTURES = Path(__file__).parent / "fixtures" / "math"
TRACES = FIXTURES / "traces_qwen25_math_cot_100.jsonl"
DISAGREEMENTS = FIXTURES / "traces_disagreements.json"


# ---------------------------------------------------------------------------
# Real traces against their labels


@pytest.fixture(scope="module")
def graded_traces() -> list[tuple[dict, object]]:
    rows = [json.loads(line) for line in TRACES.read_text().splitlines()]
    verdicts = verify_batch([r["response"] for r in rows], [r["answer"] for r in rows])
    return list(zip(rows, verdicts, strict=True))


def test_traces_agree_with_labels(graded_traces):
    agree = sum(v.passed is row["correct"] for row, v in graded_traces)
    assert len(graded_traces) == 800
    assert agree / len(graded_traces) >= 0.98, f"agreement {agree}/800"


def test_trace_disagreements_are_exactly_the_listed_ones(graded_traces):
    found = {
        row["id"]: (row["correct"], v.passed, v.details["extracted"])
        for row, v in graded_traces
        if v.passed is not row["correct"]
    }
    listed = {
        d["id"]: (d["label"], d["verdict"], d["extracted"])
        for d in json.loads(DISAGREEMENTS.read_text())
    }
    assert found == listed


def test_trace_verdicts_have_the_contract_shape(graded_traces):
    _, verdict = graded_traces[0]
    assert verdict.verifier == "math"
    assert verdict.version == VERSION
    assert set(verdict.details) == {"extracted", "reference", "error", "how", "reason"}
    for row, v in graded_traces:
        assert v.score == (1.0 if v.passed else 0.0)
        assert v.details["reference"] == row["answer"]


# ---------------------------------------------------------------------------
# Equivalence, both directions


EQUIVALENT = [
    pytest.param(r"\frac{1}{2}", "0.5", id="fraction-vs-decimal"),
    pytest.param(r"\frac{3}{4}", r"\dfrac{3}{4}", id="frac-vs-dfrac"),
    pytest.param(r"\frac{3}{4}", r"\frac34", id="frac-without-braces"),
    pytest.param(r"12\frac{3}{5}", r"\frac{63}{5}", id="mixed-number"),
    pytest.param("10{,}000", "10000", id="thousands-separator-braced"),
    pytest.param("3,250", "3250", id="thousands-separator"),
    pytest.param("[1, 2)", "[1,2)", id="interval"),
    pytest.param(r"(-\infty, 3]", r"(-\infty,3]", id="interval-infinite"),
    pytest.param(r"\{1, 2\}", r"\{2, 1\}", id="set-order"),
    pytest.param("1, 2", "2, 1", id="solution-list-order"),
    pytest.param(r"\text{Tuesday}", r"\text{Tuesday}", id="text-answer"),
    pytest.param(r"\text{(A)}", "A", id="choice-letter"),
    pytest.param(r"5\text{ cm}", "5", id="units"),
    pytest.param(r"30^\circ", "30", id="degrees"),
    pytest.param(r"\$5.00", "5", id="dollars"),
    pytest.param(r"50\%", "50", id="percent"),
    pytest.param("x = 3", "3", id="assignment-vs-value"),
    pytest.param(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", id="nested-braces-radical"),
    pytest.param("(x+1)^2", "x^2+2x+1", id="expanded-polynomial"),
    pytest.param(r"7\pi", r"7 \pi", id="pi"),
    pytest.param(
        r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", id="matrix"
    ),
]

NOT_EQUIVALENT = [
    pytest.param("2", "3", id="integers"),
    pytest.param(r"\frac{1}{3}", "0.33", id="decimal-too-short"),
    pytest.param("[1, 2)", "(1, 2)", id="interval-endpoint"),
    pytest.param(r"\{1, 2\}", r"\{1, 3\}", id="set-element"),
    pytest.param(r"\text{Tuesday}", r"\text{Monday}", id="text-answer"),
    pytest.param("x^2", "x^3", id="expression"),
    pytest.param(r"30^\circ", "60", id="degrees"),
]


def boxed(answer: str) -> str:
    return f"Reasoning... so the answer is $\\boxed{{{answer}}}$."


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_forms(a, b):
    assert verify(boxed(a), b).passed is True
    assert verify(boxed(b), a).passed is True


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_different_answers(a, b):
    assert verify(boxed(a), b).passed is False
    assert verify(boxed(b), a).passed is False


# ---------------------------------------------------------------------------
# Extraction


EXTRACTION = [
    pytest.param(r"first \boxed{1}, then \boxed{2}", "2", id="last-boxed-wins"),
    pytest.param(r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}", id="nested-braces"),
    pytest.param(r"\boxed{\{1, 2\}}", r"\{1, 2\}", id="escaped-braces"),
    pytest.param(r"so $\boxed 5$.", "5", id="boxed-without-braces"),
    pytest.param(r"\fbox{7}", "7", id="fbox"),
    pytest.param(r"<think>\boxed{1}</think> So \boxed{2}", "2", id="think-block-ignored"),
    pytest.param(r"<think>maybe 1</think> The final answer is 2", "2", id="think-then-phrase"),
    pytest.param(r"I guess \boxed{1} </think> \boxed{2}", "2", id="lone-close-think"),
    pytest.param(r"\boxed{2} <think>or \boxed{1}", "2", id="unclosed-think"),
    pytest.param("The final answer is $42$.", "42", id="final-answer-phrase"),
    pytest.param("The final answer is 5. I hope it is correct.", "5", id="minerva-phrase"),
    pytest.param("**Final Answer:** 3", "3", id="markdown-phrase"),
    pytest.param("Answer: \\(x = 3\\)", "x = 3", id="answer-colon"),
    pytest.param(r"the answer is \boxed{3", None, id="cut-off-box"),
    pytest.param("I could not solve it.", None, id="no-answer"),
    pytest.param(r"<think>\boxed{1}", None, id="cut-off-in-think"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTION)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_can_keep_think():
    assert extract_answer(r"<think>\boxed{1}", strip_think=False) == "1"


def test_think_block_is_not_graded():
    trace = r"<think>Is it \boxed{2}? No.</think> The answer is \boxed{3}."
    assert verify(trace, "3").passed is True
    assert verify(trace, "2").passed is False
    raw = MathVerifyConfig(strip_think=False)
    assert verify(r"\boxed{3} <think>\boxed{2}", "2", raw).passed is True


def test_no_answer_fails():
    verdict = verify("I could not solve it.", "3")
    assert verdict.passed is False
    assert verdict.score == 0.0
    assert verdict.details["extracted"] is None
    assert verdict.details["error"] == "no_answer"
    assert verdict.details["how"] == "none" and verdict.details["reason"]


# ---------------------------------------------------------------------------
# Unverifiable references


@pytest.mark.parametrize(
    ("reference", "error"),
    [
        pytest.param(None, "no_reference", id="none"),
        pytest.param("  ", "no_reference", id="blank"),
        pytest.param("}{", "unparseable_reference", id="stray-braces"),
        pytest.param("???", "unparseable_reference", id="punctuation"),
        pytest.param(r"\frac{", "unparseable_reference", id="cut-off-latex"),
    ],
)
def test_unparseable_reference_is_unverifiable(reference, error):
    verdict = verify(boxed("3"), reference)
    assert verdict.passed is None
    assert verdict.score is None
    assert verdict.details["error"] == error


def test_string_only_reference_still_matches_itself():
    assert verify(boxed("???"), "???").passed is True


# ---------------------------------------------------------------------------
# Batches, timeouts and config


def test_batch_keeps_order_and_matches_verify():
    predictions = [boxed("2"), boxed("3"), "no answer", boxed("4")]
    references = ["2", "2", "2", None]
    expected = [verify(p, r) for p, r in zip(predictions, references, strict=True)]
    assert verify_batch(predictions, references) == expected
    assert [v.passed for v in expected] == [True, False, False, None]


def test_batch_edge_cases():
    assert verify_batch([], []) == []
    with pytest.raises(ValueError, match="one reference"):
        verify_batch(["a"], [])


def test_slow_comparison_times_out_and_pool_recovers():
    # (10^7)! is evaluated exactly by SymPy: minutes of CPU but little memory.
    config = MathVerifyConfig(timeout_s=1.0, workers=2)
    verdicts = verify_batch([boxed("(10^{7})!"), boxed("2")], ["1", "2"], config)
    assert verdicts[0].passed is None
    assert verdicts[0].score is None
    details = verdicts[0].details
    assert (details["extracted"], details["reference"], details["error"]) == (
        "(10^{7})!",
        "1",
        "timeout",
    )
    assert verdicts[1].passed is True
    # The killed worker was replaced: the next batch runs normally.
    again = verify_batch([boxed("2"), boxed("3"), boxed("0.5")], ["2", "2", r"\frac12"], config)
    assert [v.passed for v in again] == [True, False, True]


def test_forkserver_workers_hold_none_of_the_callers_memory():
    """Workers fork from a server that loaded only Math-Verify: 300 MB held here is not
    in them (forked from this process, each would count it), and one killed at its
    timeout is replaced by another from the server."""
    import psutil

    ballast = bytearray(300_000_000)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident here
    config = MathVerifyConfig(timeout_s=1.0, workers=2, start_method="forkserver")
    predictions = [boxed(f"{i}/4") for i in range(200)] + [boxed("(10^{7})!")]
    references = [str(i / 4) for i in range(200)] + ["1"]
    verdicts = verify_batch(predictions, references, config)
    assert all(v.passed for v in verdicts[:200])
    assert verdicts[200].passed is None and verdicts[200].details["error"] == "timeout"

    def workers() -> list[psutil.Process]:
        me = psutil.Process()
        return [p for p in me.children(recursive=True) if p.ppid() != me.pid]

    assert workers(), "the pool's workers are the fork server's children"
    assert all(p.memory_info().rss < 250_000_000 for p in workers())
    # Distinct traces, so the batch goes to the pool again (after the killed worker).
    again = verify_batch(
        [boxed(f"{i}/8") for i in range(100)], [str(i / 8) for i in range(100)], config
    )
    assert all(v.passed for v in again)
    assert workers() and all(p.memory_info().rss < 250_000_000 for p in workers())
    del ballast


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_s", 0),
        ("workers", 0),
        ("float_rounding", -1),
        ("numeric_precision", 0),
        ("start_method", "teleport"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"{field}.*set"):
        MathVerifyConfig(**{field: value})


@pytest.mark.parametrize(
    ("text", "reference", "fallback", "passed"),
    [
        ("So, $\\cos 0^\\circ = 1$. This is the answer.", "1", "last_expression", True),
        ("So, $\\cos 0^\\circ = 1$. This is the answer.", "1", "none", False),
        ("It is $2$, no wait, it is $3$.", "3", "last_expression", True),
        ("It is $3$, no wait, it is $2$.", "3", "last_expression", False),
        ("The result is \\boxed{2}, then 3.", "3", "last_expression", False),
        ("no numbers here", "1", "last_expression", False),
    ],
    ids=["lenient-eq", "strict-eq", "last-wins", "last-wrong", "boxed-first", "nothing"],
)
def test_fallback_last_expression(text, reference, fallback, passed):
    verdict = verify(text, reference, MathVerifyConfig(fallback=fallback))
    assert verdict.passed is passed
