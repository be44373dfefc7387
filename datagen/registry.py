"""One way to declare a plug-in: every kind (stage, teacher, verifier, output) keeps a
plain dict from name to declaration and fills it through :func:`declare`."""

from __future__ import annotations

from typing import Any, TypeVar

Spec = TypeVar("Spec")


def declare(registry: dict[str, Any], kind: str, spec: Spec) -> Spec:
    """Put ``spec`` in ``registry`` under its ``name``; a different one of that name is refused
    (declaring the same one again, as a re-imported module does, is harmless)."""
    name = spec.name  # type: ignore[attr-defined]
    if name in registry and registry[name] != spec:
        raise ValueError(f"{kind} {name!r} is declared twice")
    registry[name] = spec
    return spec
