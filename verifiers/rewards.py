"""The math and code verifiers as reward functions for RL trainers (TRL's ``GRPOTrainer``).

TRL calls each of its ``reward_funcs`` as ``f(prompts=..., completions=..., completion_ids=...,
**columns)``, where ``columns`` are the other dataset columns, one value per completion, plus
``trainer_state``, ``log_extra`` and ``log_metric`` (trl/trainer/grpo_trainer.py,
``_calculate_rewards``). It expects one float per completion and reads ``None`` as "this reward
does not apply here": the completion is left out of that reward instead of scored 0. That is
exactly what an unverifiable verdict means, so it maps to ``None``, never to 0.0.

Completions come as plain strings (standard datasets) or as a list of messages whose last
turn is the completion (conversational datasets); both are accepted. The reference comes
from a dataset column: ``answer`` / ``reference`` / ``solution`` for math, ``tests`` /
``reference`` for code (a :class:`~verifiers.code.TestSpec`, its dict form, or that dict as
JSON, which is how datagen stores code references).

Grading runs where the verifiers already put it: math in the process-wide worker pool of
:func:`verifiers.math.verify_batch` (hard timeout per completion, the worker killed past it),
code in the sandbox pool of :func:`verifiers.code.verify_batch`. Both pools are locked and
restarted in a forked child, so a reward function may be called from several threads at
once, or from worker processes started with ``spawn`` or ``forkserver`` (forking a process
whose grading pool is running is unsafe, as for any process that runs threads). The
functions are module-level (picklable); bind options with
``functools.partial(math_reward, config=MathVerifyConfig(timeout_s=2))``.

Example:
    >>> math_reward([r"so \\boxed{4}", [{"role": "assistant", "content": "5"}]], answer=["4", "4"])
    [1.0, 0.0]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from verifiers import code as code_verifier
from verifiers import math as math_verifier
from verifiers.types import Verdict

MATH_REFERENCE_COLUMNS = ("answer", "reference", "solution")
"""Dataset columns read as the math reference, first present wins."""
CODE_REFERENCE_COLUMNS = ("tests", "reference")
"""Dataset columns read as the code tests, first present wins."""


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The text of one completion: the string itself, or the content of its last message.

    Content given as a list of blocks (``[{"type": "text", "text": ...}]``) is joined.

    Example:
        >>> completion_text([{"role": "assistant", "content": "x = 2"}])
        'x = 2'
    """
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    message = completion[-1]
    if not isinstance(message, dict) or "content" not in message:
        raise TypeError(
            "a conversational completion must be a list of message dicts with 'content', "
            f"got {type(message).__name__}"
        )
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def math_reward(
    completions: Sequence[str | Sequence[dict[str, Any]]],
    *,
    config: math_verifier.MathVerifyConfig | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 for a verified correct final answer, 0.0 for a wrong one, None when unverifiable.

    Args:
        completions: One completion per row, a string or a list of messages.
        config: Math verifier options (timeout, workers, fallback).
        log_extra: TRL's hook to add a column to its completions table; gets each
            verdict's outcome (``passed``, ``failed`` or ``unverifiable: <error>``).
        **columns: Dataset columns; the first of :data:`MATH_REFERENCE_COLUMNS` present is
            the reference (a missing or None reference makes that row unverifiable).

    Returns:
        One reward per completion, in order.

    Raises:
        ValueError: No reference column, or one whose length differs from ``completions``.
    """
    references = _column(columns, MATH_REFERENCE_COLUMNS, len(completions))
    texts = [completion_text(c) for c in completions]
    verdicts = math_verifier.verify_batch(
        texts, [None if r is None else str(r) for r in references], config
    )
    return _rewards(verdicts, "math_outcome", log_extra)


def code_reward(
    completions: Sequence[str | Sequence[dict[str, Any]]],
    *,
    config: code_verifier.CodeVerifierConfig | None = None,
    log_extra: Callable[[str, list], None] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0 when the completion's last Python block passes every test, 0.0 when one fails.

    None when the run cannot be judged (no tests, sandbox unavailable, malformed spec).
    A completion without a fenced Python block fails (``no_code``), as in the pipeline.

    Args:
        completions: One completion per row, a string or a list of messages.
        config: Code verifier options (sandbox limits and isolation).
        log_extra: TRL's hook to add a column to its completions table.
        **columns: Dataset columns; the first of :data:`CODE_REFERENCE_COLUMNS` present holds
            each row's tests (TestSpec, dict, or JSON text of the dict).

    Returns:
        One reward per completion, in order.

    Raises:
        ValueError: No tests column, or one whose length differs from ``completions``.
    """
    specs = _column(columns, CODE_REFERENCE_COLUMNS, len(completions))
    codes = [code_verifier.extract_code(completion_text(c)) for c in completions]
    verdicts: list[Verdict | None] = [None] * len(codes)
    todo = []
    for i, spec in enumerate(specs):
        parsed, error = _test_spec(spec)
        if error is not None:
            verdicts[i] = Verdict("code", code_verifier.VERSION, None, None, {"error": error})
        else:
            todo.append((i, parsed))
    if todo:
        results = code_verifier.verify_batch(
            [codes[i] for i, _ in todo], [spec for _, spec in todo], config
        )
        for (i, _), verdict in zip(todo, results, strict=True):
            verdicts[i] = verdict
    return _rewards([v for v in verdicts if v is not None], "code_outcome", log_extra)


def _test_spec(spec: Any) -> tuple[Any, str | None]:
    """``(spec, None)`` for the code verifier (JSON text decoded), or ``(None, why not)``."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None, "no tests"
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            return None, f"tests are not valid JSON: {exc}"
    if not isinstance(spec, (dict, code_verifier.TestSpec)):
        return None, f"tests must be a TestSpec or its dict form, got {type(spec).__name__}"
    return spec, None


def _column(columns: dict[str, Any], names: Sequence[str], n: int) -> list[Any]:
    for name in names:
        if name in columns:
            values = list(columns[name])
            if len(values) != n:
                raise ValueError(
                    f"column {name!r} has {len(values)} values for {n} completions; "
                    "pass one value per completion"
                )
            return values
    trainer_args = ("trainer_state", "log_metric", "prompts", "completion_ids")
    present = sorted(k for k in columns if k not in trainer_args)
    raise ValueError(
        f"no reference column: expected one of {list(names)} among the dataset columns, "
        f"got {present}; rename the column or bind it with functools.partial"
    )


def _rewards(
    verdicts: Sequence[Verdict], column: str, log_extra: Callable[[str, list], None] | None
) -> list[float | None]:
    if log_extra is not None:
        log_extra(column, [_outcome(v) for v in verdicts])
    return [None if v.passed is None else float(v.passed) for v in verdicts]


def _outcome(verdict: Verdict) -> str:
    if verdict.passed is None:
        reason = verdict.details.get("error") or verdict.details.get("failure") or "unknown"
        return f"unverifiable: {reason}"
    return "passed" if verdict.passed else "failed"


REWARDS: dict[str, Callable[..., list[float | None]]] = {
    "math": math_reward,
    "code": code_reward,
}
"""Reward functions by domain name."""
