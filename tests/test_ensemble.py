"""Verifier ensembles: the combination rules, their config, and their effect on real traces.

Real data: Qwen2.5-Math's traces (``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl``)
of four MATH test problems (32 samples) chosen for their mix: problem 3 (0 of 8
correct), 5 (8 of 8, low reward scores), 6 (3 of 8) and 17 (4 of 8). The replay
teacher imports Qwen's correctness label and its reward model's ``rm_score``; three
members judge every sample: ``math`` (math-verify), ``qwen`` (the imported label) and
``rm`` (``rm_score >= 1.0``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datagen.compose import build_verifier
from datagen.config import ConfigError, SamplingConfig, SourceConfig, VerifierChoice
from datagen.sources import read_problems
from datagen.stages.base import StageContext
from datagen.stages.verify import combine, verify, verify_groups
from datagen.summary import format_summary
from datagen.teachers.replay import ReplayTeacher, ReplayTeacherConfig
from datagen.verify_registry import EnsembleConfig, verifier_config_classes
from verifiers.math import MathVerifyConfig
from verifiers.precomputed import PrecomputedConfig

from .conftest import compose

TRACES = Path(__file__).parent / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PROBLEMS = ("math_cot_100-3-0", "math_cot_100-5-0", "math_cot_100-6-0", "math_cot_100-17-0")

T, F, N = True, False, None


@pytest.mark.parametrize(
    ("votes", "rule", "weights", "threshold", "expected"),
    [
        ([T, T, T], "all", [1, 1, 1], 0.5, T),
        ([T, F, T], "all", [1, 1, 1], 0.5, F),
        ([T, N, T], "all", [1, 1, 1], 0.5, N),  # no one failed, but one could not tell
        ([F, N, T], "all", [1, 1, 1], 0.5, F),
        ([F, F, T], "any", [1, 1, 1], 0.5, T),
        ([F, F, F], "any", [1, 1, 1], 0.5, F),
        ([F, N, F], "any", [1, 1, 1], 0.5, N),
        ([T, F, T], "majority", [1, 1, 1], 0.5, T),
        ([T, F, F], "majority", [1, 1, 1], 0.5, F),
        ([T, F, N], "majority", [1, 1, 1], 0.5, N),  # a tie among those who decided
        ([N, N, N], "majority", [1, 1, 1], 0.5, N),
        ([T, F, F], "weighted", [2, 1, 1], 0.5, T),  # 2/4 >= 0.5
        ([T, F, F], "weighted", [2, 1, 1], 0.6, F),
        ([T, N, F], "weighted", [1, 5, 2], 0.5, F),  # 1/3: the abstainer's weight is left out
        ([N, N], "weighted", [1, 1], 0.5, N),
    ],
)
def test_combine_table(votes, rule, weights, threshold, expected):
    verdict = combine(votes, rule, weights, threshold)
    assert verdict.passed is expected
    assert verdict.verifier == "ensemble"
    assert verdict.details["disagree"] == (T in votes and F in votes)


def test_ensemble_config_forms_and_errors(make_config):
    cfg = make_config(
        "+pipeline=math", "verifier=ensemble_math_judge", "verifier.members.judge.model=j"
    )
    assert cfg.verifier.name == "ensemble" and cfg.verifier.options.combine == "all"
    assert [(m.label, m.name) for m in cfg.verifier.options.members] == [
        ("math", "math"),
        ("judge", "judge"),
    ]
    as_list = [{"name": "math"}, {"name": "precomputed", "weight": 2, "source": "qwen"}]
    node = {"name": "ensemble", "combine": "weighted", "members": as_list}
    listed = build_verifier(verifier_config_classes(), node, "verifier")
    assert [(m.label, m.weight) for m in listed.options.members] == [
        ("math", 1.0),
        ("precomputed", 2.0),
    ]
    bad = {
        "verifier.members: two members": [{"name": "math"}, {"name": "math"}],
        "verifier.members.inner.name: an ensemble": {"inner": {"name": "ensemble"}},
        r"verifier.members.m.weight must be": {"m": {"name": "math", "weight": -1}},
        "verifier.members must name": {},
        r"verifier.members.m.timeout_s": {"m": {"name": "math", "timeout_s": "soon"}},
    }
    for message, members in bad.items():
        with pytest.raises(ConfigError, match=message):
            build_verifier(
                verifier_config_classes(), {"name": "ensemble", "members": members}, "verifier"
            )


@pytest.fixture(scope="module")
def traces() -> list:
    source = SourceConfig(path=str(TRACES), prompt_field="problem", reference_field="answer")
    problems, _ = read_problems(source, SYSTEM)
    chosen = [p for p in problems if p.metadata["source_id"] in PROBLEMS]
    assert len(chosen) == 4
    teacher = ReplayTeacher(
        ReplayTeacherConfig(
            path=str(TRACES),
            label_field="correct",
            label_name="qwen",
            score_field="rm_score",
            order_field="sample_idx",
        )
    )
    return teacher.generate(chosen, SamplingConfig(n=8), 0)


def ensemble(combine_rule: str, threshold: float = 0.5, weights=(1.0, 1.0, 1.0)) -> VerifierChoice:
    label = PrecomputedConfig(source="qwen", use="label")
    rm_score = PrecomputedConfig(source="qwen", threshold=1.0)
    members = [
        VerifierChoice("math", MathVerifyConfig(workers=2), "math", weights[0]),
        VerifierChoice("precomputed", label, "qwen", weights[1]),
        VerifierChoice("precomputed", rm_score, "rm", weights[2]),
    ]
    return VerifierChoice("ensemble", EnsembleConfig(combine_rule, threshold, tuple(members)))


OUTCOMES = [
    # (rule, threshold, weights, positives of 32): documented effect on the same samples
    ("all", 0.5, (1, 1, 1), 8),  # correct AND rm >= 1: problem 5 (8)
    ("majority", 0.5, (1, 1, 1), 15),  # = correct: math and label agree on all 32
    ("any", 0.5, (1, 1, 1), 21),  # correct OR rm >= 1: adds problem 3's six high scores
    ("weighted", 0.5, (1, 1, 2), 21),  # rm alone reaches 2/4: as any
    ("weighted", 0.6, (1, 1, 2), 8),  # rm and both others needed past 3/4: as all
]


@pytest.mark.parametrize(("rule", "threshold", "weights", "positives"), OUTCOMES)
def test_rules_change_the_outcome_on_real_traces(
    traces, tmp_path, rule, threshold, weights, positives
):
    batch = [s.__class__.from_row(s.to_row()) for s in traces]  # fresh copies
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    out = verify(batch, ctx, cfg={"verifier": ensemble(rule, threshold, weights)})
    assert sum(s.passed is True for s in out) == positives
    assert sum(s.passed is False for s in out) == 32 - positives
    names = [v.verifier for v in out[0].verdicts]
    assert names == ["qwen", "math", "qwen", "rm", "ensemble"]  # imported, members, combined
    assert out[0].verdicts[3].details["kind"] == "precomputed"
    stats = ctx.stats["verify"]
    # Disagreements do not depend on the rule: the rm member parts ways with the two
    # correctness checks on 13 samples (problem 3: 6 wrong but rm >= 1; problems 6 and
    # 17: 7 correct but rm < 1).
    assert stats["disagreements"] == 13
    assert stats["math_passed"] == stats["qwen_passed"] == 15 and stats["rm_passed"] == 14


def test_summary_shows_disagreements():
    summary = {"stages": {"verify_groups": {"stats": {"disagreements": 13}}}}
    assert re.search(r"verifier disagreements +13", format_summary(summary))


def test_plain_verify_refuses_rank_rules_in_members(traces, tmp_path):
    members = [
        VerifierChoice("precomputed", PrecomputedConfig(source="qwen", rule="top_k"), "rm"),
        VerifierChoice("precomputed", PrecomputedConfig(source="qwen", use="label"), "qwen"),
    ]
    choice = VerifierChoice("ensemble", EnsembleConfig("any", 0.5, tuple(members)))
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    batch = [s.__class__.from_row(s.to_row()) for s in traces]
    with pytest.raises(ConfigError, match=r"verifier\.members\.rm\.rule.*verify_groups"):
        verify(batch, ctx, cfg={"verifier": choice})
    out = verify_groups(batch, ctx, cfg={"verifier": choice})
    wrong = VerifierChoice("precomputed", PrecomputedConfig(source="rm_score"))
    with pytest.raises(ConfigError, match=r"no sample carries .*found: \['qwen'\]"):
        verify([s.__class__.from_row(s.to_row()) for s in traces], ctx, cfg={"verifier": wrong})
    # top-1 by rm_score within each problem: one each (no two share a problem's best score)
    assert sum(s.verdicts[-3].passed is True for s in out) == 4


def test_ensemble_yaml_composes_for_general(make_config):
    cfg = make_config(
        "+pipeline=general",
        "verifier=ensemble_reward_judge",
        "verifier.members.reward.model=/some/rm",
        "verifier.members.judge.model=j",
    )
    members = cfg.verifier.options.members
    assert cfg.verifier.options.combine == "weighted"
    assert [(m.label, m.options.model) for m in members] == [("reward", "/some/rm"), ("judge", "j")]
    assert compose("+pipeline=general").pipeline.stages[-2] == "verify_groups"
