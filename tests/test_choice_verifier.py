"""Multiple-choice verifier on items written for this test (not GPQA or MMLU-Pro items).

Item: "Which gas makes up most of Earth's atmosphere?" with options A oxygen,
B nitrogen, C argon, D carbon dioxide; the reference is B.
"""

from __future__ import annotations

import pytest

from datagen.compose import resolve_config
from verifiers.choice import ChoiceConfig, extract_choice, verify, verify_batch
from verifiers.types import NO_ANSWER

from .conftest import compose

OPTIONS = ["oxygen", "nitrogen", "argon", "carbon dioxide"]
TRACE = "<think>Oxygen is 21%, nitrogen 78%, argon under 1%. So not A.</think>\n\n"


@pytest.mark.parametrize(
    "answer",
    [
        "B",
        "(B)",
        "B)",
        "B.",
        "The answer is B",
        "The answer is (B).",
        "Answer: B",
        "**Answer:** B",
        "Final answer: B) nitrogen",
        r"\boxed{B}",
        r"\boxed{(B)}",
        r"$\boxed{\text{B}}$",
        "**B**",
        "The correct option is **(B)**.",
        "I choose B because nitrogen is 78%.",
        "nitrogen",
        "Nitrogen.",
        "The answer is nitrogen.",
        r"\boxed{\text{Nitrogen}}",
        "Nitrogen is most of the air, about 78%.\n\nB",
        "Answer: A. Wait, oxygen is only 21%; the answer is B.",  # the last commitment wins
    ],
)
def test_accepted_forms_pass(answer):
    verdict = verify(TRACE + answer, "B", OPTIONS)
    assert verdict.passed is True, verdict.details
    assert verdict.verifier == "choice" and verdict.details["extracted"] == "B"


@pytest.mark.parametrize(
    "answer",
    [
        "A",
        "(C)",
        "The answer is D",
        r"\boxed{A}",
        "**C**",
        "oxygen",  # the text of a different option
        "The answer is carbon dioxide.",
        "Answer: B. On second thought, the answer is A.",  # last commitment wins
    ],
)
def test_wrong_letters_and_other_options_text_fail(answer):
    verdict = verify(TRACE + answer, "B", OPTIONS)
    assert verdict.passed is False, verdict.details
    assert verdict.details["extracted"] != "B"


@pytest.mark.parametrize(
    "answer",
    [
        "B, C",
        "B or C",
        "B and C",
        "The answer is B or C.",
        "Answer: (B), (C)",
        r"\boxed{BC}",
        r"\boxed{B, C}",
    ],
)
def test_several_letters_fail(answer):
    verdict = verify(TRACE + answer, "B", OPTIONS)
    assert verdict.passed is False, verdict.details
    assert verdict.details["error"] == "hedged"


@pytest.mark.parametrize(
    "answer",
    [
        "A) oxygen\nB) nitrogen\nC) argon\nD) carbon dioxide",
        "(A) oxygen (B) nitrogen (C) argon (D) carbon dioxide",
        "Answer: A) oxygen B) nitrogen C) argon D) carbon dioxide",
        "Let us weigh each option: **A)** oxygen, **B)** nitrogen, **C)** argon, **D)** CO2.",
        "A\nB\nC\nD",
        "Each of oxygen, nitrogen, argon and carbon dioxide is in the air.",
        "The answer is not obvious; it depends on altitude.",
        "",
    ],
)
def test_a_listing_of_every_option_commits_to_nothing(answer):
    verdict = verify(TRACE + answer, "B", OPTIONS)
    assert verdict.passed is None, verdict.details  # never a false positive
    assert verdict.details["error"] == NO_ANSWER and verdict.details["reason"]


def test_only_the_final_answer_is_graded():
    # The reasoning commits to B; the final answer to C.
    assert verify("<think>The answer is B.</think> The answer is C.", "B").passed is False
    assert verify("<think>The answer is C.</think> The answer is B.", "B").passed is True
    # strip_think off: the reasoning is read too (the last commitment still wins).
    unstripped = ChoiceConfig(strip_think=False)
    assert verify("<think>C?</think> The answer is B.", "B", config=unstripped).passed is True
    assert (
        verify("<think>The answer is B.</think> Answer: C.", "B", config=unstripped).passed is False
    )
    assert verify("<think>The answer is B.</think> No idea.", "B", config=unstripped).passed is True
    assert verify("<think>The answer is B.</think> No idea.", "B").passed is None


def test_unreadable_answers_and_references_are_unverifiable():
    box = verify(r"\boxed{42}", "B", OPTIONS)
    assert box.passed is None and box.details["error"] == "unparseable_answer"
    assert "no option" in box.details["reason"]
    bad_ref = verify("B", "nitrogen gas", OPTIONS)
    assert bad_ref.passed is None and bad_ref.details["error"] == "unparseable_reference"
    out_of_range = verify("E", "E", OPTIONS)  # four options: there is no E
    assert out_of_range.passed is None and out_of_range.details["error"] == "unparseable_reference"
    assert verify("B", None).passed is None


def test_without_options_grading_is_letter_only_and_says_so():
    by_letter = verify("The answer is (B).", "B")
    assert by_letter.passed is True and by_letter.details["text_matching"] is False
    assert "letter-only" in by_letter.details["note"]
    by_text = verify("nitrogen", "B")  # no options: the text cannot be matched
    assert by_text.passed is None and by_text.details["error"] == NO_ANSWER
    off = verify("nitrogen", "B", OPTIONS, ChoiceConfig(match_text=False))
    assert off.passed is None and "match_text" in off.details["note"]


def test_a_letter_reference_in_brackets_and_an_option_text_reference():
    assert verify("B", "(b)", OPTIONS).passed is True
    assert verify("(B)", "nitrogen", OPTIONS).passed is True  # reference as the option's text


def test_english_words_are_not_letters_in_a_bare_reply():
    assert extract_choice("A bit of both, really.") is None
    assert extract_choice("I think so.") is None
    assert extract_choice("(A) the first one").letters == ("A",)  # bracketed: a label


def test_batch_matches_one_by_one_and_checks_lengths():
    answers = ["B", "C", r"\boxed{B, C}", "nitrogen"]
    batch = verify_batch(answers, ["B"] * 4, [OPTIONS] * 4)
    assert [v.passed for v in batch] == [verify(a, "B", OPTIONS).passed for a in answers]
    assert [v.passed for v in batch] == [True, False, False, True]
    with pytest.raises(ValueError, match="option lists"):
        verify_batch(["B"], ["B"], [])


def test_choice_is_a_verifier_group():
    cfg = resolve_config(compose("+pipeline=math", "verifier=choice", "verifier.match_text=false"))
    assert cfg.verifier.name == "choice" and cfg.verifier.options == ChoiceConfig(match_text=False)
