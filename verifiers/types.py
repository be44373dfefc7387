"""The vocabulary every verifier shares: the result type, the missing-answer outcome,
and how reasoning and answer sit in one response text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

NO_ANSWER = "no_answer"
"""``details["error"]`` of a verdict whose response holds nothing to grade (no boxed or
stated answer, no code block, an empty reply). Such a sample fails, and the pipeline's
``filter`` stage sets it aside when ``filter.require_answer`` is on."""

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def render_response(reasoning: str | None, content: str) -> str:
    """One response text: the reasoning in ``<think>...</think>``, then the answer.

    The same text is what verifiers read and what the SFT and pair datasets train on.

    Example:
        >>> render_response("1 = 1", "1")
        '<think>\\n1 = 1\\n</think>\\n\\n1'
        >>> render_response(None, "1")
        '1'
    """
    return f"<think>\n{reasoning}\n</think>\n\n{content}" if reasoning else content


def answer_part(text: str) -> str:
    """A response without its reasoning: every ``<think>...</think>`` block dropped,
    everything before a lone ``</think>`` (the prompt opened the block) and everything
    after an unclosed ``<think>`` (the trace was cut off).

    Example:
        >>> answer_part("<think>hmm</think>Paris.")
        ' Paris.'
        >>> answer_part("cut off here </think>Paris. <think>more")
        'Paris. '
    """
    text = _THINK_BLOCK.sub(" ", text)
    text = text.rsplit("</think>", 1)[-1]
    return text.split("<think>", 1)[0]


def is_no_answer(details: dict[str, Any]) -> bool:
    """True when a verdict's details say the response held no answer."""
    return details.get("error") == NO_ANSWER


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one candidate against one reference.

    ``passed`` has three values on purpose: ``True`` (verified correct),
    ``False`` (verified wrong) and ``None`` (unverifiable: the reference could
    not be parsed, the checker timed out, the sandbox was unavailable). Callers
    must not treat ``None`` as a failure of the candidate.
    """

    verifier: str
    """Short name, e.g. ``"math"``, ``"code"``, ``"reward"``."""
    version: str
    """Version of the verifier logic (bump when grading changes)."""
    passed: bool | None
    score: float | None = None
    """Continuous score where one exists (reward), else 1.0/0.0 or None."""
    details: dict[str, Any] = field(default_factory=dict)
    """Small JSON-serialisable dict: extracted answer, error class, failing test."""
