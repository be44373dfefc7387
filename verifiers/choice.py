r"""Multiple-choice verifier (GPQA / MMLU-Pro style): a reference letter, optional options.

The reference is a letter (``A``-``J``); the options, when given, are the texts of
``A``, ``B``, ... in order. Only the final answer is read (everything after
``</think>``, :func:`verifiers.types.answer_part`), and in it the commitments:

- ``\boxed{B}``, ``\boxed{(B)}``, ``\boxed{\text{B}}``, or a box holding an option's text;
- an answer phrase: ``The answer is B``, ``Answer: (B)``, ``The correct option is B)``,
  ``I choose B``, or the phrase followed by an option's text;
- a bold letter (``**B**``, ``**(B)**``) when it is the only letter set in bold;
- with none of these, a reply that is all answer: ``B``, ``(B)``, ``B)``,
  ``B) <option text>``, a last line holding only a letter, or an option's exact text.

The last commitment wins. A commitment to several letters (``B, C``, ``B or C``,
``\boxed{BC}``) fails; so does another letter, or a different option's text. A
trace that only lists the options (``A) 3  B) 4  C) 5``, one bold letter each)
commits to nothing and is unverifiable (``no_answer``), never passed. Option text
is matched after normalising case, spacing, ``$``, ``\text{}`` and bold; without
options there is no text to match, and the verdict's details say so.

Example:
    >>> verify("<think>A or C?</think> The answer is (C).", "C").passed
    True
    >>> verify(r"\boxed{B, C}", "B").passed
    False
    >>> verify("Paris", "B", ["Lyon", "Paris", "Nice"]).passed
    True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from verifiers.types import NO_ANSWER, Verdict, answer_part

__all__ = ["VERSION", "ChoiceConfig", "extract_choice", "verify", "verify_batch"]

VERSION = "1"
"""Version of the grading logic; bump it when a verdict can change."""

LETTERS = "ABCDEFGHIJ"
"""The option letters this verifier knows (MMLU-Pro has ten options, GPQA four)."""

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(
    r"""(?<![A-Za-z])(?:
        (?:final\s+|correct\s+|best\s+|right\s+|my\s+)?
        (?:answer|option|choice)(?:\s+(?:is|would\s+be|should\s+be|must\s+be)\b|\s*[:：=])
      | I\s+(?:choose|pick|select|go\s+with)\b
    )[ \t:*]*(?:(?:option|choice|letter)\s+)?""",
    re.IGNORECASE | re.VERBOSE,
)
_BOLD = re.compile(r"\*\*\s*\(?([A-J])\)?[.:]?\s*\*\*")
_JOIN = r"\s*(?:,|/|&|\+|;|\band\b|\bor\b)\s*"
_LETTER = r"\(?\s*([A-J])\s*\)?"
# A letter ends at the end, punctuation, or a space before something that is no word.
_LETTER_END = r"(?=$|[\s.,;:!?)\]}*])"
_LEADING_LETTER = re.compile(rf"^{_LETTER}{_LETTER_END}")
_MORE_LETTERS = re.compile(rf"^{_JOIN}{_LETTER}{_LETTER_END}")
_OPTION_LABEL = re.compile(r"(?<![A-Za-z])\(?([A-J])\)")
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox)\s*\{([^{}]*)\}")


@dataclass(frozen=True)
class ChoiceConfig:
    """Options of the multiple-choice verifier.

    Example:
        >>> ChoiceConfig(match_text=False).match_text
        False
    """

    strip_think: bool = True
    """Grade only the final answer: drop ``<think>...</think>``, everything before a lone
    ``</think>`` and everything after an unclosed ``<think>``."""
    match_text: bool = True
    """Also accept an option's text as the answer (needs the options)."""

    def __post_init__(self) -> None:
        for key in ("strip_think", "match_text"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class Choice:
    """One commitment found in an answer."""

    letters: tuple[str, ...]
    """The letters committed to: one, several (hedged), or none (nothing readable)."""
    how: str
    """``boxed``, ``phrase``, ``bold``, ``bare`` or ``text``."""
    raw: str
    """The text the commitment was read from (for the details)."""


def normalize(text: str) -> str:
    r"""Option text as compared: NFKC, no ``$``/``\text{}``/bold, lower case, single spaces.

    >>> normalize(r"  **$42\text{ J}$.** ")
    '42 j'
    """
    text = unicodedata.normalize("NFKC", text)
    for _ in range(3):
        text = _WRAPPERS.sub(r"\1", text)
    text = text.replace("$", "").replace("**", "").replace("\\,", " ").replace("\\ ", " ")
    text = re.sub(r"\s+", " ", text).strip().strip(".;:!").strip()
    return text.casefold()


def _letters_at(text: str, *, bare: bool = False) -> tuple[str, ...] | None:
    """The letter (or joined letters) that ``text`` starts with, else None.

    In a bare reply (``bare``), an unbracketed ``A`` or ``I`` before a lower-case word
    is English ("A bit", "I think"), not an option letter.
    """
    first = _LEADING_LETTER.match(text)
    if first is None:
        return None
    letter, rest = first.group(1), text[first.end() :]
    if (
        bare
        and letter in "AI"
        and ")" not in first.group(0)
        and re.match(r"\s+[a-z]", rest)
        and not re.match(r"\s+(?:or|and)\b", rest)
    ):
        return None
    found = [letter]
    while (more := _MORE_LETTERS.match(rest)) is not None:
        found.append(more.group(1))
        rest = rest[more.end() :]
    return tuple(dict.fromkeys(found))


def _text_letter(text: str, options: Sequence[str] | None) -> str | None:
    """The letter of the one option whose normalised text is ``text``'s, else None."""
    if not options:
        return None
    wanted = normalize(text)
    hits = [LETTERS[i] for i, option in enumerate(options) if normalize(option) == wanted]
    return hits[0] if len(hits) == 1 and wanted else None


def _read(span: str, how: str, options: Sequence[str] | None) -> Choice | None:
    """What one commitment span says: letters, an option's text, or None (a listing)."""
    clean = _WRAPPERS.sub(r"\1", span).replace("**", "").replace("$", "").strip()
    clean = clean.lstrip(":-–").strip()
    labels = {m.group(1) for m in _OPTION_LABEL.finditer(clean)}
    letters = _letters_at(clean, bare=how == "bare")
    if len(labels) > 1 and (letters is None or set(letters) != labels):
        return None  # "Answer: A) 3 B) 4 C) 5": the options listed, not one chosen
    if letters is None and how == "boxed" and re.fullmatch(r"[A-Ja-j]{1,10}", clean):
        letters = tuple(dict.fromkeys(clean.upper()))  # \boxed{b}, \boxed{BC}
    if letters is not None:
        return Choice(letters, how, span)
    for candidate in (clean, re.split(r"\.(?:\s|$)|\n", clean)[0]):
        letter = _text_letter(candidate, options)
        if letter is not None:
            return Choice((letter,), "text" if how == "bare" else how, span)
    # A box holding something else is a commitment to it; a phrase without a letter
    # ("the answer is not obvious") commits to nothing.
    return Choice((), how, span) if how == "boxed" else None


def _box_spans(text: str) -> list[tuple[int, str]]:
    """``(start, content)`` of every balanced ``\\boxed{...}``."""
    spans = []
    for match in _BOX.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            spans.append((match.start(), text[match.end() : i - 1]))
    return spans


def extract_choice(
    text: str, options: Sequence[str] | None = None, *, strip_think: bool = True
) -> Choice | None:
    """The last commitment in a response's final answer (None: it commits to nothing).

    Example:
        >>> extract_choice("Answer: B. Wait, no: the answer is D.").letters
        ('D',)
        >>> extract_choice("A) 3\\nB) 4\\nC) 5") is None
        True
    """
    answer = answer_part(text) if strip_think else text
    found: list[tuple[int, Choice]] = []
    boxes = _box_spans(answer)
    for start, content in boxes:
        if (choice := _read(content, "boxed", options)) is not None:
            found.append((start, choice))
    for match in _PHRASE.finditer(answer):
        line_end = answer.find("\n", match.end())
        line = answer[match.end() : len(answer) if line_end < 0 else line_end]
        if _BOX.search(line) or not line.strip():
            continue  # "the answer is \boxed{B}": the box is read above
        if (choice := _read(line, "phrase", options)) is not None:
            found.append((match.start(), choice))
    bold = [(m.start(), m.group(1)) for m in _BOLD.finditer(answer)]
    if len({letter for _, letter in bold}) == 1:  # several distinct ones: a listing
        found.append((bold[-1][0], Choice((bold[-1][1],), "bold", bold[-1][1])))
    if found:
        return max(found, key=lambda item: item[0])[1]
    return _bare(answer, options)


def _bare(answer: str, options: Sequence[str] | None) -> Choice | None:
    """A reply that is all answer, or whose last line is only a letter."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    if len(lines) == 1:
        return _read(lines[0], "bare", options)
    whole = _text_letter(" ".join(lines), options)
    if whole is not None:
        return Choice((whole,), "text", answer.strip())
    alone = [i for i, line in enumerate(lines) if re.fullmatch(rf"{_LETTER}[.:]?", line)]
    if alone == [len(lines) - 1]:  # only the last line is a lone letter (no listing)
        return _read(lines[-1], "bare", options)
    return None


def _reference_letter(reference: str | None, options: Sequence[str] | None) -> str | None:
    if reference is None:
        return None
    ref = reference.strip()
    match = re.fullmatch(r"\(?\s*([A-Ja-j])\s*\)?\.?", ref)
    if match:
        return match.group(1).upper()
    return _text_letter(ref, options)


def verify(
    prediction: str,
    reference: str | None,
    options: Sequence[str] | None = None,
    config: ChoiceConfig | None = None,
) -> Verdict:
    """Grade one response against a reference letter.

    Args:
        prediction: The model's response (reasoning and answer, or the answer alone).
        reference: The correct letter, ``"B"`` or ``"(B)"`` (an option's text also works
            when the options are given).
        options: The options' texts, ``A`` first (None or empty: letter-only grading).
        config: Verifier options; defaults to ``ChoiceConfig()``.

    Returns:
        A ``Verdict`` with ``details = {"extracted", "reference", "how", "error",
        "reason", "text_matching"}``. ``passed`` is True for the reference's letter,
        False for another letter or several (``hedged``), None when the reference is not
        a usable letter or the answer commits to nothing readable.

    Example:
        >>> verify(r"\\boxed{(B)}", "B").passed
        True
    """
    config = config or ChoiceConfig()
    options = list(options) if options else None
    matching = bool(options) and config.match_text
    ref = _reference_letter(reference, options if matching else None)
    details: dict[str, object] = {
        "extracted": None,
        "reference": ref or reference,
        "how": None,
        "error": None,
        "reason": None,
        "text_matching": matching,
    }
    if not matching:
        details["note"] = (
            "no options given: letter-only grading, option text not matched"
            if not options
            else "match_text is off: letter-only grading"
        )

    def verdict(passed: bool | None, error: str | None, reason: str) -> Verdict:
        details.update(error=error, reason=reason)
        return Verdict(
            "choice", VERSION, passed, None if passed is None else float(passed), details
        )

    if ref is None:
        return verdict(None, "unparseable_reference", f"reference {reference!r} is no letter A-J")
    if options and LETTERS.index(ref) >= len(options):
        return verdict(None, "unparseable_reference", f"reference {ref} but {len(options)} options")
    choice = extract_choice(
        prediction, options if matching else None, strip_think=config.strip_think
    )
    if choice is None:
        return verdict(None, NO_ANSWER, "the answer commits to no option")
    details.update(extracted=", ".join(choice.letters) or choice.raw.strip()[:200], how=choice.how)
    if not choice.letters:
        why = "matches no option's text" if matching else "is no letter (no options to match)"
        return verdict(None, "unparseable_answer", f"the {choice.how} answer {why}")
    if len(choice.letters) > 1:
        return verdict(False, "hedged", f"several letters: {', '.join(choice.letters)}")
    if choice.letters[0] != ref:
        return verdict(False, None, f"chose {choice.letters[0]}, the reference is {ref}")
    return verdict(True, None, f"chose {ref}")


def verify_batch(
    predictions: Sequence[str],
    references: Sequence[str | None],
    options: Sequence[Sequence[str] | None] | None = None,
    config: ChoiceConfig | None = None,
) -> list[Verdict]:
    """:func:`verify` over a batch (pure string work: no pool, no time limit needed).

    Example:
        >>> [v.passed for v in verify_batch(["B", "C"], ["B", "B"])]
        [True, False]
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    opts = list(options) if options is not None else [None] * len(predictions)
    if len(opts) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(opts)} option lists")
    return [verify(p, r, o, config) for p, r, o in zip(predictions, references, opts, strict=True)]
