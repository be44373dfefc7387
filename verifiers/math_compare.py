r"""Guards around Math-Verify's comparison: its known traps, and a fast path for plain numbers.

Math-Verify grades the answer; these rules only add what it gets wrong or slow:

- **Plain numbers** (``42``, ``-3.5``, ``7,425,000``) are compared exactly with
  :class:`~decimal.Decimal`, with no SymPy parse (most GSM8K answers; see
  ``benchmarks/bench_math_verifier.py``).
- **Simple fractions** (``\frac{3}{8}``, ``\dfrac{-1}{2}``, ``\frac12``, ``3/8``) are
  compared exactly with :class:`~fractions.Fraction` against each other and
  against plain numbers: equal values pass; two unequal fractions (or integers)
  fail, as Math-Verify fails them; anything else (a decimal not equal to the
  fraction, values within rounding of each other) goes to Math-Verify.
- **Repeating decimals** (``0.\overline{3}``, ``0.1\dot{6}``) become fractions
  before parsing; Math-Verify reads ``\overline`` as nothing.
- **Variables are not units**: Math-Verify drops a letter after a number
  (``4t`` parses as 4); an answer whose number carries a letter the reference
  does not have is wrong.
- **Times are not ratios**: when the reference is a clock time (``4:30 p.m.``,
  or ``h:mm`` in a problem about time) the answer must be the same time;
  Math-Verify would read both as fractions (4:30 = 2:15).
- **Intervals are not sets**: an interval never equals a set of its endpoints.
- **Rounding** asked for in the prompt ("to the nearest tenth", "two decimal
  places") is the tolerance for numeric answers.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

# ---------------------------------------------------------------------------
# Plain numbers

_PLAIN = re.compile(
    r"^\s*(?:\\\$|\$)?\s*([-+−]?)\s*"
    r"((?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d{0,2}(?: \d{3})+|\d+,\d{2}|0,\d+|\d+)(?:\.\d+)?|\.\d+)"
    r"\s*(?:\\%|%)?\s*$"
)
# `1,22` and `0,111` are decimal commas (as Math-Verify reads them); `7,425` groups thousands.
_DECIMAL_COMMA = re.compile(r"^(?:\d+,\d{2}|0,\d+)$")


def plain_number(text: str | None) -> Decimal | None:
    r"""The value of an answer that is only a number (commas grouping thousands), else None.

    Example:
        >>> plain_number("7,425,000")
        Decimal('7425000')
        >>> plain_number(r"\frac{1}{2}") is None
        True
    """
    if text is None:
        return None
    text = text.strip().rstrip(".")
    text = re.sub(r"^\\text\{(.*)\}$", r"\1", text)
    match = _PLAIN.match(text)
    if not match:
        return None
    sign = "-" if match.group(1) in ("-", "−") else ""
    digits = match.group(2)
    if _DECIMAL_COMMA.match(digits):
        digits = digits.replace(",", ".")
    try:
        return Decimal(sign + digits.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        return None


_FRACTION = re.compile(
    r"^\s*(?:\$\s*)?([-+−]?)\s*(?:"
    r"\\[dt]?frac\s*\{\s*([-−]?)\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}"  # \frac{3}{8}
    r"|\\[dt]?frac\s*(\d)(\d)"  # \frac12
    r"|(\d+)\s*/\s*(\d+)"  # 3/8
    r")\s*(?:\$\s*)?$"
)


def simple_fraction(text: str | None) -> Fraction | None:
    r"""The value of an answer that is only a fraction of two integers, else None.

    Example:
        >>> simple_fraction(r"-\frac{3}{8}")
        Fraction(-3, 8)
        >>> simple_fraction(r"\frac12"), simple_fraction("6/4")
        (Fraction(1, 2), Fraction(3, 2))
        >>> simple_fraction(r"1\frac{1}{2}") is None  # a mixed number: Math-Verify decides
        True
    """
    if text is None:
        return None
    match = _FRACTION.match(text.strip().rstrip("."))
    if not match:
        return None
    sign, inner, a, b, c, d, e, f = match.groups()
    num, den = (a, b) if a is not None else (c, d) if c is not None else (e, f)
    if int(den) == 0:
        return None
    negative = (sign in ("-", "−")) != (inner in ("-", "−"))
    value = Fraction(int(num), int(den))
    return -value if negative else value


def fractions_verdict(answer: str, reference: str) -> tuple[bool, str] | None:
    """``(passed, reason)`` when a fraction and a fraction or plain number settle it, else None.

    Unequal values are failed only when neither is a decimal and they are far apart
    (Math-Verify's rounding is not re-done here); otherwise None defers to it.
    """
    got, want = simple_fraction(answer), simple_fraction(reference)
    if got is None and want is None:
        return None
    if got is None:
        number = plain_number(answer)
        got = None if number is None else Fraction(number)
        decimal = "." in answer
    elif want is None:
        number = plain_number(reference)
        want = None if number is None else Fraction(number)
        decimal = "." in reference
    else:
        decimal = False
    if got is None or want is None:
        return None
    if got == want:
        return True, "same fraction"
    if decimal or abs(got - want) <= Fraction(1, 10**9) * max(abs(got), abs(want), 1):
        return None
    return False, "different fraction"


def numbers_equal(a: Decimal, b: Decimal, float_rounding: int) -> bool:
    """Equal, or equal once rounded to ``float_rounding`` places when either is not whole."""
    if a == b:
        return True
    if a == a.to_integral_value() and b == b.to_integral_value():
        return False
    step = Decimal(1).scaleb(-float_rounding)
    return a.quantize(step, ROUND_HALF_UP) == b.quantize(step, ROUND_HALF_UP)


# ---------------------------------------------------------------------------
# Repeating decimals

_REPEATING = re.compile(
    r"(?<![\d.])(-?)(\d*)\.(\d*)(?:\\overline|\\dot|\\bar)\s*\{(\d+)\}|(?<![\d.])(-?)(\d*)\.(\d*)\\dot\s*(\d)"
)


def expand_repeating(text: str) -> str:
    r"""Write repeating decimals as fractions: ``0.\overline{3}`` -> ``\frac{1}{3}``.

    Example:
        >>> expand_repeating(r"0.1\overline{6}")
        '\\frac{1}{6}'
    """

    def fraction(match: re.Match[str]) -> str:
        groups = match.groups()
        sign, whole, fixed, repeat = groups[:4] if groups[3] is not None else groups[4:]
        value = Fraction(int(whole or "0")) + Fraction(
            int(fixed + repeat) - int(fixed or "0"), 10 ** len(fixed) * (10 ** len(repeat) - 1)
        )
        body = f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
        return f"{sign}{body}" if value.denominator != 1 else f"{sign}{value.numerator}"

    return _REPEATING.sub(fraction, text)


# ---------------------------------------------------------------------------
# Variables read as units

# `4t`, `2x`: a number and one letter; not `5cm` (a unit), `1e5`, `3m²` (squared metres).
_VARIABLE_TERM = re.compile(r"(?<![\w\\.{])\d+(?:\.\d+)?([a-zA-Z])(?![a-zA-Z{(\d²³])")
_LETTER = r"(?<![a-zA-Z\\]){}(?![a-zA-Z])"


def variable_dropped(answer: str, reference: str) -> str | None:
    """The variable of a ``4t``-style term in the answer that the reference lacks, if any."""
    for match in _VARIABLE_TERM.finditer(answer):
        letter = match.group(1)
        if not re.search(_LETTER.format(letter), reference):
            return letter
    return None


# ---------------------------------------------------------------------------
# Clock times

_TIME = re.compile(
    r"^\s*(\d{1,2}):(\d{2})\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?(?:\\[ ,;!])*\s*"
    r"(?:([AaPp])\.?\s*\\?\s*[Mm]\.?)?\s*\}?\s*\.?$"
)
_TIME_WORDS = re.compile(
    r"\b(?:o'clock|a\.m\.|p\.m\.|what time|clock|noon|midnight)|\d\s*(?:am|pm)\b", re.IGNORECASE
)


def clock_time(text: str) -> tuple[int, int, str | None] | None:
    """``(hour, minute, 'a'/'p'/None)`` of an answer written as a clock time."""
    match = _TIME.match(text.replace("$", ""))
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 24 or minute > 59:
        return None
    half = match.group(3).lower() if match.group(3) else None
    return hour, minute, half


def compare_times(answer: str, reference: str, prompt: str | None) -> bool | None:
    """True/False when the reference is a clock time, ``None`` when it is not one."""
    ref = clock_time(reference)
    if ref is None or (ref[2] is None and not (prompt and _TIME_WORDS.search(prompt))):
        return None
    got = clock_time(answer)
    if got is None:
        return False
    if ref[2] and got[2]:
        return _minutes(ref) == _minutes(got)
    return (ref[0] % 12, ref[1]) == (got[0] % 12, got[1])


def _minutes(time: tuple[int, int, str | None]) -> int:
    hour, minute, half = time
    return ((hour % 12) + (12 if half == "p" else 0)) * 60 + minute


# ---------------------------------------------------------------------------
# Intervals against sets

_INTERVAL = re.compile(r"^\s*(?:\\left)?[(\[].*,.*(?:\\right)?[)\]]\s*$")
# A listed set; set-builder notation ({x | x > 0}) may well equal an interval.
_SET = re.compile(r"^\s*(?:\\left)?\\?\{(?!.*(?:\\mid|\||:)).*\\?\}\s*$")


def interval_vs_set(answer: str, reference: str) -> bool:
    """Whether one side is written as an interval and the other as a listed set.

    Example:
        >>> interval_vs_set("(1, 2)", r"\\{1, 2\\}")
        True
    """
    a_int, r_int = bool(_INTERVAL.match(answer)), bool(_INTERVAL.match(reference))
    a_set, r_set = bool(_SET.match(answer)), bool(_SET.match(reference))
    return (a_int and r_set) or (a_set and r_int)


# ---------------------------------------------------------------------------
# Rounding asked for by the problem

_PLACES = {"tenth": 1, "hundredth": 2, "thousandth": 3, "ten-thousandth": 4}
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_ROUND_TO = re.compile(
    r"nearest\s+(ten-thousandth|thousandth|hundredth|tenth|whole(?:\s+number)?|integer|cent|dollar|percent)"
    r"|(\d|one|two|three|four|five)\s+decimal\s+(?:places?|digits?)",
    re.IGNORECASE,
)


def asked_decimals(prompt: str | None) -> int | None:
    """Decimal places the prompt asks the answer to be rounded to, if it asks.

    Example:
        >>> asked_decimals("Express your answer as a decimal to the nearest tenth.")
        1
    """
    if not prompt:
        return None
    match = _ROUND_TO.search(prompt)
    if not match:
        return None
    if match.group(2):
        word = match.group(2).lower()
        return int(word) if word.isdigit() else _WORDS[word]
    unit = match.group(1).lower()
    if unit == "cent":
        return 2
    return _PLACES.get(unit, 0)


def rounds_equal(a: Decimal, b: Decimal, places: int) -> bool:
    step = Decimal(1).scaleb(-places)
    return a.quantize(step, ROUND_HALF_UP) == b.quantize(step, ROUND_HALF_UP)
