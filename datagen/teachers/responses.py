"""Read OpenAI-compatible chat-completion responses into :class:`Completion` records.

Where servers differ: DeepSeek's API and vLLM's reasoning parsers put the
thinking in ``reasoning_content`` (newer vLLM and OpenRouter: ``reasoning``);
other models write ``<think>`` blocks into the text, which
:func:`~datagen.teachers.base.split_reasoning` separates later. Usage covers
a whole request, so a request with ``n`` choices is split between them.
"""

from __future__ import annotations

from typing import Any

from datagen.teachers.base import Completion
from datagen.teachers.retry import MalformedResponse


def parse_completion(response: Any, n: int) -> list[Completion]:
    """Turn a chat-completion response, as the server sent it (decoded JSON), into completions.

    A reasoning field (``reasoning_content``, as DeepSeek and vLLM's reasoning
    parsers return it, or ``reasoning``) is kept apart from the text. With
    several choices, usage covers the whole request: the prompt is billed once
    (``prompt_share``) and completion tokens are split by text length.

    Args:
        response: The decoded JSON body (anything else is a broken answer).
        n: Choices asked for (more are ignored).

    Returns:
        The completions, ordered by choice index; may be fewer than ``n``.

    Raises:
        MalformedResponse: Not a JSON object, no choices or no message (a broken 200 answer).
    """
    if not isinstance(response, dict):
        raise MalformedResponse(f"the response is not a JSON object: {str(response)[:80]!r}")
    choices = response.get("choices")
    if not choices or not isinstance(choices, list):
        raise MalformedResponse("no choices in the response")
    if not all(isinstance(c, dict) for c in choices):
        raise MalformedResponse("a choice is not a JSON object")
    if not all(_absent_or_count(c.get("index")) for c in choices):
        raise MalformedResponse("a choice's index is not a whole number")
    choices = sorted(choices, key=lambda c: c.get("index") or 0)[:n]
    usage = response.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    for key in ("prompt_tokens", "completion_tokens"):
        if not _absent_or_count(usage.get(key)):
            raise MalformedResponse(f"usage.{key} is not a count: {usage.get(key)!r:.40}")
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_total = int(usage.get("completion_tokens") or 0)
    parts = []
    for choice in choices:
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedResponse("a choice has no message")
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise MalformedResponse("a message's content is not text")
        if not isinstance(choice.get("finish_reason"), (str, type(None))):
            raise MalformedResponse("a choice's finish_reason is not text")
        parts.append((text, reasoning if isinstance(reasoning, str) else None, choice))
    shares = _split_tokens(completion_total, [len(t) + len(r or "") for t, r, _ in parts])
    return [
        Completion(
            text=text,
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            prompt_share=1.0 / len(parts),
        )
        for (text, reasoning, choice), tokens in zip(parts, shares, strict=True)
    ]


def _absent_or_count(value: Any) -> bool:
    """Whether ``value`` is absent (None) or a whole number of at least 0 (not a bool)."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _split_tokens(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights``; the parts add up to ``total``."""
    if len(weights) == 1:
        return [total]
    weight_sum = sum(weights) or len(weights)
    weights = weights if sum(weights) else [1] * len(weights)
    parts = [total * w // weight_sum for w in weights]
    parts[-1] += total - sum(parts)
    return parts
