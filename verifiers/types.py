"""The one result type every verifier returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
