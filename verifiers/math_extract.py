r"""Find the final answer in a math trace: the parsing half of the math verifier.

Kept apart from grading, as Math-Verify keeps ``parse`` apart from ``verify``:
this module only reads text and never calls SymPy, so each rule here is tested
on strings alone (``tests/test_math_extract.py``).

The rules, in order:

1. ``<think>`` is dropped unless asked otherwise.
2. Text after the answer that starts a new question or few-shot turn (``Q:``,
   ``Problem:``, ``<|im_start|>`` ...) is cut off, so a made-up next question
   cannot supply the answer.
3. Explicit answers win: ``\boxed{}`` (``\fbox``, ``\boxed 5``), then phrases such
   as "the final answer is", "answer:", a line starting with ``A:``, ``####``, and
   their French, Spanish, German, Portuguese, Italian, Russian and Chinese forms.
   The last one counts, so a check line after it is ignored.
4. Several different final answers joined by "or", "maybe" ... are ``hedged``; an
   answer followed by "wait, that is wrong" and no new answer is ``retracted``.
   Both are graded wrong, never right.
5. With no explicit answer, a short reply that is all answer (``-5``,
   ``7,425,000``, ``$x = 3$``) is the answer.

:func:`restates_prompt` says whether an answer is a copy of one of the prompt's
own expressions (``\binom{9}{8}`` for "Compute $\dbinom{9}{8}$"), which is not an
answer (issue 18).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verifiers.types import answer_part

# `\boxed{`, `\boxed {`, `\fbox{`, or the brace-less `\boxed 5`.
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{|\\boxed\s+(?=[^\s{])")
# Each alternative starts at its keyword ("final answer is" is found by "answer is"),
# so the regex engine can skip ahead on the first letter: 10x faster on long traces.
_MARKER = re.compile(
    r"""(?<![a-z])(?:
        answer(?:\s+(?:is|would\s+be|should\s+be)\b(?!\s+(?:not|to|that|the\s+same)\b)
               |\s*\**\s*[:：])
      | r[ée]ponse(?:\s+finale)?(?:\s+est\b|\s*[:：])
      | respuesta(?:\s+final)?(?:\s+es\b|\s*[:：])
      | antwort(?:\s+(?:ist|lautet)\b|\s*[:：])
      | resposta(?:\s+final)?(?:\s+[ée]\b|\s*[:：])
      | risposta(?:\s+finale)?(?:\s+[èe]\b|\s*[:：])
      | ответ\s*[:：]
      | 答案(?:是|为|[:：])
    )[ \t:*]*""",
    re.IGNORECASE | re.VERBOSE,
)
# GSM8K's few-shot "A: 72" and its "#### 72", at the start of a line.
_LINE_MARKER = re.compile(r"^[ \t]*(?:\**A\**\s*[:：]|\#\#\#\#(?!\#))[ \t:*]*", re.MULTILINE)
# A new turn after the answer: a base model continuing its few-shot prompt.
_CONTINUATION = re.compile(
    r"""^[ \t#*]*(?:Q|Question|Problem|Exercise|Example|Human|User|Instruction|Input)
        (?:[ \t]*\d+)?[ \t]*\**[ \t]*[:.：]
      | <\|(?:im_start|user|endoftext|eot_id|end)\|> | </s>""",
    re.IGNORECASE | re.MULTILINE | re.VERBOSE,
)
_HEDGE = re.compile(
    r"\b(?:or|either|maybe|perhaps|possibly|alternatively|otherwise|might|could|unsure)\b",
    re.IGNORECASE,
)
_HEDGE_SPAN = 120
"""Characters between two different answers within which "or", "maybe" ... hedge."""
_CONNECTOR = re.compile(
    r"""^(?:\s|[,;.]|\$|\\[()\[\]]|\\q?quad|\\[,;:! ]|\\\\|\band\b|&
      |\\(?:text|mbox|mathrm)\s*\{[^{}]*\}|[a-zA-Z](?:_\{?\w+\}?)?\s*=)*$""",
    re.IGNORECASE | re.VERBOSE,
)
_RETRACT = re.compile(
    r"\b(?:wait|hmm+|that(?:'s|\s+is)\s+(?:wrong|incorrect|not\s+right)|is\s+(?:wrong|incorrect)"
    r"|(?:made|make)\s+a\s+mistake|scratch\s+that|not\s+(?:correct|sure)|reconsider)\b",
    re.IGNORECASE,
)
_CHECK_LINE = re.compile(
    r"^[ \t*]*(?:check|verification|verify|sanity\s+check|double[- ]check|let'?s\s+(?:check|verify)"
    r"|proof|note)\b.*\Z",
    re.IGNORECASE | re.MULTILINE,
)
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
# Display math may span lines; inline math may not (as Math-Verify reads it).
_MATH_SEGMENT = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\(([^\n]+?)\\\)|(?<!\\)\$([^\n$]+?)(?<!\\)\$", re.DOTALL
)
_PLACEHOLDERS = {"", "answer", "youranswer", "finalanswer", "theanswer", "...", r"\ldots", "?"}
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract` found: the answer as written, and how or why not."""

    answer: str | None
    """The final answer (LaTeX as written, not parsed), or ``None``."""
    how: str
    """``boxed``, ``marker`` or ``bare`` when found; ``none``, ``hedged``,
    ``retracted`` or ``placeholder`` when there is no gradable answer. (The verifier's
    fallback adds ``last_expression``.)"""
    others: tuple[str, ...] = ()
    """For ``hedged``: the other final answers the trace gave."""

    @property
    def gradable(self) -> bool:
        return self.how in ("boxed", "marker", "bare")


def extract(text: str, *, strip_think: bool = True) -> Extraction:
    r"""Find the final answer of a trace (rules in the module docstring).

    Args:
        text: A whole model response.
        strip_think: Ignore the ``<think>`` part.

    Returns:
        An :class:`Extraction`; ``how="none"`` when there is no explicit or bare answer.

    Example:
        >>> extract(r"So $\boxed{5}$.\n\nCheck: 2 + 3 = 5.").answer
        '5'
        >>> extract(r"It is \boxed{5} or maybe \boxed{6}.").how
        'hedged'
        >>> extract("7,425,000").how
        'bare'
    """
    if strip_think:
        text = remove_think(text)
    text = cut_continuation(text)
    found = _explicit_answers(text)
    if not found:
        bare = _bare_answer(text)
        return Extraction(bare, "bare") if bare is not None else Extraction(None, "none")
    start, end, how, answer = found[-1]
    if normalize(answer) in _PLACEHOLDERS:
        return Extraction(None, "placeholder")
    if how == "boxed":
        run = _box_run(text, found)
        if isinstance(run, Extraction):
            return run
        start, answer = run
    earlier = [(e, a) for _, e, _, a in found if e <= start and normalize(a) != normalize(answer)]
    if earlier:
        prev_end, prev = earlier[-1]
        between = text[prev_end:start]
        if len(between) <= _HEDGE_SPAN and _HEDGE.search(between):
            return Extraction(answer, "hedged", (prev,))
    after = text[end:]
    if _RETRACT.search(after):
        return Extraction(answer, "retracted")
    return Extraction(answer, how)


def extract_answer(text: str, *, strip_think: bool = True) -> str | None:
    r"""The final answer of a trace as a string, or ``None`` (see :func:`extract`).

    Example:
        >>> extract_answer(r"<think>\boxed{1}</think> So \boxed{\frac{1}{2}}, then \boxed{3}.")
        '3'
        >>> extract_answer("The final answer is $42$.")
        '42'
        >>> extract_answer("no idea") is None
        True
    """
    found = extract(text, strip_think=strip_think)
    return found.answer if found.gradable else None


def _box_run(text: str, found: list[tuple[int, int, str, str]]) -> Extraction | tuple[int, str]:
    r"""Join the last boxes when only "and", commas or ``\quad`` separate them.

    ``\boxed{1} and \boxed{2}`` answers "find all" with ``1, 2`` (as Math-Verify
    reads several boxes); ``\boxed{1} or \boxed{2}`` is hedged.
    """
    start, _, _, answer = found[-1]
    parts = [answer]
    for prev_start, prev_end, how, prev in reversed(found[:-1]):
        between = text[prev_end:start]
        if how != "boxed" or len(between) > 80:
            break
        if _HEDGE.search(between):
            if normalize(prev) != normalize(answer):
                return Extraction(answer, "hedged", (prev,))
            break
        if not _CONNECTOR.match(between):
            break
        parts.insert(0, prev)
        start = prev_start
    unique = list(dict.fromkeys(parts))
    return start, ", ".join(unique)


def remove_think(text: str) -> str:
    """Drop the reasoning: the one ``<think>`` splitter of ``verifiers.types``."""
    return answer_part(text)


def cut_continuation(text: str) -> str:
    """Cut the text where a new question or turn starts after an answer was given."""
    for match in _CONTINUATION.finditer(text):
        head = text[: match.start()]
        if _BOXED.search(head) or _MARKER.search(head) or _LINE_MARKER.search(head):
            return head
    return text


def strip_check_lines(text: str) -> str:
    """Drop trailing lines that only check the answer ("Check: 64 + 53 = 117.")."""
    text = text.rstrip()
    while True:
        cut = _CHECK_LINE.sub("", text).rstrip()
        if cut == text:
            return text
        text = cut


def _explicit_answers(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, how, answer)`` of every box and answer phrase, in text order."""
    found: list[tuple[int, int, str, str]] = []
    for match in _BOXED.finditer(text):
        box = _read_box(text, match)
        if box is not None:
            found.append((match.start(), box[0], "boxed", box[1]))
    markers = [*_MARKER.finditer(text), *_LINE_MARKER.finditer(text)]
    for match in markers:
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end
        if _BOXED.search(text, match.start(), line_end):
            continue  # "the answer is \boxed{5}": the box is the answer (or was cut off)
        line = text[match.end() : line_end]
        if not line.strip():  # "The final answer is:\n\[\n5\n\]": the display below
            below = _MATH_SEGMENT.match(text, len(text) - len(text[line_end:].lstrip()))
            if below:
                found.append((match.start(), below.end(), "marker", _segment(below)))
            continue
        answer = _phrase_answer(line)
        if answer:
            found.append((match.start(), line_end, "marker", answer))
    found.sort()
    return found


def _read_box(text: str, match: re.Match[str]) -> tuple[int, str] | None:
    start = match.end()
    if not match.group().endswith("{"):  # `\boxed 5`: one token
        token = re.match(r"[^\s$]+", text[start:])
        return (start + token.end(), token.group().rstrip(".")) if token else None
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip escaped characters such as \{ and \}
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1, text[start:i].strip()
        i += 1
    return None  # unbalanced: the trace was cut off inside the box


def _phrase_answer(line: str) -> str | None:
    line = line.strip()
    math = _MATH_SEGMENT.match(line)
    if math:  # "the answer is $\frac{1}{2}$, which ...": the math right after the phrase
        answer = _segment(math)
    else:
        answer = re.split(r"\.(?:\s|$)|[;!?](?:\s|$)|,\s+(?:which|so|because|since)\b", line)[0]
    answer = unwrap_math(answer.strip().rstrip(".").strip("*").strip())
    return answer or None


def _segment(match: re.Match[str]) -> str:
    """The content of a math segment match, without trailing punctuation."""
    content = next(g for g in match.groups() if g is not None)
    return content.strip().rstrip(".,;").strip()


_CLOCK_AT_END = re.compile(
    r"(\d{1,2}:\d{2}\s*(?:\\text\s*\{\s*)?[ap]\.?\s*m\.?\s*\}?)[\s.*]*\Z", re.IGNORECASE
)


def final_math(text: str) -> str | None:
    r"""The math that ends a text (``... is:\n\[ 8 \text{ km} \]``), or a clock time there.

    What the lenient fallback grades before it asks Math-Verify for the last
    expression of the text: Math-Verify reads ``\[ 8 \text{ km} \]`` as ``8*km``
    and the 4 of ``4:30 p.m.`` as the answer.

    Example:
        >>> final_math(r"Thus, the value is:\n\[\frac{1}{2}.\]")
        '\\frac{1}{2}'
    """
    clock = _CLOCK_AT_END.search(text)
    if clock:
        return clock.group(1).strip()
    segments = list(_MATH_SEGMENT.finditer(text))
    last = segments[-1] if segments else None
    if last is None or text[last.end() :].strip(" \t\n.,;!*"):
        return None
    return _segment(last) or None


def _bare_answer(text: str) -> str | None:
    """A reply that is all answer: one short line, at most a couple of words, some math
    (or a single word: ``Tuesday``, ``B``)."""
    text = text.strip().rstrip(".").strip()
    if not text or "\n" in text or len(text) > 80:
        return None
    if len(_WORD.findall(re.sub(r"\\text\{[^{}]*\}", "", text))) > 2:
        return None
    if " " in text and not re.search(r"[\d\\$^_=+\-*/()\[\]{}]", text):
        return None  # "no idea": words, no math
    segments = list(_MATH_SEGMENT.finditer(text))
    if segments and _WORD.search(_MATH_SEGMENT.sub(" ", text)):
        return _segment(segments[-1]) or None  # "We have $x = 3$": the math part
    return unwrap_math(text) or None


def unwrap_math(answer: str) -> str:
    """Remove one pair of math delimiters around the whole answer."""
    for left, right in _MATH_DELIMITERS:
        fits = len(answer) > len(left) + len(right)
        if fits and answer.startswith(left) and answer.endswith(right):
            return answer[len(left) : -len(right)].strip()
    return answer


# ---------------------------------------------------------------------------
# Restated prompt expressions

_NORMALIZE = [
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\[dt]binom"), r"\\binom"),
    (re.compile(r"\\(?:left|right|displaystyle|,|;|!|quad|qquad)(?![a-zA-Z])"), ""),
    (re.compile(r"\\text\{\s*\}|\\mathrm\{\s*\}"), ""),
    (re.compile(r"\s+|\$"), ""),
    (re.compile(r"\^\{?\\circ\}?"), r"^\\circ"),
    (re.compile(r"[.。]+$"), ""),
]
_EVALUATED = re.compile(r"^[-+]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)%?$")


def normalize(answer: str) -> str:
    r"""A canonical spelling for comparing answers as text (``\dfrac`` = ``\frac``, no spaces).

    Example:
        >>> normalize(r"\dbinom{9}{8} .")
        '\\binom{9}{8}'
    """
    answer = unwrap_math(answer.strip())
    for pattern, repl in _NORMALIZE:
        answer = pattern.sub(repl, answer)
    return answer


def prompt_expressions(prompt: str) -> set[str]:
    """The normalized math expressions of a prompt, and each side of their ``=``."""
    found: set[str] = set()
    for match in _MATH_SEGMENT.finditer(prompt):
        segment = next(g for g in match.groups() if g is not None)
        for part in [segment, *re.split(r"=|\\le|\\ge|<|>", segment)]:
            norm = normalize(part)
            if norm:
                found.add(norm)
    return found


def restates_prompt(answer: str, prompt: str | None, reference: str | None = None) -> bool:
    r"""Whether ``answer`` is an unevaluated copy of one of the prompt's expressions.

    A plain number is never a restatement (it is evaluated). When the reference
    itself is one of the prompt's expressions (multiple choice, "which is larger"),
    copying from the prompt is how the answer is given, so nothing is flagged.

    Example:
        >>> restates_prompt(r"\binom{9}{8}", r"Compute $\dbinom{9}{8}$.", "9")
        True
        >>> restates_prompt(r"2^{10}", r"Which is larger, $2^{10}$ or $10^3$?", "2^{10}")
        False
    """
    if not prompt:
        return False
    norm = normalize(answer)
    if not norm or _EVALUATED.match(norm):
        return False
    expressions = prompt_expressions(prompt)
    if norm not in expressions:
        return False
    return reference is None or normalize(reference) not in expressions
