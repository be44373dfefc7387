"""Answer verifiers usable on their own: no import from ``datagen``.

Each verifier is a set of plain functions over strings and references that
returns :class:`verifiers.types.Verdict` objects. The pipeline's ``verify``
stage is only a thin adapter around them.
"""

from verifiers.types import Verdict

__all__ = ["Verdict"]
