"""Map ``verifier.name`` to a verifier's config class and batch function.

This is the only place where ``datagen`` touches ``verifiers``: the verifiers
stay plain functions over strings, and this adapter feeds them sample fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.math import MathVerifyConfig
from verifiers.math import verify_batch as math_verify_batch
from verifiers.types import Verdict


@dataclass(frozen=True)
class VerifierEntry:
    config_cls: type
    verify_batch: Callable[[Sequence[str], Sequence[str | None], Any], list[Verdict]]
    domain: str


VERIFIERS: dict[str, VerifierEntry] = {
    "math": VerifierEntry(MathVerifyConfig, math_verify_batch, "math"),
}

VERIFIER_CONFIGS: dict[str, type] = {name: e.config_cls for name, e in VERIFIERS.items()}
