"""Map ``verifier.name`` to a verifier's config class and batch function.

This is the only place where ``datagen`` touches ``verifiers``: the verifiers
stay plain functions over strings, and these adapters feed them sample fields
(the final answer text and the problem's reference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verifiers import code as code_verifier
from verifiers import math as math_verifier
from verifiers.types import Verdict

Adapter = Callable[[Sequence[str], Sequence[str | None], Any], list[Verdict]]


def verify_code(texts: Sequence[str], references: Sequence[str | None], cfg: Any) -> list[Verdict]:
    """Extract the last fenced Python block of each answer and run it on its JSON test spec."""
    results: list[Verdict | None] = [None] * len(texts)
    todo = [i for i, ref in enumerate(references) if ref]
    verdicts = code_verifier.verify_batch(
        [code_verifier.extract_code(texts[i]) for i in todo],
        [json.loads(references[i]) for i in todo],  # type: ignore[arg-type]
        cfg,
    )
    for i, verdict in zip(todo, verdicts, strict=True):
        results[i] = verdict
    missing = Verdict("code", code_verifier.VERSION, None, None, {"error": "no_reference"})
    return [r if r is not None else missing for r in results]


@dataclass(frozen=True)
class VerifierEntry:
    config_cls: type
    verify_batch: Adapter


VERIFIERS: dict[str, VerifierEntry] = {
    "math": VerifierEntry(math_verifier.MathVerifyConfig, math_verifier.verify_batch),
    "code": VerifierEntry(code_verifier.CodeVerifierConfig, verify_code),
}

VERIFIER_CONFIGS: dict[str, type] = {name: e.config_cls for name, e in VERIFIERS.items()}
