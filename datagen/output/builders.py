"""Turn verified samples into the three training sets (pure: no files, no network).

- ``sft_positive``: verified-correct traces, TRL conversational ``messages``.
- ``sft_negative``: verified-incorrect traces, same format.
- ``redi_pairs``: TRL conversational preference rows (``prompt``, ``chosen``,
  ``rejected``), chosen correct and rejected incorrect, from one prompt.

Each is built by :mod:`datagen.output.sft` or :mod:`datagen.output.pairs`, then
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
from datagen.output.formats import PAIR_FEATURES, SFT_FEATURES, assistant_text
from datagen.output.pairs import build_pairs
from datagen.output.sft import build_sft
from datagen.output.subsets import take_subset
from datagen.output.tokens import TokenCounter
from datagen.records import Sample

DESCRIPTIONS: dict[str, str] = {
    "sft_positive": "Teacher traces verified correct against the reference (conversational SFT).",
    "sft_negative": "Teacher traces verified incorrect (for REDI/DPO negatives or analysis).",
    "redi_pairs": "Preference pairs from one prompt: chosen verified correct, rejected incorrect.",
}
"""Output name -> one-line description (cards)."""

KINDS: dict[str, str] = {"sft_positive": "sft", "sft_negative": "sft", "redi_pairs": "preference"}
"""Output name -> format kind (a key of :data:`datagen.output.formats.FORMATS`)."""


@dataclass
class BuiltOutput:
    """One output dataset and how it was built."""

    name: str
    dataset: datasets.Dataset
    stats: dict[str, Any] = field(default_factory=dict)
    """Build stats: rows, prompts, samples left out by reason, subset drawn."""

    @property
    def kind(self) -> str:
        return KINDS[self.name]

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name]


def build_outputs(
    samples: Sequence[Sample],
    cfg: OutputConfig,
    seed: int,
    counter: TokenCounter | None = None,
) -> dict[str, BuiltOutput]:
    """Build ``sft_positive``, ``sft_negative`` and ``redi_pairs`` from verified samples.

    Args:
        samples: The samples that reached the outputs (kept by every earlier stage).
        cfg: ``output`` config.
        seed: ``run.seed`` (pair draws, subsets).
        counter: Token counter (default: the teacher's counts).

    Returns:
        Output name -> built dataset with its stats, in the order above.

    Raises:
        ConfigError: A requested subset is larger than what was built.
    """
    counter = counter or TokenCounter()
    built = {
        "sft_positive": build_sft(samples, True, cfg, counter),
        "sft_negative": build_sft(samples, False, cfg, counter),
        "redi_pairs": build_pairs(samples, cfg, seed, counter),
    }
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
    "DESCRIPTIONS",
    "PAIR_FEATURES",
    "SFT_FEATURES",
    "BuiltOutput",
    "assistant_text",
    "build_outputs",
    "build_pairs",
    "build_sft",
    "pass_rates",
]
