"""Stage ``emit``: write SFT positives, SFT negatives and REDI pairs with cards.

Needs all rows at once (pairs join samples of one prompt). Returns its input
unchanged, so the stage's own dataset is the final, filtered sample set.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

from datagen.output.builders import build_pairs, build_sft, pass_rates
from datagen.output.card import render_card, write_output
from datagen.records import Sample
from datagen.stages.base import StageContext

DESCRIPTIONS = {
    "sft_positive": "Teacher traces verified correct against the reference (conversational SFT).",
    "sft_negative": "Teacher traces verified incorrect (for REDI/DPO negatives or analysis).",
    "redi_pairs": "Preference pairs from one prompt: chosen verified correct, rejected incorrect.",
}


def emit(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Build and write the three output datasets under RUN_DIR/<output.dir>."""
    ocfg = cfg["output"]
    out_dir = Path(ctx.run_dir) / ocfg.dir
    if out_dir.exists():
        shutil.rmtree(out_dir)  # outputs are derived: rebuild them whole
    sets = {
        "sft_positive": build_sft(batch, passed=True),
        "sft_negative": build_sft(batch, passed=False),
        "redi_pairs": build_pairs(batch, ocfg.max_pairs_per_prompt, cfg["run.seed"]),
    }
    rates = pass_rates(batch)
    config = ctx.config.as_dict()
    for name, ds in sets.items():
        tokens = [s.completion_tokens for s in batch if s.passed is (name != "sft_negative")]
        stats = {
            "rows": len(ds),
            "prompts": len(set(ds["problem_id"])) if len(ds) else 0,
            "mean pass rate over prompts": round(statistics.fmean(rates.values()), 4)
            if rates
            else None,
            "mean completion tokens": round(statistics.fmean(tokens), 1) if tokens else None,
        }
        card = render_card(name, ds, stats, config, DESCRIPTIONS[name])
        write_output(ds, out_dir / name, name, card)
        ctx.stats.setdefault("emit", {})[name] = len(ds)
    return batch
