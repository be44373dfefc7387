"""Stage ``dedup``: set aside prompts that repeat another prompt.

Duplicates waste teacher money. The first occurrence is kept; each duplicate
records which problem it repeats in its metadata.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from datagen.config import ConfigError
from datagen.records import Problem
from datagen.stages.base import StageContext


@dataclass(frozen=True)
class DedupConfig:
    method: str = "exact"
    """``exact`` (normalised text), or ``none`` to keep every prompt."""

    def __post_init__(self) -> None:
        if self.method not in ("exact", "none"):
            raise ConfigError(f"dedup.method must be 'exact' or 'none', got {self.method!r}")


def normalise(text: str) -> str:
    """Case-, accent- and whitespace-insensitive form of a prompt."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", text).strip()


def dedup(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Mark every repeat of an earlier prompt; needs all rows at once."""
    if cfg["dedup"].method == "none":
        return batch
    first: dict[str, str] = {}
    for problem in batch:
        key = normalise(problem.prompt)
        if key in first:
            problem.keep = False
            problem.reject_reason = "duplicate: exact"
            problem.metadata["duplicate_of"] = first[key]
        else:
            first[key] = problem.id
    return batch
