"""False-positive traps of the math verifier: none may pass (issue 14), restated answers (issue 18).

``fixtures/math/false_positive_traps.jsonl`` was written for these tests: one row per
trap of the kinds issue 14 lists (a variable read as a unit, an interval against a
set, hedged and retracted boxes, a made-up next question, a trailing check line, a
clock time read as a ratio, repeating decimals, a box that restates the question or
echoes the prompt template). Each row says why its answer is not right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers.math import MathVerifyConfig, verify, verify_batch

# Verdicts, not speed, are tested here: room enough for a busy shared machine.
ROOMY = MathVerifyConfig(timeout_s=60.0)
TRAPS = [
    json.loads(line)
    for line in (Path(__file__).parent / "fixtures/math/false_positive_traps.jsonl")
    .read_text()
    .splitlines()
]


def test_the_fixture_covers_every_kind_of_trap():
    kinds = {t["kind"] for t in TRAPS}
    assert kinds == {
        "variable_as_unit",
        "interval_vs_set",
        "hedged",
        "retracted",
        "next_question",
        "check_line",
        "time_as_ratio",
        "repeating_decimal",
        "restated",
        "template_echo",
    }
    assert all(t["why"] for t in TRAPS)


def test_no_trap_passes():
    verdicts = verify_batch(
        [t["prediction"] for t in TRAPS],
        [t["reference"] for t in TRAPS],
        ROOMY,
        prompts=[t["prompt"] for t in TRAPS],
    )
    passing = [(t["id"], v.details) for t, v in zip(TRAPS, verdicts, strict=True) if v.passed]
    assert passing == []
    for verdict in verdicts:  # every verdict says what it graded and why
        assert verdict.details["reason"]
        assert "extracted" in verdict.details


@pytest.mark.parametrize(
    "trap", [t for t in TRAPS if t["kind"] in ("hedged", "retracted")], ids=lambda t: t["id"]
)
def test_hedged_and_retracted_are_wrong_not_unverifiable(trap):
    verdict = verify(trap["prediction"], trap["reference"], prompt=trap["prompt"])
    if verdict.details["error"] in ("hedged", "retracted"):
        assert verdict.passed is False


def test_the_traps_are_real_math_verify_passes():
    """Without its guard, each of these is graded right (so the guards are what stop them)."""
    import math_verify

    def naive(pred: str, gold: str) -> bool:
        return math_verify.verify(
            math_verify.parse(gold, parsing_timeout=None),
            math_verify.parse(pred, parsing_timeout=None),
            timeout_seconds=None,
        )

    assert naive(r"$\boxed{4t}$", "$4$")
    assert naive(r"$\boxed{(1, 2)}$", r"$\{1, 2\}$")
    assert naive(r"$\boxed{2:15}$", "$4:30$")
    assert naive(r"$0.\overline{3}$", "$0$")
    assert not naive(r"$0.\overline{3}$", r"$\frac{1}{3}$")
    assert naive(r"$\boxed{\dbinom{9}{8}}$", "$9$")
    assert naive(r"$\sin 0^\circ$", "$0$")


# ---------------------------------------------------------------------------
# Restated prompt expressions (issue 18)

RESTATED = [
    pytest.param(
        r"We get 64, then 560. So it is $\dbinom{9}{8}$.",
        "9",
        r"Compute $\dbinom{9}{8}$.",
        id="binomial",
    ),
    pytest.param(r"\boxed{\binom{5}{1}}", "5", r"Compute $\dbinom{5}{1}$.", id="binomial-boxed"),
    pytest.param(r"So $\sin 0^\circ$.", "0", r"Compute $\sin 0^\circ$.", id="trig"),
    pytest.param(
        r"The answer is $\tan 0^{\circ}$.", "0", r"Compute $\tan 0^\circ$.", id="trig-marker"
    ),
    pytest.param(
        r"\boxed{\dfrac{6}{8}}", r"\frac{3}{4}", r"Simplify $\frac{6}{8}$.", id="fraction"
    ),
    pytest.param("The total is $1+2+3+4$.", "10", "What is $1 + 2 + 3 + 4$?", id="sum"),
]


@pytest.mark.parametrize(("prediction", "reference", "prompt"), RESTATED)
def test_restated_prompt_expression_is_no_answer(prediction, reference, prompt):
    verdict = verify(prediction, reference, prompt=prompt)
    assert verdict.passed is False
    assert verdict.details["error"] == "no_answer"
    assert "prompt" in verdict.details["reason"]
    # Without the prompt the same answer is graded (math-verify evaluates it): right.
    assert verify(prediction, reference).passed is True


def test_multiple_choice_answer_copied_from_the_prompt_is_graded():
    prompt = r"Which is larger? (A) $2^{10}$ (B) $10^3$. Give the larger number."
    assert verify(r"\boxed{2^{10}}", "2^{10}", prompt=prompt).passed is True
    wrong = verify(r"\boxed{10^3}", "2^{10}", prompt=prompt)
    assert wrong.passed is False and wrong.details["error"] is None


def test_evaluated_answer_to_a_restating_prompt_passes():
    assert verify(r"\boxed{9}", "9", prompt=r"Compute $\dbinom{9}{8}$.").passed is True


def test_batch_takes_prompts_and_checks_their_length():
    prompts = [r"Compute $\dbinom{9}{8}$.", None]
    verdicts = verify_batch(
        [r"\boxed{\binom{9}{8}}", r"\boxed{\binom{9}{8}}"], ["9", "9"], ROOMY, prompts=prompts
    )
    assert [v.passed for v in verdicts] == [False, True]
    with pytest.raises(ValueError, match="one prompt"):
        verify_batch(["1"], ["1"], prompts=[])


# ---------------------------------------------------------------------------
# What the guards still let through

EQUIVALENT = [
    pytest.param(r"\boxed{0.\overline{3}}", r"\frac{1}{3}", None, id="repeating-decimal"),
    pytest.param(r"\boxed{0.1\overline{6}}", r"\frac{1}{6}", None, id="repeating-tail"),
    pytest.param(r"\boxed{4t}", "4t", None, id="variable-term"),
    pytest.param(r"\boxed{(1, 2)}", "(1,2)", None, id="interval"),
    pytest.param(r"\boxed{\{1, 2\}}", r"\{2, 1\}", None, id="set"),
    pytest.param(r"\boxed{4:30 \text{ p.m.}}", "4:30 p.m.", None, id="clock-time"),
    pytest.param(r"\boxed{16:30}", "4:30 p.m.", None, id="clock-24h"),
    pytest.param(r"\boxed{3:2}", "3:2", "What is the ratio of boys to girls?", id="ratio"),
    pytest.param(
        r"\boxed{6:4}", "3:2", "What is the ratio of boys to girls?", id="ratio-unreduced"
    ),
    pytest.param(r"\boxed{3.24}", "3.2", "Round your answer to the nearest tenth.", id="rounding"),
    pytest.param(
        r"\boxed{2.718}", "2.72", "Express it to two decimal places.", id="decimal-places"
    ),
    pytest.param("A: 7,425,000", "7425000", None, id="thousands"),
]


@pytest.mark.parametrize(("prediction", "reference", "prompt"), EQUIVALENT)
def test_guards_keep_real_equivalences(prediction, reference, prompt):
    assert verify(prediction, reference, prompt=prompt).passed is True


def test_rounding_tolerance_needs_the_prompt_to_ask():
    assert verify(r"\boxed{3.24}", "3.2").passed is False
    assert verify(r"\boxed{3.26}", "3.2", prompt="Round to the nearest tenth.").passed is False
