"""What to do after a failed API call: retry (and when), give up on this request, or stop.

Kept apart from the client so the policy can be read, and tested, on its own:

- **retry** with exponential backoff and jitter: 408, 409, 429, 5xx, timeouts,
  dropped or cut connections, and bodies that are not the JSON we expect. A
  ``Retry-After`` (or ``retry-after-ms``) header sets the wait instead.
- **fail** this request at once: other 4xx (400 bad request, 413, 422, ...).
  Sending it again gets the same answer.
- **fatal**: 401, 403, 404. A wrong key, a key without access or a wrong
  ``model``/``base_url`` fails every request alike, so the stage stops with a
  message saying what to set, instead of failing every request in turn.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Action = Literal["retry", "fail", "fatal"]

RETRY_STATUS = frozenset({408, 409, 429})
FATAL_STATUS = {
    401: "the API key was refused (HTTP 401): check the variable named by teacher.api_key_env",
    403: "the API key has no access to this model (HTTP 403): check teacher.model and the key",
    404: "no such model or endpoint (HTTP 404): check teacher.model and teacher.base_url "
    "(it usually ends in /v1)",
}


@dataclass(frozen=True)
class Verdict:
    """The decision for one failed call."""

    action: Action
    reason: str
    """Short, loggable description (never contains the API key)."""
    retry_after: float | None = None
    """Seconds the server asked us to wait, if it said."""
    kind: str = ""
    """``"connect"`` when no connection could be opened (refused, reset, no route): the
    client stops after ``teacher.unreachable_after`` seconds of only these."""


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after`` (seconds or a date).

    Args:
        headers: Response headers (case-insensitive mapping, or lower-case keys).
        now: Current Unix time, for date values (default: the clock).

    Returns:
        A non-negative number of seconds, or None when absent or unreadable.

    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after-ms": "250"})
    0.25
    """
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - (now or time.time()))
    return None


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random.

    Args:
        attempt: 0 for the first retry.
        initial: Base delay in seconds.
        maximum: Cap on the exponential part, in seconds.
        rng: Source of jitter.

    Returns:
        A delay in ``[d/2, d]`` where ``d = min(maximum, initial * 2**attempt)``.
    """
    d = min(maximum, initial * (2 ** min(attempt, 30)))
    return d / 2 + rng.uniform(0, d / 2)


def classify(exc: BaseException) -> Verdict:
    """Decide what to do about an exception raised by an OpenAI-compatible client call.

    Args:
        exc: What ``AsyncOpenAI.chat.completions.create`` (or our parsing) raised.

    Returns:
        The :class:`Verdict`; unknown exceptions are retried, so a new kind of
        network error costs a few retries rather than the run.
    """
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _error_message(exc)
        reason = f"HTTP {status}: {message}"
        if status in FATAL_STATUS:
            return Verdict("fatal", f"{FATAL_STATUS[status]} (server said: {message})")
        headers = getattr(exc.response, "headers", None)
        if status in RETRY_STATUS or status >= 500:
            return Verdict("retry", reason, parse_retry_after(headers))
        return Verdict("fail", reason)
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, asyncio.TimeoutError)):
        return Verdict("retry", "timeout")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f" ({type(cause).__name__})" if cause is not None else ""
        connect = _connect_failure(exc)
        if connect == "dns":
            return Verdict("fatal", f"the host name in teacher.base_url does not resolve{detail}")
        return Verdict("retry", f"connection error{detail}", kind=connect or "")
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return Verdict("retry", f"malformed response: {type(exc).__name__}")
    if isinstance(exc, MalformedResponse):
        return Verdict("retry", f"malformed response: {exc}")
    return Verdict("retry", f"{type(exc).__name__}: {str(exc)[:200]}")


_DNS_WORDS = (
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "no address associated",
    "getaddrinfo failed",
)


def _connect_failure(exc: BaseException) -> str | None:
    """``"dns"`` or ``"connect"`` when the connection could not be opened at all, else None."""
    import socket

    seen: set[int] = set()
    node: BaseException | None = exc
    connect = False
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        text = str(node).lower()
        if isinstance(node, socket.gaierror) or any(w in text for w in _DNS_WORDS):
            return "dns"
        name = type(node).__name__
        if (
            isinstance(node, (ConnectionRefusedError, ConnectionResetError))
            or name == "ConnectError"
        ):
            connect = True
        node = node.__cause__ or node.__context__
    return "connect" if connect else None


class MalformedResponse(ValueError):
    """A 200 answer without the fields a chat completion must have."""


def _error_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if body.get("detail"):
            return str(body["detail"])[:300]
    return str(getattr(exc, "message", exc))[:300]
