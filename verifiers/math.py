r"""Math verifier: find the final answer in a trace and grade it with Math-Verify.

Parsing is kept apart from grading, as in Math-Verify's ``parse``/``verify``
split: :mod:`verifiers.math_extract` finds the answer string in a trace
(:func:`extract_answer`), :mod:`verifiers.math_compare` holds the guards around
Math-Verify's comparison, :func:`verify` grades one trace in the calling process,
and :func:`verify_batch` grades many, the easy ones (no answer, plain numbers)
at once in the calling process and the rest in worker processes under a hard
wall-clock timeout.

Math-Verify's own timeouts use ``signal.alarm``, which works only in the main
thread, so they are always switched off here (``parsing_timeout=None``,
``timeout_seconds=None``). The hard limit is enforced from outside instead: a
worker that runs past ``timeout_s`` is killed and replaced (``pebble``).

Known issues of Math-Verify (0.9, latex2sympy2_extended 1.11, antlr 4.9) and what
is done about them (tests in ``tests/test_math_traps.py``):

- A lone letter after a number is read as a unit and dropped (``4t`` parses as 4):
  guarded, an answer with a variable the reference lacks is wrong.
- ``(1, 2)`` equals ``\\{1, 2\\}``: guarded, an interval is not a set.
- ``4:30`` is read as the ratio 2/15: a clock-time reference is compared as a time.
- ``0.\\overline{3}`` parses as 0: repeating decimals are rewritten as fractions.
- A corrupt reference can still parse into something: ``4:30p..`` parses as 4.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import re
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import math_verify
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from pebble import ProcessExpired

from verifiers._math_pool import get_pool, usable_cpus
from verifiers.math_compare import (
    asked_decimals,
    compare_times,
    expand_repeating,
    fractions_verdict,
    interval_vs_set,
    numbers_equal,
    plain_number,
    rounds_equal,
    variable_dropped,
)
from verifiers.math_extract import (
    Extraction,
    cut_continuation,
    extract,
    extract_answer,
    final_math,
    normalize,
    remove_think,
    restates_prompt,
    strip_check_lines,
)
from verifiers.types import Verdict

__all__ = ["VERSION", "MathVerifyConfig", "extract_answer", "verify", "verify_batch"]

logger = logging.getLogger(__name__)

VERSION = "2"
"""Version of the grading logic; bump it when a verdict can change."""

_TARGETS = {"latex": LatexExtractionConfig(), "expr": ExprExtractionConfig()}
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


@dataclass(frozen=True)
class MathVerifyConfig:
    """Options of the math verifier.

    Example:
        >>> MathVerifyConfig(timeout_s=2.0, workers=4).workers
        4
    """

    timeout_s: float = 5.0
    """Hard wall-clock limit in seconds for grading one trace in :func:`verify_batch`
    (extraction, parsing and comparison). Past it the worker is killed and the verdict
    is unverifiable (error ``"timeout"``). :func:`verify` alone has no limit."""
    workers: int | None = None
    """Worker processes for :func:`verify_batch`; ``None`` means one per usable CPU core."""
    strip_think: bool = True
    """Ignore text inside ``<think>...</think>``, everything before a lone ``</think>``
    and everything after an unclosed ``<think>``."""
    float_rounding: int = 6
    """Decimal places floats are rounded to before comparing (Math-Verify ``float_rounding``)."""
    numeric_precision: int = 15
    """Significant digits of numeric comparisons (Math-Verify ``numeric_precision``)."""
    strict: bool = True
    """Math-Verify ``strict``: variable names matter and sets never equal tuples.
    ``False`` matches variables by position."""
    targets: str = "latex,expr"
    """Math-Verify extraction targets for answers and references, comma-separated:
    ``latex`` (``$...$``, ``\\boxed{}``) and ``expr`` (plain-text numbers and
    expressions). ``latex`` alone reads no bare number outside math delimiters."""
    allow_set_relation_comp: bool = False
    """Math-Verify ``allow_set_relation_comp``: a gold set or interval also matches a
    predicted relation (``-2 \\le x \\le 7`` for ``[-2, 7]``)."""
    raise_on_error: bool = False
    """Raise parsing and comparison errors instead of grading them (for debugging)."""
    fallback: str = "last_expression"
    """What to grade when the trace has no ``\\boxed{}``, no answer phrase and is not a
    short reply that is all answer: ``"last_expression"`` (the math that ends the
    text, else the last expression Math-Verify's own ``parse`` finds, after trailing
    check lines and any next question are cut) or ``"none"`` (the trace fails with
    ``"no_answer"``; for teachers that always mark their answer)."""
    start_method: str = "fork"
    """How :func:`verify_batch` starts workers. ``"fork"`` starts fast and needs no
    ``if __name__ == "__main__":`` guard in scripts, but a worker starts as a
    copy-on-write copy of the caller, a run's worth of rows included. ``"forkserver"``
    forks them from a small server that has loaded Math-Verify and its grammar once
    (:mod:`verifiers._math_server`), so a worker replaced after a timeout starts warm;
    it and ``"spawn"`` need that guard in scripts."""

    def __post_init__(self) -> None:
        if self.fallback not in ("none", "last_expression"):
            raise ValueError(f"fallback must be 'none' or 'last_expression', got {self.fallback!r}")
        unknown = set(self.targets.split(",")) - set(_TARGETS)
        if unknown or not self.targets:
            raise ValueError(
                f"targets must be a comma-separated subset of {sorted(_TARGETS)}, "
                f"got {self.targets!r}; set e.g. targets='latex,expr'"
            )
        self._validate_timeout()
        self._validate_workers()
        self._validate_precision()
        self._validate_start_method()

    def _validate_timeout(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(
                f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}; "
                "set e.g. timeout_s=5.0"
            )

    def _validate_workers(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(
                f"workers must be at least 1, got {self.workers!r}; "
                "set workers=None to use one per CPU core"
            )

    def _validate_precision(self) -> None:
        if self.float_rounding < 0:
            raise ValueError(
                f"float_rounding must be >= 0 decimal places, got {self.float_rounding!r}; "
                "set it to 0 or more (default 6)"
            )
        if self.numeric_precision < 1:
            raise ValueError(
                f"numeric_precision must be >= 1 digit, got {self.numeric_precision!r}; "
                "set it to 1 or more (default 15)"
            )

    def _validate_start_method(self) -> None:
        methods = multiprocessing.get_all_start_methods()
        if self.start_method not in methods:
            raise ValueError(
                f"start_method {self.start_method!r} is not available here; set one of {methods}"
            )


# ---------------------------------------------------------------------------
# Grading


def verify(
    prediction: str,
    reference: str | None,
    config: MathVerifyConfig | None = None,
    prompt: str | None = None,
) -> Verdict:
    r"""Grade one trace against a reference answer, in this process.

    There is no time limit here (Math-Verify's signal-based one is switched off);
    use :func:`verify_batch` for a hard limit.

    Args:
        prediction: The whole model response; its answer is found by
            :func:`verifiers.math_extract.extract` (and the fallback, if configured).
        reference: The reference answer, e.g. ``"\frac{1}{2}"``, ``"$3$"`` or ``"\boxed{3}"``.
        config: Verifier options; defaults to ``MathVerifyConfig()``.
        prompt: The problem as the model saw it. With it, an answer that only copies one
            of the prompt's expressions is ``no_answer``, and rounding the prompt asks for
            ("to the nearest tenth") is the tolerance for numeric answers.

    Returns:
        A ``Verdict`` with ``details = {"extracted", "reference", "error", "how",
        "reason"}``: ``how`` says where the answer came from (``boxed``, ``marker``,
        ``bare``, ``last_expression``), ``reason`` why the verdict is what it is.
        ``passed`` is ``False`` when no answer was found (error ``"no_answer"``) or the
        trace gave several (``"hedged"``, ``"retracted"``), and ``None`` when the
        reference is missing or could not be parsed (``"no_reference"``,
        ``"unparseable_reference"``).

    Raises:
        Exception: Math-Verify's errors, only when ``config.raise_on_error`` is set.

    Example:
        >>> verify(r"So the answer is \boxed{0.5}.", r"\frac{1}{2}").passed
        True
    """
    config = config or MathVerifyConfig()
    checked = _precheck(prediction, reference, config, prompt)
    if isinstance(checked, Verdict):
        return checked
    return _grade(checked, reference or "", config, prompt)


def _find_answer(
    prediction: str, config: MathVerifyConfig, parse: bool = True
) -> tuple[Extraction, list[Any]]:
    """The answer and, for the fallback, Math-Verify's parse of it.

    With ``parse=False`` (the calling process of :func:`verify_batch`, which has no
    time limit) a trace that needs Math-Verify to find its answer is ``deferred``.
    """
    found = extract(prediction, strip_think=config.strip_think)
    if found.how == "none" and config.fallback == "last_expression":
        text = remove_think(prediction) if config.strip_think else prediction
        text = strip_check_lines(cut_continuation(text))
        last = final_math(text)
        if last is not None:
            return Extraction(last, "last_expression"), []
        if not parse:
            return Extraction(None, "deferred"), []
        parsed = _parse_last_expression(text, config)
        if parsed:
            return Extraction(str(parsed[-1]), "last_expression"), parsed
    return found, []


def _precheck(
    prediction: str,
    reference: str | None,
    config: MathVerifyConfig,
    prompt: str | None,
    parse: bool = True,
) -> Verdict | tuple[Extraction, list[Any]]:
    """The verdict when no SymPy is needed (no answer, plain numbers, times), else the answer."""
    found, parsed = _find_answer(prediction, config, parse)
    answer, how = found.answer, found.how
    if how == "deferred":
        return found, parsed
    if how in ("hedged", "retracted"):
        reason = _WHY[how].format(others=", ".join(found.others))
        return _verdict(False, answer, reference, how, how, reason)
    if answer is None:
        return _verdict(False, None, reference, "no_answer", how, _WHY[how])
    if restates_prompt(answer, prompt, reference):
        return _verdict(False, answer, reference, "no_answer", how, _WHY["restated"])
    if reference is None or not reference.strip():
        return _verdict(None, answer, reference, "no_reference", how, "no reference answer")
    if normalize(answer) == normalize(reference):
        return _verdict(True, answer, reference, None, how, "written as the reference")
    got, want = plain_number(answer), plain_number(reference)
    if got is not None and want is not None:
        if numbers_equal(got, want, config.float_rounding):
            return _verdict(True, answer, reference, None, how, "same number")
        places = asked_decimals(prompt)
        if places is not None and rounds_equal(got, want, places):
            return _verdict(True, answer, reference, None, how, f"equal to {places} places")
        return _verdict(False, answer, reference, None, how, "different number")
    same_time = compare_times(answer, reference, prompt)
    if same_time is not None:
        reason = "same clock time" if same_time else "the reference is a clock time; not this one"
        return _verdict(same_time, answer, reference, None, how, reason)
    settled = fractions_verdict(answer, reference)
    if settled is not None and (settled[0] or asked_decimals(prompt) is None):
        return _verdict(settled[0], answer, reference, None, how, settled[1])
    return found, parsed


_WHY = {
    "none": "no boxed answer, answer phrase or short reply",
    "placeholder": "the box holds a placeholder, not an answer",
    "hedged": "several different final answers (also {others})",
    "retracted": "the final answer is taken back after it is given",
    "restated": "the answer copies an expression of the prompt without evaluating it",
}


def _grade(
    found: tuple[Extraction, list[Any]],
    reference: str,
    config: MathVerifyConfig,
    prompt: str | None,
) -> Verdict:
    """Math-Verify's comparison, with the guards of :mod:`verifiers.math_compare`."""
    (extraction, parsed), answer = found, found[0].answer or ""
    how = extraction.how
    gold = _parse(expand_repeating(reference), config)
    if not gold:
        return _verdict(None, answer, reference, "unparseable_reference", how, "reference unread")
    pred = parsed or _parse(expand_repeating(answer), config)
    if not pred:
        return _verdict(False, answer, reference, "unparseable_answer", how, "answer unread")
    passed = math_verify.verify(
        gold,
        pred,
        float_rounding=config.float_rounding,
        numeric_precision=config.numeric_precision,
        strict=config.strict,
        allow_set_relation_comp=config.allow_set_relation_comp,
        timeout_seconds=None,
        raise_on_error=config.raise_on_error,
    )
    if passed:
        letter = variable_dropped(answer, reference)
        if letter is not None:
            reason = f"the answer has a variable {letter!r} the reference lacks"
            return _verdict(False, answer, reference, None, how, reason)
        if interval_vs_set(answer, reference):
            return _verdict(False, answer, reference, None, how, "an interval is not a set")
        return _verdict(True, answer, reference, None, how, "equivalent (math-verify)")
    places = asked_decimals(prompt)
    if places is not None and _rounded_match(gold, pred, places):
        return _verdict(True, answer, reference, None, how, f"equal to {places} places")
    if not _has_expression(gold):
        # Only the raw string of the reference survived parsing: a string mismatch
        # says nothing about the answer (e.g. "north east" vs "\text{northeast}").
        return _verdict(None, answer, reference, "unparseable_reference", how, "reference unread")
    return _verdict(False, answer, reference, None, how, "not equivalent (math-verify)")


def _rounded_match(gold: list[Any], pred: list[Any], places: int) -> bool:
    values = [_real_value(parsed) for parsed in (gold, pred)]
    if values[0] is None or values[1] is None:
        return False
    return rounds_equal(values[0], values[1], places)


def _real_value(parsed: list[Any]) -> Decimal | None:
    expr = parsed[0]
    if isinstance(expr, str) or not getattr(expr, "is_number", False):
        return None
    try:
        value = sympy.N(expr, 30)
        return Decimal(str(value)) if value.is_real else None
    except (TypeError, ValueError, ArithmeticError):
        return None


def _parse(answer: str, config: MathVerifyConfig) -> list[Any]:
    """Parse one answer string (cached per process); an empty list when nothing was read."""
    return list(_parse_cached(answer, config.raise_on_error, config.targets))


@functools.lru_cache(maxsize=16384)
def _parse_cached(answer: str, raise_on_error: bool, targets: str) -> tuple[Any, ...]:
    if _UNESCAPED_DOLLAR.search(answer) or "\\boxed" in answer or _is_wordy(answer):
        candidates = [answer]  # delimited, or a sentence: let Math-Verify find the math
    else:
        flat = " ".join(answer.split())  # inline $...$ may not span lines
        # `$...$` first: Math-Verify reads `50\%` there but not in `\boxed{50\%}`.
        candidates = [f"${flat}$", f"\\boxed{{{flat}}}"]
    first: list[Any] = []
    for candidate in candidates:
        parsed = math_verify.parse(
            candidate,
            extraction_config=_extraction(targets),
            parsing_timeout=None,
            raise_on_error=raise_on_error,
        )
        if _has_expression(parsed):
            return tuple(parsed)
        first = first or parsed
    return tuple(first)


def _extraction(targets: str) -> list[Any]:
    return [_TARGETS[name] for name in targets.split(",")]


def _is_wordy(answer: str) -> bool:
    """A sentence ("Jane started 3 hours ago"), not an expression: three words or more."""
    return len(_WORD.findall(re.sub(r"\\[a-zA-Z]+(\{[^{}]*\})?", " ", answer))) >= 3


_WORD = re.compile(r"(?<![a-zA-Z])[a-zA-Z]{2,}(?![a-zA-Z])")


def _parse_last_expression(text: str, config: MathVerifyConfig) -> list[Any]:
    """Math-Verify's own extraction over the answer text (the lenient fallback).

    The text is read as :func:`~verifiers.math_extract.extract` reads it (no
    ``<think>``, no next question), without trailing check lines, so a sanity check
    after the answer is not taken for it.
    """
    parsed = math_verify.parse(
        expand_repeating(text),
        extraction_config=_extraction(config.targets),
        parsing_timeout=None,
        raise_on_error=config.raise_on_error,
    )
    return parsed if _has_expression(parsed) else []


def _has_expression(parsed: list[Any] | tuple[Any, ...]) -> bool:
    """Whether parsing gave a SymPy object, not just the fallback string."""
    return any(not isinstance(item, str) for item in parsed)


def _verdict(
    passed: bool | None,
    extracted: str | None,
    reference: str | None,
    error: str | None,
    how: str = "none",
    reason: str = "",
) -> Verdict:
    score = None if passed is None else float(passed)
    details = {
        "extracted": extracted,
        "reference": reference,
        "error": error,
        "how": how,
        "reason": reason,
    }
    return Verdict(verifier="math", version=VERSION, passed=passed, score=score, details=details)


# ---------------------------------------------------------------------------
# Batches in a process pool


def verify_batch(
    predictions: Sequence[str],
    references: Sequence[str | None],
    config: MathVerifyConfig | None = None,
    *,
    prompts: Sequence[str | None] | None = None,
) -> list[Verdict]:
    r"""Grade many traces, the hard ones in worker processes under a hard wall-clock timeout.

    Verdicts come back in input order, each as :func:`verify` would give it. A large
    batch is graded in the workers, :data:`CHUNK_ROWS` traces per task; in a small
    one, what needs no SymPy (no answer, a restated prompt, plain numbers on both
    sides, clock times) is decided here at once and the rest goes to the worker pool,
    one task per trace. A trace that
    takes longer than ``config.timeout_s`` there gets ``passed=None`` with error
    ``"timeout"``; its worker is killed and replaced, so one pathological answer never
    stalls the batch. The pool is started on first use, reused by later calls and
    stopped at exit.

    Args:
        predictions: Whole model responses.
        references: Reference answers, one per prediction (``None`` if there is none).
        config: Verifier options; defaults to ``MathVerifyConfig()``.
        prompts: The problem text of each prediction (optional; see :func:`verify`).

    Returns:
        One ``Verdict`` per prediction, as :func:`verify` would give, or ``passed=None``
        with error ``"timeout"``, ``"worker_died"`` or ``"worker_error: <type>"``.

    Raises:
        ValueError: If the sequences differ in length.

    Example:
        >>> [v.passed for v in verify_batch([r"\boxed{2}", r"\boxed{3}"], ["2", "2"])]
        [True, False]
    """
    config = config or MathVerifyConfig()
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "pass one reference (or None) per prediction"
        )
    if prompts is None:
        prompts = [None] * len(predictions)
    elif len(prompts) != len(predictions):
        raise ValueError(
            f"got {len(prompts)} prompts for {len(predictions)} predictions; "
            "pass one prompt (or None) per prediction, or prompts=None"
        )
    rows: dict[tuple[str, str | None, str | None], list[int]] = {}
    for i, key in enumerate(zip(predictions, references, prompts, strict=True)):
        rows.setdefault(key, []).append(i)  # the same trace to the same problem: graded once
    keys = list(rows)
    if len(keys) < 2 * CHUNK_ROWS:
        graded = _verify_each(keys, config)
    else:
        graded = _verify_chunks(keys, config)
    verdicts: list[Verdict | None] = [None] * len(predictions)
    for key, verdict in zip(keys, graded, strict=True):
        for i in rows[key]:
            verdicts[i] = verdict
    return [v for v in verdicts if v is not None]


PRELOAD = ("verifiers._math_server",)
"""What the fork server imports before it forks workers (:mod:`verifiers._math_server`)."""
CHUNK_ROWS = 32
"""Traces per worker task when a batch has many: one task per trace cost more in
inter-process traffic than grading most of them (issue 19)."""


def _verify_chunks(
    keys: list[tuple[str, str | None, str | None]], config: MathVerifyConfig
) -> list[Verdict]:
    """Grade chunks of traces in the workers, each chunk as one task.

    A chunk that runs past its limit (``timeout_s`` per trace, at least twice it), or
    whose worker dies or fails, is graded again trace by trace under ``timeout_s``
    each (:func:`_verify_each`), so a verdict never depends on its neighbours.
    Consecutive traces share a chunk: a prompt's samples land in one worker, whose
    parse cache then reads the reference once.
    """
    pool = get_pool(config.workers or usable_cpus(), config.start_method, _init_worker, PRELOAD)
    chunks = [keys[lo : lo + CHUNK_ROWS] for lo in range(0, len(keys), CHUNK_ROWS)]
    limit = config.timeout_s * max(2.0, CHUNK_ROWS / 8)
    futures = [pool.submit(_grade_chunk, limit, chunk, config) for chunk in chunks]
    out: list[Verdict] = []
    for chunk, future in zip(chunks, futures, strict=True):
        try:
            out += future.result()
        except Exception:  # timeout, dead worker, an error in one trace: one at a time
            out += _verify_each(chunk, config)
    return out


def _grade_chunk(
    chunk: list[tuple[str, str | None, str | None]], config: MathVerifyConfig
) -> list[Verdict]:
    return [verify(answer, reference, config, prompt) for answer, reference, prompt in chunk]


def _verify_each(
    keys: list[tuple[str, str | None, str | None]], config: MathVerifyConfig
) -> list[Verdict]:
    """Decide here what needs no SymPy; grade the rest one task per trace, each under
    ``timeout_s``."""
    verdicts: list[Verdict | None] = []
    jobs: dict[tuple[str | None, str, str | None, str | None], list[int]] = {}
    for i, (prediction, reference, prompt) in enumerate(keys):
        checked = _precheck(prediction, reference, config, prompt, parse=False)
        verdicts.append(checked if isinstance(checked, Verdict) else None)
        if not isinstance(checked, Verdict):
            # Traces with the same answer to the same problem are graded once.
            answer = checked[0].answer if checked[0].how != "deferred" else prediction
            jobs.setdefault((answer, checked[0].how, reference, prompt), []).append(i)
    if jobs:
        pool = get_pool(config.workers or usable_cpus(), config.start_method, _init_worker, PRELOAD)
        args = [(*keys[idx[0]][:2], config, keys[idx[0]][2]) for idx in jobs.values()]
        futures = [pool.submit(verify, config.timeout_s, *a) for a in args]
        for idx, future, a in zip(jobs.values(), futures, args, strict=True):
            verdict = _collect(future, *a)
            for i in idx:
                verdicts[i] = verdict
    return [v for v in verdicts if v is not None]


def _collect(
    future: Any,
    prediction: str,
    reference: str | None,
    config: MathVerifyConfig,
    prompt: str | None,
) -> Verdict:
    try:
        return future.result()
    except FutureTimeoutError:
        error = "timeout"
    except ProcessExpired as exc:  # killed from outside, e.g. out of memory
        logger.warning("math verifier worker died (exit code %s)", exc.exitcode)
        error = "worker_died"
    except Exception as exc:
        if config.raise_on_error:
            raise
        # No traceback: a broken pool sets one shared exception on every future.
        logger.warning("math verifier failed on one trace: %r", exc)
        error = f"worker_error: {type(exc).__name__}"
    found = extract(prediction, strip_think=config.strip_think)
    reason = f"grading stopped: {error}"
    return _verdict(None, found.answer, reference, error, found.how, reason)


def _init_worker() -> None:
    # Math-Verify warns once per process that its timeout is off; here the pool kills.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # The first LaTeX parse of a process loads the ANTLR grammar (about a second, more
    # on a busy machine): pay it here, outside the first trace's timeout.
    _parse_cached("$\\frac{1}{2}$", False, "latex,expr")
