"""Turn verified samples into every declared training set (pure: no files, no network).

- ``sft_positive``: verified-correct traces, TRL conversational ``messages``.
- ``sft_negative``: verified-incorrect traces, same format.
- ``redi_pairs``: TRL conversational preference rows (``prompt``, ``chosen``,
  ``rejected``), chosen correct and rejected incorrect, from one prompt.

Each is declared (:class:`~datagen.output.formats.OutputSpec`) and built by
:mod:`datagen.output.sft` or :mod:`datagen.output.pairs` (a plug-in: its own module), then
cut to ``output.subset_sizes`` / ``output.domain_mix`` by
:mod:`datagen.output.subsets`. Writing, cards and the Hub live in
:mod:`datagen.output.card` and :mod:`datagen.output.publish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets

from datagen.config import OutputConfig
from datagen.output.difficulty import pass_rates
from datagen.output.formats import (
    OUTPUTS,
    PAIR_FEATURES,
    SFT_FEATURES,
    OutputSpec,
    assistant_text,
    register_output,
)
from datagen.output.pairs import build_pairs  # registers redi_pairs
from datagen.output.sft import build_sft  # registers sft_positive, sft_negative
from datagen.output.subsets import take_subset
from datagen.output.tokens import TokenCounter
from datagen.records import Sample


@dataclass
class BuiltOutput:
    """One output dataset and how it was built."""

    name: str
    dataset: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)
    """Build stats: rows, prompts, samples left out by reason, subset drawn."""

    @property
    def spec(self) -> OutputSpec:
        return OUTPUTS[self.name]

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def description(self) -> str:
        return self.spec.description


def build_outputs(
    samples: Sequence[Sample],
    cfg: OutputConfig,
    seed: int,
    counter: TokenCounter | None = None,
) -> dict[str, BuiltOutput]:
    """Build every declared output (:data:`OUTPUTS`) from verified samples.

    Args:
        samples: The samples that reached the outputs (kept by every earlier stage).
        cfg: ``output`` config.
        seed: ``run.seed`` (pair draws, subsets).
        counter: Token counter (default: the teacher's counts).

    Returns:
        Output name -> built dataset with its stats, in declaration order.

    Raises:
        ConfigError: A requested subset is larger than what was built.
    """
    counter = counter or TokenCounter()
    built = {name: spec.build(samples, cfg, seed, counter) for name, spec in OUTPUTS.items()}
    out: dict[str, BuiltOutput] = {}
    for name, (ds, stats) in built.items():
        size = (cfg.subset_sizes or {}).get(name)
        ds, subset = take_subset(ds, size, cfg.domain_mix, seed, name)
        if subset:
            stats = {
                **stats,
                "rows": len(ds),
                "prompts": len(set(ds["problem_id"])),
                "subset": subset,
            }
        out[name] = BuiltOutput(name, ds, stats)
    return out


__all__ = [
    "OUTPUTS",
    "PAIR_FEATURES",
    "SFT_FEATURES",
    "BuiltOutput",
    "OutputSpec",
    "assistant_text",
    "build_outputs",
    "build_pairs",
    "build_sft",
    "pass_rates",
    "register_output",
]
