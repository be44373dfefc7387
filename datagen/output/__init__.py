"""From verified samples to training sets, cards and the Hub.

- :mod:`~datagen.output.formats`: TRL key sets, Arrow schemas, the assistant turn, and
  the output declarations (:class:`OutputSpec`, :data:`OUTPUTS`, :func:`register_output`).
- :mod:`~datagen.output.sft`, :mod:`~datagen.output.pairs`: the built-in outputs (pure).
- :mod:`~datagen.output.difficulty`: pass rates, buckets, weights, fixed-N expectations.
- :mod:`~datagen.output.tokens`: token counts for the length caps.
- :mod:`~datagen.output.subsets`: exact-size subsets and per-domain mixes.
- :mod:`~datagen.output.builders`: every declared output at once.
- :mod:`~datagen.output.card`, :mod:`~datagen.output.publish`: cards, folders, upload.
"""

from datagen.output.builders import BuiltOutput, build_outputs
from datagen.output.formats import FORMATS, OUTPUTS, OutputFormat, OutputSpec, register_output

__all__ = [
    "FORMATS",
    "OUTPUTS",
    "BuiltOutput",
    "OutputFormat",
    "OutputSpec",
    "build_outputs",
    "register_output",
]
