"""Dataset cards: YAML metadata the Hub reads, then the stats of the set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def render_card(
    name: str, ds: datasets.Dataset, stats: dict[str, Any], config: dict[str, Any], description: str
) -> str:
    """README.md text for one output dataset."""
    header = "\n".join(
        [
            "---",
            "license: other",
            "task_categories:",
            "- text-generation",
            "size_categories:",
            f"- {size_category(len(ds))}",
            "configs:",
            "- config_name: default",
            "  data_files:",
            "  - split: train",
            f"    path: {name}.parquet",
            "tags:",
            "- datagen",
            "- reasoning-distillation",
            "---",
        ]
    )
    stat_lines = "\n".join(f"| {k} | {v} |" for k, v in stats.items())
    return (
        f"{header}\n\n# {name}\n\n{description}\n\n"
        f"Rows: **{len(ds)}**. Columns: {', '.join(ds.column_names)}.\n\n"
        f"## Statistics\n\n| stat | value |\n|---|---|\n{stat_lines}\n\n"
        "## Verification\n\n"
        f"Verifier: `{json.dumps(config.get('verifier'), default=str)}`. "
        "A sample counts as correct only when the verifier says so; unverifiable "
        "samples are in neither SFT set nor any pair.\n\n"
        "## Resolved config\n\n```json\n"
        f"{json.dumps(config, indent=2, default=str)}\n```\n"
    )


def write_output(ds: datasets.Dataset, folder: Path, name: str, card: str) -> None:
    """save_to_disk + Parquet + README.md, all in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_to_disk(str(folder / "arrow"))
    ds.to_parquet(str(folder / f"{name}.parquet"))
    (folder / "README.md").write_text(card, encoding="utf-8")
