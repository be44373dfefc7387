"""Reward-model verifier: the whole path on a tiny, randomly initialised model built here.

No reward-model weights can be downloaded on these machines, so
:func:`build_tiny_reward_model` builds a ``LlamaForSequenceClassification``
(hidden size 32, 2 layers, one output, random weights from seed 0) and a
byte-level BPE tokenizer with a chat template into a temp folder. Its scores
mean nothing; what is tested is the path: chat template, truncation, batching,
stored scores, and the threshold and rank rules.

The ``rm_score`` tests use real data: Qwen2.5-Math's labelled traces
(``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl``, 100 MATH test
problems x 8 samples), whose ``rm_score`` is Qwen's reward model's score.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datagen.config import ConfigError, VerifierChoice
from datagen.records import Sample
from datagen.stages.base import StageContext
from datagen.stages.verify import verify, verify_groups
from datagen.views import open_part
from verifiers.precomputed import PrecomputedConfig, select, verify_scores
from verifiers.reward import RewardConfig, score_batch, verify_batch

from .conftest import compose

TRACES = Path(__file__).parent / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
)


def build_tiny_reward_model(folder: Path, *, chat_template: bool = True) -> Path:
    """Write a random 2-layer sequence-classification model and its tokenizer to ``folder``.

    Stands in for a real reward model (none can be downloaded here): the same
    ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` loading path, the
    same chat-template rendering, random scores.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the user asked and the assistant answered well"], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))


def rm(path: Path, **kw) -> RewardConfig:
    return RewardConfig(model=str(path), device="cpu", **kw)


CAPITAL, COLOUR = "What is the capital of France?", "Name a colour."
PROMPTS = [CAPITAL, CAPITAL, COLOUR, COLOUR, "Say hello."]
ANSWERS = ["Paris.", "The capital is Paris, a city on the Seine.", "Blue.", "Green!", "Hello."]


def test_scores_are_stored_and_do_not_depend_on_batching(tiny_rm):
    prompts, answers = PROMPTS, ANSWERS
    one = verify_batch(prompts, answers, rm(tiny_rm, rule="threshold", batch_size=1))
    many = verify_batch(prompts, answers, rm(tiny_rm, rule="threshold", batch_size=8))
    assert all(v.verifier == "reward" and isinstance(v.score, float) for v in one)
    assert [v.score for v in one] == pytest.approx([v.score for v in many], abs=1e-5)
    assert len({v.score for v in one}) == len(one)  # random weights, distinct answers
    system = {"role": "system", "content": "Be brief."}
    chat = [[system, {"role": "user", "content": p}] for p in prompts]
    assert score_batch(chat, answers, rm(tiny_rm)) != [v.score for v in one]  # system turn counts


def test_threshold_rule_passes_scores_at_or_above_it(tiny_rm):
    prompts, answers = PROMPTS, ANSWERS
    scores = score_batch(prompts, answers, rm(tiny_rm))
    cut = sorted(scores)[2]  # the middle score: it passes (>=), two below fail
    verdicts = verify_batch(prompts, answers, rm(tiny_rm, rule="threshold", threshold=cut))
    assert [v.passed for v in verdicts] == [s >= cut for s in scores]
    assert sum(v.passed for v in verdicts) == 3
    assert all(v.details["threshold"] == cut for v in verdicts)


def test_rank_rules_pick_the_best_of_each_prompt(tiny_rm):
    prompts, answers = PROMPTS, ANSWERS
    groups = ["a", "a", "b", "b", "c"]
    scores = score_batch(prompts, answers, rm(tiny_rm))
    top1 = verify_batch(prompts, answers, rm(tiny_rm, rule="top_k", k=1), group_ids=groups)
    for g in set(groups):
        members = [i for i, x in enumerate(groups) if x == g]
        best = max(members, key=lambda i: scores[i])
        assert [top1[i].passed for i in members] == [i == best for i in members]
    frac = verify_batch(
        prompts, answers, rm(tiny_rm, rule="top_fraction", fraction=0.5), group_ids=groups
    )
    assert [v.passed for v in frac] == [v.passed for v in top1]  # ceil(0.5 * 2) = 1, ceil(0.5) = 1
    assert {v.details["of"] for v in top1} == {1, 2}
    with pytest.raises(ValueError, match="group_ids"):
        verify_batch(prompts, answers, rm(tiny_rm, rule="top_k"))


@pytest.mark.parametrize(
    ("scores", "rule", "kw", "expected"),
    [
        # ties at the cut all pass: never split equal answers by input order
        ([1.0, 3.0, 3.0, 2.0], "top_k", {"k": 1}, [False, True, True, False]),
        ([1.0, 3.0, 2.0, 2.0], "top_k", {"k": 2}, [False, True, True, True]),
        ([5.0, 5.0, 5.0], "top_k", {"k": 1}, [True, True, True]),
        # k larger than the group: everyone passes
        ([1.0, 2.0], "top_k", {"k": 5}, [True, True]),
        # ceil(0.25 * 4) = 1, ceil(0.5 * 3) = 2
        ([1.0, 4.0, 2.0, 3.0], "top_fraction", {"fraction": 0.25}, [False, True, False, False]),
        ([1.0, 4.0, 2.0], "top_fraction", {"fraction": 0.5}, [False, True, True]),
        # a missing score is unverifiable and takes no place in the ranking
        ([None, 1.0, 2.0], "top_k", {"k": 2}, [None, True, True]),
        ([2.0, None, 1.0], "threshold", {"threshold": 1.0}, [True, None, True]),
    ],
)
def test_select_table(scores, rule, kw, expected):
    groups = ["p"] * len(scores)
    assert [p for p, _ in select(scores, rule=rule, group_ids=groups, **kw)] == expected


def test_ties_and_empty_answers_through_the_model(tiny_rm):
    cfg = rm(tiny_rm, rule="top_k", k=1)
    answers = ["Same answer.", "Same answer.", "", "<think>only thoughts, cut off", "Other."]
    verdicts = verify_batch(["q"] * 5, answers, cfg, group_ids=["p"] * 5)
    assert verdicts[0].score == verdicts[1].score  # equal answers tie exactly (rounded)
    empty = verdicts[2:4]
    assert all(v.passed is False and v.score is None for v in empty)
    assert all(v.details["error"] == "no_answer" for v in empty)
    assert verdicts[0].details["of"] == 3  # the two empty answers are not ranked
    tied_top = verdicts[0].score > verdicts[4].score
    assert [v.passed for v in (verdicts[0], verdicts[1], verdicts[4])] == [
        tied_top,
        tied_top,
        not tied_top,
    ]


def test_reasoning_is_stripped_unless_asked(tiny_rm):
    traces = ["<think>Let me think about France.</think>Paris.", "Paris."]
    stripped = score_batch(["q", "q"], traces, rm(tiny_rm))
    assert stripped[0] == stripped[1]
    whole = score_batch(["q", "q"], traces, rm(tiny_rm, strip_reasoning=False))
    assert whole[0] != whole[1]


def test_long_conversations_lose_their_start_and_are_flagged(tiny_rm):
    ending = " ".join(["the assistant answered well"] * 60)
    cfg = rm(tiny_rm, rule="threshold", max_length=64)
    verdicts = verify_batch(["A first question?", "Another, different one?"], [ending] * 2, cfg)
    assert all(v.details.get("truncated") for v in verdicts)
    assert verdicts[0].score == verdicts[1].score  # only the shared ending was scored
    short = verify_batch(["q"], ["Paris."], cfg)[0]
    assert "truncated" not in short.details


def test_tokenizer_without_chat_template_scores_text_pairs(tmp_path):
    folder = build_tiny_reward_model(tmp_path / "pair_rm", chat_template=False)
    cfg = RewardConfig(model=str(folder), device="cpu", rule="threshold", max_length=32)
    verdicts = verify_batch(["q1", "q2"], ["Paris.", " ".join(["word"] * 100)], cfg)
    assert all(isinstance(v.score, float) for v in verdicts)
    assert verdicts[1].details.get("truncated") and not verdicts[0].details.get("truncated")


def test_config_errors_say_what_to_set():
    with pytest.raises(ValueError, match=r"model=Skywork"):
        RewardConfig()
    with pytest.raises(ValueError, match="rule must be one of"):
        RewardConfig(model="x", rule="best")
    with pytest.raises(ValueError, match="fraction"):
        RewardConfig(model="x", rule="top_fraction", fraction=0.0)


def sample(pid: str, index: int, content: str, reasoning: str | None = None) -> Sample:
    return Sample(
        id=f"{pid}-{index}",
        problem_id=pid,
        domain="general",
        messages=[{"role": "user", "content": f"prompt {pid}"}],
        reference=None,
        teacher="t",
        model="m",
        sample_index=index,
        reasoning=reasoning,
        content=content,
    )


def test_stage_ranks_within_each_problem_and_counts(tiny_rm, tmp_path):
    batch = [
        sample("a", 0, "Paris."),
        sample("a", 1, "Lyon.", reasoning="hmm"),
        sample("b", 0, "Blue."),
        sample("b", 1, ""),
    ]
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    cfg = {"verifier": VerifierChoice("reward", rm(tiny_rm, rule="top_k", k=1))}
    out = verify_groups(batch, ctx, cfg=cfg)
    assert [len(s.verdicts) for s in out] == [1, 1, 1, 1]
    assert sum(s.passed is True for s in out[:2]) == 1  # one best per prompt
    assert (out[2].passed, out[3].passed) == (True, False)  # the empty answer fails
    assert ctx.stats["verify_groups"] == {"passed": 2, "failed": 2}
    with pytest.raises(ConfigError, match="verify_groups"):
        verify(batch, ctx, cfg=cfg)  # batch slices would split prompts


# ---------------------------------------------------------------------------
# rm_score of Qwen2.5-Math's traces, imported as a precomputed score

RM_THRESHOLD = 5.5
"""rm_score >= 5.5 selects 10 of the 800 traces: samples 2, 6, 7 of problem 1 (two of
them exactly 5.5, so the boundary is inclusive) and samples 0-6 of problem 63 (its
sample 7 scores 5.4375). All ten are labelled correct."""
RM_SELECTED = [
    "math_cot_100-1-2",
    "math_cot_100-1-6",
    "math_cot_100-1-7",
    *[f"math_cot_100-63-{i}" for i in range(7)],
]


def test_rm_score_threshold_selects_the_documented_rows():
    rows = [json.loads(line) for line in TRACES.read_text().splitlines()]
    cfg = PrecomputedConfig(rule="threshold", threshold=RM_THRESHOLD)
    verdicts = verify_scores([r["rm_score"] for r in rows], cfg)
    assert [r["id"] for r, v in zip(rows, verdicts, strict=True) if v.passed] == RM_SELECTED
    assert all(r["correct"] for r, v in zip(rows, verdicts, strict=True) if v.passed)


def test_rm_score_imported_through_the_pipeline(tmp_path):
    """Replay teacher -> rm_score on an imported verdict -> verifier=precomputed."""
    from datagen.__main__ import run

    cfg = compose(
        "+pipeline=math",
        "pipeline.stages=[load,dedup,generate,verify]",
        f"source.path={TRACES}",
        "teacher=replay",
        f"teacher.path={TRACES}",
        "teacher.label_field=correct",
        "teacher.label_name=qwen",
        "teacher.score_field=rm_score",
        "teacher.order_field=sample_idx",
        "teacher.detail_fields=[id]",
        "generation.n=8",
        "run.generate_batch_size=100",
        "run.batch_size=800",
        "run.progress=false",
        "verifier=precomputed",
        "verifier.source=qwen",
        f"verifier.threshold={RM_THRESHOLD}",
    )
    summary = run(cfg, tmp_path)
    assert summary["positives"] == len(RM_SELECTED) and summary["samples_kept"] == 800

    rows = open_part(str(tmp_path / "stages" / "03_verify" / "data"))
    chosen = sorted(
        json.loads(r["verdicts"][0]["details"])["id"] for r in rows if r["passed"] is True
    )
    assert chosen == sorted(RM_SELECTED)
    first = rows[0]["verdicts"]
    assert [v["verifier"] for v in first] == ["qwen", "precomputed"]
    assert first[1]["score"] == first[0]["score"]  # the rm_score, carried over
