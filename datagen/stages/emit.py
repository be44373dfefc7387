"""Stage ``emit``: write SFT positives, SFT negatives and REDI pairs with cards; publish.

Adapter only: the builders in :mod:`datagen.output` do the work. Needs all rows
at once (pairs join samples of one prompt). Returns its input unchanged, so the
stage's own dataset is the final, filtered sample set.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from datagen.config import OutputConfig
from datagen.output.builders import build_outputs
from datagen.output.card import output_stats, render_card
from datagen.output.difficulty import pass_rate_summary
from datagen.output.publish import (
    HUB_FOLDER,
    hub_data_files,
    hub_token,
    push_folder,
    write_hub_folder,
    write_output,
)
from datagen.output.tokens import TokenCounter
from datagen.records import Sample
from datagen.stages.base import STAGES, Stage, StageContext, register_stage

logger = logging.getLogger(__name__)

CONSUMES = ("passed", "truncated", "finish_reason", "verdicts", "reasoning", "content")
PRODUCES = ()  # rows pass through; the outputs are files under RUN_DIR/<output.dir>


def emit(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Build the output datasets, write them under RUN_DIR/<output.dir>, and publish."""
    ocfg: OutputConfig = cfg["output"]
    token = hub_token(ocfg.token_env) if ocfg.push_to_hub and not ocfg.dry_run else None
    counter = ctx.resource(
        f"token_counter:{ocfg.tokenizer}", lambda: TokenCounter.from_spec(ocfg.tokenizer)
    )
    outputs = build_outputs(batch, ocfg, cfg["run.seed"], counter)
    config = ctx.config.as_dict()
    out_dir = Path(ctx.run_dir) / ocfg.dir
    if out_dir.exists():
        shutil.rmtree(out_dir)  # outputs are derived: rebuild them whole
    overall = pass_rate_summary(batch, ocfg.difficulty_edges)
    notes = [
        note(config)
        for name in ctx.config.pipeline.stages
        if name in STAGES and (note := STAGES[name].card_note) is not None
    ]
    card_args = {
        "license": ocfg.license,
        "tokens_counted_by": counter.name,
        "overall": overall,
        "method_notes": notes,
    }
    for name, out in outputs.items():
        card = render_card(
            [out], config, {"default": f"{name}.parquet"}, title=name, load_path=".", **card_args
        )
        write_output(out, out_dir / name, card)
        stats = ctx.stats.setdefault("emit", {})
        stats["all_prompts"] = overall
        stats[name] = len(out.dataset)
        stats[f"{name}_stats"] = output_stats(out) | {"built": out.stats}

    if ocfg.dry_run or ocfg.push_to_hub:
        # A config with no rows cannot be loaded (datasets: "corresponds to no data").
        listed = [o for o in outputs.values() if len(o.dataset)]
        empty = [name for name, o in outputs.items() if not len(o.dataset)]
        if not listed:
            if token is not None:
                raise ValueError("output.push_to_hub: every output is empty, nothing to upload")
            logger.warning("output.dry_run: every output is empty, no hub folder written")
            return batch
        title = ocfg.pretty_name or ocfg.repo_id or f"datagen {ctx.config.pipeline.name}"
        card = render_card(
            listed,
            config,
            hub_data_files(listed),
            title=title,
            pretty_name=title,
            load_path=ocfg.repo_id or HUB_FOLDER,
            not_included=empty,
            **card_args,
        )
        folder = write_hub_folder(listed, out_dir / HUB_FOLDER, card)
        ctx.count("emit", "hub_folder_written")
        if token is not None and ocfg.repo_id is not None:
            push_folder(
                folder,
                ocfg.repo_id,
                private=ocfg.private,
                token=token,
                commit_message=f"datagen: {ctx.config.pipeline.name} outputs",
            )
            ctx.count("emit", "pushed_to_hub")
    return batch


register_stage(Stage("emit", emit, "sample", "sample", ("output", "run.seed"), needs_all_rows=True))
