"""Math verifier: find the final answer in a trace and grade it with Math-Verify.

Parsing is kept apart from grading, as in Math-Verify's ``parse``/``verify``
split: :func:`extract_answer` finds the answer string in a trace, :func:`verify`
grades one trace in the calling process, and :func:`verify_batch` grades many in
worker processes under a hard wall-clock timeout.

Math-Verify's own timeouts use ``signal.alarm``, which works only in the main
thread, so they are always switched off here (``parsing_timeout=None``,
``timeout_seconds=None``). The hard limit is enforced from outside instead: a
worker that runs past ``timeout_s`` is killed and replaced (``pebble``).

Known issues (math-verify 0.9, latex2sympy2_extended 1.11, antlr 4.9):

- A lone letter after a number is read as a unit and dropped: ``4t`` parses as 4.
- A corrupt reference can still parse into something: ``4:30p..`` parses as 4.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

import math_verify
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from pebble import ProcessExpired, ProcessPool

from verifiers.types import NO_ANSWER, Verdict, answer_part

logger = logging.getLogger(__name__)

VERSION = "1"
"""Version of the grading logic; bump it when a verdict can change."""

_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


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
    raise_on_error: bool = False
    """Raise parsing and comparison errors instead of grading them (for debugging)."""
    fallback: str = "none"
    """What to grade when the trace has no ``\\boxed{}`` and no "final answer" phrase:
    ``"none"`` (the trace fails with ``"no_answer"``) or ``"last_expression"`` (the last
    math expression in the text, as Math-Verify's own ``parse`` finds it). The lenient
    mode suits weak teachers that rarely box their answer; strong teachers box anyway."""
    start_method: str = "fork"
    """How :func:`verify_batch` starts workers. ``"fork"`` starts fast and needs no
    ``if __name__ == "__main__":`` guard in scripts; ``"forkserver"`` or ``"spawn"``
    avoid forking a process that runs threads, but then scripts need that guard."""

    def __post_init__(self) -> None:
        if self.fallback not in ("none", "last_expression"):
            raise ValueError(f"fallback must be 'none' or 'last_expression', got {self.fallback!r}")
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
# Extraction

# `\boxed{`, `\boxed {`, `\fbox{`, or the brace-less `\boxed 5`.
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{|\\boxed\s+(?=[^\s{])")
_ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer(?:\s+is\b|\s*\**\s*:)|answer\s*\**\s*:)[\s:*]*", re.IGNORECASE
)
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def extract_answer(text: str, *, strip_think: bool = True) -> str | None:
    r"""Return the final answer written in a trace, or ``None`` if there is none.

    Takes the content of the last ``\boxed{...}`` (balanced braces; ``\fbox{...}``
    and ``\boxed 5`` too), else the rest of the line after the last "final answer
    is" or "answer:". The reasoning inside ``<think>`` is ignored.

    Args:
        text: A whole model response.
        strip_think: Ignore the ``<think>`` part (see :class:`MathVerifyConfig`).

    Returns:
        The answer as written (LaTeX, not parsed), or ``None``.

    Example:
        >>> extract_answer(r"<think>\boxed{1}</think> So \boxed{\frac{1}{2}} and \boxed{3}.")
        '3'
        >>> extract_answer("The final answer is $42$.")
        '42'
        >>> extract_answer("no idea") is None
        True
    """
    if strip_think:
        text = _strip_think(text)
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return None
    line = text[phrases[-1].end() :].split("\n", 1)[0]
    answer = _unwrap_math(line.split(". ", 1)[0].strip().rstrip(".").strip("*").strip())
    return answer or None


def _strip_think(text: str) -> str:
    return answer_part(text)


def _last_boxed(text: str) -> str | None:
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    start = match.end()
    if not match.group().endswith("{"):  # `\boxed 5`: one token
        token = re.match(r"[^\s$]+", text[start:])
        return token.group().rstrip(".") if token else None
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
                return text[start:i].strip()
        i += 1
    return None  # unbalanced: the trace was cut off inside the box


def _unwrap_math(answer: str) -> str:
    for left, right in _MATH_DELIMITERS:
        fits = len(answer) > len(left) + len(right)
        if fits and answer.startswith(left) and answer.endswith(right):
            return answer[len(left) : -len(right)].strip()
    return answer


# ---------------------------------------------------------------------------
# Grading


def verify(
    prediction: str, reference: str | None, config: MathVerifyConfig | None = None
) -> Verdict:
    r"""Grade one trace against a reference answer, in this process.

    There is no time limit here (Math-Verify's signal-based one is switched off);
    use :func:`verify_batch` for a hard limit.

    Args:
        prediction: The whole model response; its answer is found by :func:`extract_answer`.
        reference: The reference answer, e.g. ``"\frac{1}{2}"``, ``"$3$"`` or ``"\boxed{3}"``.
        config: Verifier options; defaults to ``MathVerifyConfig()``.

    Returns:
        A ``Verdict`` with ``details = {"extracted", "reference", "error"}``. ``passed`` is
        ``False`` when no answer was found (error ``"no_answer"``) and ``None`` when the
        reference is missing or could not be parsed (``"no_reference"``,
        ``"unparseable_reference"``).

    Raises:
        Exception: Math-Verify's errors, only when ``config.raise_on_error`` is set.

    Example:
        >>> verify(r"So the answer is \boxed{0.5}.", r"\frac{1}{2}").passed
        True
    """
    config = config or MathVerifyConfig()
    extracted = extract_answer(prediction, strip_think=config.strip_think)
    answer: list[Any] = []
    if extracted is None and config.fallback == "last_expression":
        answer = _parse_last_expression(prediction, config)
        extracted = str(answer[-1]) if answer else None
    if extracted is None:
        return _verdict(False, extracted, reference, NO_ANSWER)
    if reference is None or not reference.strip():
        return _verdict(None, extracted, reference, "no_reference")
    gold = _parse(reference, config)
    if not gold:
        return _verdict(None, extracted, reference, "unparseable_reference")
    answer = answer or _parse(extracted, config)
    if not answer:
        return _verdict(False, extracted, reference, "unparseable_answer")
    passed = math_verify.verify(
        gold,
        answer,
        float_rounding=config.float_rounding,
        numeric_precision=config.numeric_precision,
        strict=config.strict,
        timeout_seconds=None,
        raise_on_error=config.raise_on_error,
    )
    if not passed and not _has_expression(gold):
        # Only the raw string of the reference survived parsing: a string mismatch
        # says nothing about the answer (e.g. "north east" vs "\text{northeast}").
        return _verdict(None, extracted, reference, "unparseable_reference")
    return _verdict(passed, extracted, reference, None)


def _parse(answer: str, config: MathVerifyConfig) -> list[Any]:
    """Parse one answer string; an empty list when nothing could be read."""
    if _UNESCAPED_DOLLAR.search(answer) or "\\boxed" in answer:
        candidates = [answer]  # already delimited: let Math-Verify find the math
    else:
        flat = " ".join(answer.split())  # inline $...$ may not span lines
        # `$...$` first: Math-Verify reads `50\%` there but not in `\boxed{50\%}`.
        candidates = [f"${flat}$", f"\\boxed{{{flat}}}"]
    first: list[Any] = []
    for candidate in candidates:
        parsed = math_verify.parse(
            candidate,
            extraction_config=_EXTRACTION,
            parsing_timeout=None,
            raise_on_error=config.raise_on_error,
        )
        if _has_expression(parsed):
            return parsed
        first = first or parsed
    return first


def _parse_last_expression(prediction: str, config: MathVerifyConfig) -> list[Any]:
    """Math-Verify's own extraction over the whole answer text (the lenient fallback)."""
    text = _strip_think(prediction) if config.strip_think else prediction
    parsed = math_verify.parse(
        text,
        extraction_config=_EXTRACTION,
        parsing_timeout=None,
        raise_on_error=config.raise_on_error,
    )
    return parsed if _has_expression(parsed) else []


def _has_expression(parsed: list[Any]) -> bool:
    """Whether parsing gave a SymPy object, not just the fallback string."""
    return any(not isinstance(item, str) for item in parsed)


def _verdict(
    passed: bool | None, extracted: str | None, reference: str | None, error: str | None
) -> Verdict:
    score = None if passed is None else float(passed)
    details = {"extracted": extracted, "reference": reference, "error": error}
    return Verdict(verifier="math", version=VERSION, passed=passed, score=score, details=details)


# ---------------------------------------------------------------------------
# Batches in a process pool


def verify_batch(
    predictions: Sequence[str],
    references: Sequence[str | None],
    config: MathVerifyConfig | None = None,
) -> list[Verdict]:
    r"""Grade many traces in worker processes, each under a hard wall-clock timeout.

    Verdicts come back in input order. A trace that takes longer than
    ``config.timeout_s`` gets ``passed=None`` with error ``"timeout"``; its worker
    is killed and replaced, so one pathological answer never stalls the batch.
    The pool is started on first use, reused by later calls and stopped at exit.

    Args:
        predictions: Whole model responses.
        references: Reference answers, one per prediction (``None`` if there is none).
        config: Verifier options; defaults to ``MathVerifyConfig()``.

    Returns:
        One ``Verdict`` per prediction, as :func:`verify` would give, or ``passed=None``
        with error ``"timeout"``, ``"worker_died"`` or ``"worker_error: <type>"``.

    Raises:
        ValueError: If the two sequences differ in length.

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
    if not predictions:
        return []
    pool = _get_pool(config.workers or _usable_cpus(), config.start_method)
    futures = [
        pool.submit(verify, config.timeout_s, prediction, reference, config)
        for prediction, reference in zip(predictions, references, strict=True)
    ]
    return [
        _collect(future, prediction, reference, config)
        for future, prediction, reference in zip(futures, predictions, references, strict=True)
    ]


def _collect(
    future: Any, prediction: str, reference: str | None, config: MathVerifyConfig
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
    extracted = extract_answer(prediction, strip_think=config.strip_think)
    return _verdict(None, extracted, reference, error)


_POOL: ProcessPool | None = None
_POOL_KEY: tuple[int, int, str] = (0, 0, "")  # (owning pid, workers, start method)
_POOL_LOCK = threading.Lock()


def _get_pool(workers: int, start_method: str) -> ProcessPool:
    """The process-wide pool, (re)started if missing, broken, resized or inherited."""
    global _POOL, _POOL_KEY
    key = (os.getpid(), workers, start_method)
    with _POOL_LOCK:
        if _POOL is None or key != _POOL_KEY or not _POOL.active:
            if _POOL is not None and _POOL_KEY[0] == key[0]:
                _stop(_POOL)
            context = multiprocessing.get_context(start_method)
            _POOL = ProcessPool(max_workers=workers, initializer=_init_worker, context=context)
            _POOL_KEY = key
            # A multiprocessing child (e.g. a ProcessPoolExecutor worker) runs no atexit
            # hooks but joins its non-daemon children at exit: without this it would wait
            # forever on the pool's workers. Exit finalizers run there and in a main process.
            multiprocessing.util.Finalize(None, _shutdown_pool, exitpriority=100)
        return _POOL


def _init_worker() -> None:
    # Math-Verify warns once per process that its timeout is off; here the pool kills.
    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _stop(pool: ProcessPool) -> None:
    pool.stop()
    pool.join()


@atexit.register
def _shutdown_pool() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL_KEY[0] == os.getpid():
            _stop(_POOL)
        _POOL = None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
