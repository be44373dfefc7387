"""Answer extraction (``verifiers.math_extract``) on strings alone: no SymPy, no grading."""

from __future__ import annotations

import pytest

from verifiers.math_extract import (
    cut_continuation,
    extract,
    final_math,
    normalize,
    prompt_expressions,
    restates_prompt,
    strip_check_lines,
)

FOUND = [
    # Explicit markers, in several languages
    pytest.param(r"So $\boxed{5}$.", "5", "boxed", id="box"),
    pytest.param(
        "The final answer is $\\frac{1}{2}$, which is half.",
        r"\frac{1}{2}",
        "marker",
        id="final-answer-is",
    ),
    pytest.param("Therefore, the answer is 42.", "42", "marker", id="answer-is"),
    pytest.param("Answer: 17", "17", "marker", id="answer-colon"),
    pytest.param("Natalia sold 48 + 24 = 72 clips.\nA: 72", "72", "marker", id="gsm8k-A"),
    pytest.param("48 + 24 = 72\n#### 72", "72", "marker", id="gsm8k-hashes"),
    pytest.param("**Final Answer:** 3", "3", "marker", id="markdown"),
    pytest.param("La réponse est 12.", "12", "marker", id="french"),
    pytest.param("Respuesta: 8", "8", "marker", id="spanish"),
    pytest.param("Die Antwort ist 9.", "9", "marker", id="german"),
    pytest.param("Ответ: 4", "4", "marker", id="russian"),
    pytest.param("所以答案是 6", "6", "marker", id="chinese"),
    pytest.param(
        "Therefore, the answer is:\n\\[\n7\\pi\n\\]", r"7\pi", "marker", id="answer-on-next-line"
    ),
    # The marker wins over later chatter
    pytest.param("A: 116\nCheck: 64 + 53 = 117.", "116", "marker", id="check-line-ignored"),
    pytest.param(
        "\\boxed{3}\n\nLet me double-check: 1 + 2 = 3. Yes.", "3", "boxed", id="box-then-check"
    ),
    # Several boxes that answer together
    pytest.param(r"\boxed{1} and \boxed{2}", "1, 2", "boxed", id="boxes-and"),
    pytest.param(r"$x = \boxed{2}$, $y = \boxed{3}$", "2, 3", "boxed", id="boxes-assignments"),
    pytest.param(r"\boxed{5}. So \boxed{5}", "5", "boxed", id="same-box-twice"),
    pytest.param(
        r"first \boxed{1}, then after much more work we find \boxed{2}",
        "2",
        "boxed",
        id="last-box-wins",
    ),
    # Bare answers
    pytest.param("-5", "-5", "bare", id="bare-negative"),
    pytest.param("7,425,000", "7,425,000", "bare", id="bare-thousands"),
    pytest.param("$x = 3$", "x = 3", "bare", id="bare-math"),
    pytest.param("We have $x = 3$.", "x = 3", "bare", id="bare-sentence-math"),
    pytest.param("12 dollars", "12 dollars", "bare", id="bare-unit"),
]


@pytest.mark.parametrize(("text", "answer", "how"), FOUND)
def test_finds_the_final_answer(text, answer, how):
    found = extract(text)
    assert (found.answer, found.how) == (answer, how)
    assert found.gradable


NOT_GRADABLE = [
    pytest.param(r"It is \boxed{5} or \boxed{6}.", "hedged", id="hedged-or"),
    pytest.param(
        r"\boxed{5}. Alternatively, it might be \boxed{6}.", "hedged", id="hedged-alternatively"
    ),
    pytest.param(r"So \boxed{12}. Wait, that is wrong.", "retracted", id="retracted"),
    pytest.param(r"Put your final answer in \boxed{}", "placeholder", id="empty-box"),
    pytest.param(r"\boxed{answer}", "placeholder", id="template-word"),
    pytest.param("I could not work it out, sorry; it is too hard for me.", "none", id="no-answer"),
    pytest.param(r"the answer is \boxed{3", "none", id="cut-off-box"),
    pytest.param(r"<think>\boxed{1}", "none", id="answer-only-in-think"),
]


@pytest.mark.parametrize(("text", "how"), NOT_GRADABLE)
def test_no_gradable_answer(text, how):
    found = extract(text)
    assert found.how == how
    assert not found.gradable


def test_hedged_names_the_other_answer():
    assert extract(r"\boxed{5} or \boxed{6}").others == ("5",)


def test_think_is_kept_when_asked():
    assert extract(r"<think>\boxed{1}", strip_think=False).answer == "1"


CONTINUATIONS = [
    pytest.param(
        "The answer is 7.\n\nQuestion: What is 3 + 4?\nAnswer: 12",
        "The answer is 7.\n\n",
        id="question",
    ),
    pytest.param("A: 7\nQ: next?\nA: 12", "A: 7\n", id="few-shot-QA"),
    pytest.param("\\boxed{9}<|im_start|>user\nmore", "\\boxed{9}", id="chat-turn"),
    pytest.param(
        "Problem: restated first.\nSo the answer is 4.", None, id="restated-problem-first"
    ),
]


@pytest.mark.parametrize(("text", "head"), CONTINUATIONS)
def test_cut_continuation(text, head):
    assert cut_continuation(text) == (text if head is None else head)


def test_strip_check_lines():
    text = "So 64 + 52 = 116.\nCheck: 64 + 53 = 117.\nVerification: ok"
    assert strip_check_lines(text) == "So 64 + 52 = 116."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "the distance is:\n\\[ 8 \\text{ km} \\]", r"8 \text{ km}", id="display-at-end"
        ),
        pytest.param("so $x = 4$.", "x = 4", id="inline-at-end"),
        pytest.param("arrive at 4:30 \\text{ p.m.}.", r"4:30 \text{ p.m.}", id="clock-time"),
        pytest.param("so $x = 4$ and we are done here", None, id="math-not-at-end"),
        pytest.param("Answer $ \n 9 \n $", None, id="inline-math-spans-lines"),
    ],
)
def test_final_math(text, expected):
    assert final_math(text) == expected


# ---------------------------------------------------------------------------
# Restated prompt expressions (issue 18)


def test_normalize_spellings():
    assert normalize(r"\dbinom{9}{8}") == normalize(r"\binom {9}{8}.") == r"\binom{9}{8}"
    assert normalize(r"\left(\dfrac{1}{2}\right)") == r"(\frac{1}{2})"
    assert normalize(r"\sin 0^{\circ}") == normalize(r"\sin 0^\circ")


def test_prompt_expressions_include_equation_sides():
    found = prompt_expressions(r"If $x + 1 = \frac{3}{4}$, find \(x\).")
    assert {r"x+1=\frac{3}{4}", "x+1", r"\frac{3}{4}", "x"} <= found


RESTATED = [
    pytest.param(r"\binom{9}{8}", r"Compute $\dbinom{9}{8}$.", "9", True, id="binomial"),
    pytest.param(r"\sin 0^\circ", r"Compute $\sin 0^\circ$.", "0", True, id="trig"),
    pytest.param(r"\frac{6}{8}", r"Simplify $\frac{6}{8}$.", r"\frac34", True, id="fraction"),
    pytest.param("1+2+3", "Compute $1 + 2 + 3$.", "6", True, id="sum"),
    pytest.param("9", r"Compute $\dbinom{9}{8}$.", "9", False, id="evaluated-number"),
    pytest.param("8", "If $x = 8$, what is $x$?", "8", False, id="number-in-prompt"),
    pytest.param(r"\frac{3}{4}", r"Simplify $\frac{6}{8}$.", r"\frac34", False, id="simplified"),
    pytest.param(
        "2^{10}",
        "Which is larger: (A) $2^{10}$ or (B) $10^3$?",
        "2^{10}",
        False,
        id="multiple-choice",
    ),
    pytest.param(
        "10^3",
        "Which is larger: (A) $2^{10}$ or (B) $10^3$?",
        "2^{10}",
        False,
        id="mc-wrong-choice",
    ),
    pytest.param(r"\binom{9}{8}", None, "9", False, id="no-prompt"),
]


@pytest.mark.parametrize(("answer", "prompt", "reference", "restated"), RESTATED)
def test_restates_prompt(answer, prompt, reference, restated):
    assert restates_prompt(answer, prompt, reference) is restated
