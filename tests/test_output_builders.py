"""Output builders on real traces: SFT sets, pair policies and invariants, difficulty, subsets.

The samples are Qwen2.5-Math-7B traces of MATH test problems with their
correctness labels (``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl``,
8 samples per problem), turned into :class:`~datagen.records.Sample` records as
the teacher and verify stage would produce them. No runner, no network.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from datagen.config import ConfigError, OutputConfig
from datagen.output.builders import build_outputs
from datagen.output.difficulty import difficulty, expected_pairs
from datagen.output.formats import pair_features, sft_features
from datagen.output.pairs import build_pairs
from datagen.output.sft import build_sft
from datagen.output.subsets import take_subset
from datagen.records import Sample, Verdict, content_hash

from .conftest import ROOT

TRACES = ROOT / "tests" / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
MIXED = (6, 17, 28, 37, 54, 58, 70, 81, 92, 98)
"""Problems whose 8 traces hold both correct and incorrect ones."""
UNSOLVED = (3, 72, 84)
SOLVED = (0, 1, 2)


def trace_samples(problems=MIXED + UNSOLVED + SOLVED, truncate_first: bool = False) -> list[Sample]:
    """Samples built from the labelled traces of the given problem indices.

    The reasoning is everything before the last paragraph (as a thinking model
    separates it), the answer the last paragraph. ``truncate_first`` marks every
    prompt's sample 0 as cut off at max_tokens.
    """
    out = []
    for line in TRACES.read_text().splitlines():
        r = json.loads(line)
        if r["problem_idx"] not in problems:
            continue
        reasoning, _, answer = r["response"].rpartition("\n\n")
        cut = truncate_first and r["sample_idx"] == 0
        messages = [
            {"role": "system", "content": r["system_prompt"]},
            {"role": "user", "content": r["problem"]},
        ]
        pid = f"p{r['problem_idx']}"
        out.append(
            Sample(
                id=content_hash(pid, r["sample_idx"]),
                problem_id=pid,
                domain="math",
                messages=messages,
                reference=r["answer"],
                teacher="replay",
                model="Qwen2.5-Math-7B-Instruct",
                sample_index=r["sample_idx"],
                reasoning=reasoning or None,
                content=answer,
                prompt_tokens=len(r["problem"].split()) + 20,
                completion_tokens=len(r["response"].split()),
                finish_reason="length" if cut else "stop",
                truncated=cut,
                verdicts=[Verdict("math", "1", r["correct"], float(r["correct"]), {})],
                passed=r["correct"],
            )
        )
    return out


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.id: s for s in samples}


def synthetic(pid: str, lengths_pos: list[int], lengths_neg: list[int]) -> list[Sample]:
    """One prompt with positives and negatives of the given completion lengths."""
    rows = []
    for i, (n, ok) in enumerate(
        [(n, True) for n in lengths_pos] + [(n, False) for n in lengths_neg]
    ):
        rows.append(
            Sample(
                id=f"{pid}-{i}",
                problem_id=pid,
                domain="math",
                messages=[{"role": "user", "content": f"question {pid}"}],
                reference="1",
                teacher="local",
                model="m",
                sample_index=i,
                content="x " * n,
                completion_tokens=n,
                prompt_tokens=10,
                finish_reason="stop",
                verdicts=[Verdict("math", "1", ok)],
                passed=ok,
            )
        )
    return rows


# -- pairs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["all", "random", "length_matched"])
def test_no_pair_is_truncated_over_length_or_across_prompts(policy):
    samples = trace_samples(truncate_first=True)
    cap = 300
    cfg = OutputConfig(pair_policy=policy, max_pairs_per_prompt=3, max_response_tokens=cap)
    pairs, stats = build_pairs(samples, cfg, seed=0)
    assert len(pairs) >= 5, stats
    assert stats["left_out"]["truncated chosen"] >= 1
    assert stats["left_out"]["response over length cap"] >= 1
    lookup = by_id(samples)
    per_prompt = Counter(pairs["problem_id"])
    assert max(per_prompt.values()) <= (1 if policy == "random" else 3)
    for row in pairs:
        chosen, rejected = lookup[row["chosen_sample_id"]], lookup[row["rejected_sample_id"]]
        assert chosen.passed is True and rejected.passed is False
        assert not chosen.truncated and chosen.finish_reason != "length"
        assert chosen.problem_id == rejected.problem_id == row["problem_id"]
        assert chosen.messages == rejected.messages == row["prompt"]
        assert chosen.completion_tokens <= cap and rejected.completion_tokens <= cap
        assert row["chosen_tokens"] <= cap and row["rejected_tokens"] <= cap
        # provenance: sample ids and indices, teacher, model, verifier name and version
        assert row["chosen_sample_index"] == chosen.sample_index
        assert row["rejected_sample_index"] == rejected.sample_index
        assert row["chosen_teacher"] == "replay" and row["rejected_model"] == chosen.model
        assert row["verifiers"] == [{"name": "math", "version": "1"}]
        assert row["pair_policy"] == policy
        assert 0 < row["pass_rate"] < 1 and row["graded"] == 8


def test_same_problem_id_with_another_prompt_is_never_paired():
    good = synthetic("p", [10], [])
    bad = synthetic("p", [], [10])
    bad[0].messages = [{"role": "user", "content": "a different question"}]
    pairs, _ = build_pairs(good + bad, OutputConfig(), seed=0)
    assert len(pairs) == 0


def test_prompt_over_length_leaves_the_prompt_out():
    pairs, stats = build_pairs(synthetic("p", [5], [5]), OutputConfig(max_prompt_tokens=9), 0)
    assert len(pairs) == 0 and stats["left_out"] == {"prompt over length cap": 2}


def test_policy_all_takes_distinct_combinations_up_to_the_cap():
    samples = synthetic("p", [1, 2, 3], [4, 5, 6, 7, 8])
    pairs, _ = build_pairs(samples, OutputConfig(pair_policy="all", max_pairs_per_prompt=6), 0)
    combos = set(zip(pairs["chosen_sample_id"], pairs["rejected_sample_id"], strict=True))
    assert len(pairs) == len(combos) == 6
    pairs, _ = build_pairs(samples, OutputConfig(max_pairs_per_prompt=100), 0)
    assert len(pairs) == 15


def test_policy_random_makes_one_pair_per_prompt():
    samples = synthetic("p", [1, 2, 3], [4, 5]) + synthetic("q", [1], [2, 3])
    pairs, _ = build_pairs(samples, OutputConfig(pair_policy="random"), 0)
    assert sorted(pairs["problem_id"]) == ["p", "q"]


def test_policy_length_matched_pairs_closest_lengths_each_sample_once():
    samples = synthetic("p", [10, 50, 100], [12, 48, 200, 300, 5])
    pairs, _ = build_pairs(samples, OutputConfig(pair_policy="length_matched"), 0)
    got = set(zip(pairs["chosen_tokens"], pairs["rejected_tokens"], strict=True))
    assert got == {(10, 12), (50, 48), (100, 5)}


def test_pairs_are_reproducible_by_seed():
    samples = trace_samples()
    cfg = OutputConfig(max_pairs_per_prompt=2)
    first, _ = build_pairs(samples, cfg, seed=1)
    again, _ = build_pairs(list(reversed(samples)), cfg, seed=1)
    other, _ = build_pairs(samples, cfg, seed=2)
    assert sorted(first["id"]) == sorted(again["id"])
    assert sorted(first["id"]) != sorted(other["id"])


@pytest.mark.parametrize("policy", ["all", "random", "length_matched"])
def test_expected_pairs_matches_the_builder_over_every_outcome(policy):
    """The fixed-N estimate and the builder agree: sum over all 2^n verdict patterns."""
    n, p, cap = 4, 0.3, 2
    total = 0.0
    for outcome in itertools.product([True, False], repeat=n):
        pos = [10 + i for i, ok in enumerate(outcome) if ok]
        neg = [20 + i for i, ok in enumerate(outcome) if not ok]
        cfg = OutputConfig(pair_policy=policy, max_pairs_per_prompt=cap)
        pairs, _ = build_pairs(synthetic("p", pos, neg), cfg, 0)
        total += p ** len(pos) * (1 - p) ** len(neg) * len(pairs)
    assert total == pytest.approx(expected_pairs(p, n, policy, cap))


# -- SFT -----------------------------------------------------------------------------------


def test_sft_sets_split_by_verdict_and_never_keep_a_truncated_positive():
    samples = trace_samples(truncate_first=True)
    pos, pstats = build_sft(samples, True)
    neg, _ = build_sft(samples, False)
    lookup = by_id(samples)
    assert all(lookup[i].passed is True and not lookup[i].truncated for i in pos["id"])
    assert all(lookup[i].passed is False for i in neg["id"])
    truncated_pos = sum(s.passed is True and s.truncated for s in samples)
    assert pstats["left_out"] == {"truncated positive": truncated_pos}
    assert len(pos) + truncated_pos == sum(s.passed is True for s in samples)


def test_every_output_row_carries_pass_rate_and_difficulty():
    samples = trace_samples()
    outputs = build_outputs(samples, OutputConfig(), seed=0)
    truth: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        truth[s.problem_id].append(bool(s.passed))
    for out in outputs.values():
        assert len(out.dataset) > 0
        for row in out.dataset:
            rate = sum(truth[row["problem_id"]]) / 8
            assert row["pass_rate"] == rate and row["graded"] == 8
            assert row["difficulty"] == difficulty(rate, (0.3, 0.7))
    assert set(outputs["sft_negative"].dataset["difficulty"]) >= {"unsolved", "medium"}


def test_difficulty_filters_and_weights():
    samples = trace_samples()
    cfg = OutputConfig(sft_drop_unsolved=True, sft_drop_solved=True, sft_weighting="failure_rate")
    pos, pstats = build_sft(samples, True, cfg)
    neg, nstats = build_sft(samples, False, cfg)
    assert set(pos["difficulty"]) | set(neg["difficulty"]) <= {"hard", "medium", "easy"}
    assert pstats["left_out"]["solved prompt"] == 8 * len(SOLVED)
    assert nstats["left_out"]["unsolved prompt"] == 8 * len(UNSOLVED)
    for row in pos:
        assert row["weight"] == pytest.approx(1 - row["pass_rate"])


@pytest.mark.parametrize(("in_content", "column"), [(True, True), (False, True), (True, False)])
def test_reasoning_inside_think_and_or_as_a_column(in_content, column):
    samples = trace_samples(problems=MIXED[:2])
    cfg = OutputConfig(reasoning_in_content=in_content, reasoning_column=column)
    outputs = build_outputs(samples, cfg, seed=0)
    sft, pairs = outputs["sft_positive"].dataset, outputs["redi_pairs"].dataset
    assert sft.features == sft_features(column) and pairs.features == pair_features(column)
    row, pair = sft[0], pairs[0]
    reply = row["messages"][-1]
    assert reply["role"] == "assistant"
    assert reply["content"].startswith("<think>\n") is in_content
    assert pair["chosen"][0]["content"].startswith("<think>\n") is in_content
    if column:
        assert row["reasoning"] and row["reasoning"] in by_id(samples)[row["id"]].reasoning
        assert (row["reasoning"] in reply["content"]) is in_content
        assert pair["chosen_reasoning"] and pair["rejected_reasoning"]
    else:
        assert "reasoning" not in sft.column_names


# -- subsets -------------------------------------------------------------------------------


def test_subsets_have_the_exact_size_depend_on_seed_and_nest():
    ds = build_sft(trace_samples(), True)[0]
    small, stats = take_subset(ds, 10, None, seed=0, name="sft_positive")
    big, _ = take_subset(ds, 20, None, seed=0, name="sft_positive")
    other, _ = take_subset(ds, 10, None, seed=1, name="sft_positive")
    assert len(small) == 10 and stats["subset_of"] == len(ds)
    assert set(small["id"]) <= set(big["id"])
    assert set(small["id"]) != set(other["id"])
    with pytest.raises(ConfigError, match=r"output\.subset_sizes\.sft_positive=1000"):
        take_subset(ds, 1000, None, seed=0, name="sft_positive")


def test_domain_mix_gives_exact_counts_per_domain():
    math = trace_samples()
    code = [replace(s, id="c" + s.id, problem_id="c" + s.problem_id, domain="code") for s in math]
    ds = build_sft(math + code, True)[0]
    sub, stats = take_subset(ds, 30, {"math": 0.7, "code": 0.3}, seed=0, name="sft_positive")
    assert len(sub) == 30 and stats["by_domain"] == {"code": 9, "math": 21}
    largest, _ = take_subset(ds, None, {"math": 0.5, "code": 0.5}, seed=0, name="sft_positive")
    assert Counter(largest["domain"]) == Counter(ds["domain"])  # as many of each as there are
    with pytest.raises(ConfigError, match="general"):
        take_subset(ds, 10, {"math": 0.5, "general": 0.5}, seed=0, name="sft_positive")


def test_subset_sizes_apply_per_output():
    cfg = OutputConfig(subset_sizes={"redi_pairs": 5})
    outputs = build_outputs(trace_samples(), cfg, seed=0)
    assert len(outputs["redi_pairs"].dataset) == 5
    assert outputs["redi_pairs"].stats["subset"]["rows"] == 5
    positives = outputs["sft_positive"]
    assert len(positives.dataset) > 5 and "subset" not in positives.stats
