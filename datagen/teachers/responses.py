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
    """Turn a chat-completion response into one :class:`Completion` per choice.

    A reasoning field (``reasoning_content``, as DeepSeek and vLLM's reasoning
    parsers return it, or ``reasoning``) is kept apart from the text. With
    several choices, usage covers the whole request: the prompt is billed once
    (``prompt_share``) and completion tokens are split by text length.

    Args:
        response: The SDK's ``ChatCompletion`` (or anything with the same fields).
        n: Choices asked for (more are ignored).

    Returns:
        The completions, ordered by choice index; may be fewer than ``n``.

    Raises:
        MalformedResponse: No choices or no message (a broken 200 answer).
    """
    choices = getattr(response, "choices", None)
    if not choices or not isinstance(choices, list):
        raise MalformedResponse("no choices in the response")
    choices = sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)[:n]
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_total = int(getattr(usage, "completion_tokens", 0) or 0)
    parts = []
    for choice in choices:
        message = getattr(choice, "message", None)
        if message is None:
            raise MalformedResponse("a choice has no message")
        extra = getattr(message, "model_extra", None) or {}
        reasoning = getattr(message, "reasoning_content", None) or extra.get("reasoning")
        text = message.content or ""
        parts.append((text, reasoning if isinstance(reasoning, str) else None, choice))
    shares = _split_tokens(completion_total, [len(t) + len(r or "") for t, r, _ in parts])
    return [
        Completion(
            text=text,
            reasoning=reasoning,
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            prompt_share=1.0 / len(parts),
        )
        for (text, reasoning, choice), tokens in zip(parts, shares, strict=True)
    ]


def _split_tokens(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights``; the parts add up to ``total``."""
    if len(weights) == 1:
        return [total]
    weight_sum = sum(weights) or len(weights)
    weights = weights if sum(weights) else [1] * len(weights)
    parts = [total * w // weight_sum for w in weights]
    parts[-1] += total - sum(parts)
    return parts
