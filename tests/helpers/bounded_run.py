"""A run over many shards that reports its peak Arrow allocation (for test_bounded_memory).

Runs stages of ``load, generate (replay), verify (precomputed labels), filter, emit``
and the report in this process on generated traces, with the runner's read batches and
emit's chunks set small, then prints JSON: the peak bytes Arrow's default memory
pool held (``max_memory``; memory-mapped files are not allocations) and the bytes
of the generated samples. A fresh process, so the peak is this run's alone.

``python -m tests.helpers.bounded_run RUN_DIR STAGES`` (STAGES: ``load,generate,...``;
a second call with more stages resumes the first, so its peak leaves out what the
finished stages did: reading the sources and traces).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = 300
N = 4
CHARS = 3000
ROWS = 32
"""Rows per runner batch, shard read and emit chunk (generate: ROWS // N problems)."""

WORDS = "so then we add the two terms and check the sum again carefully"


def write_inputs(folder: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    words = WORDS.split()
    problems, traces = folder / "problems.jsonl", folder / "traces.jsonl"
    with open(problems, "w") as fp, open(traces, "w") as ft:
        for i in range(PROBLEMS):
            prompt = f"Problem {i}: what is {i} + {i}?"
            fp.write(json.dumps({"id": f"p{i}", "problem": prompt, "answer": str(2 * i)}) + "\n")
            for k in range(N):
                text = " ".join(rng.choice(words) + str(rng.randrange(10**6)) for _ in range(400))
                row = {"problem": prompt, "response": text[:CHARS], "sample_idx": k}
                ft.write(json.dumps({**row, "correct": rng.random() < 0.5}) + "\n")
    return problems, traces


def main(run_dir: Path, stages: str) -> None:
    import datasets
    import pyarrow as pa
    from hydra import compose, initialize_config_dir

    from datagen import shards
    from datagen.__main__ import run
    from datagen.output import builders

    # Every batch small: ours, and those ``datasets`` writes with (save_to_disk, to_parquet).
    shards.READ_ROWS = builders.CHUNK_ROWS = datasets.config.DEFAULT_MAX_BATCH_SIZE = ROWS
    datasets.config.MAX_ROW_GROUP_SIZE = "64KB"  # Parquet row groups, 100MB by default
    run_dir.mkdir(parents=True, exist_ok=True)
    problems, traces = run_dir.parent / "problems.jsonl", run_dir.parent / "traces.jsonl"
    if not traces.exists():
        write_inputs(run_dir.parent)
    overrides = [
        "+pipeline=math",
        f"pipeline.stages=[{stages}]",
        f"source.path={problems}",
        "source.metadata_fields=[]",
        "source.system_prompt=null",
        "teacher=replay",
        f"teacher.path={traces}",
        "teacher.order_field=sample_idx",
        "teacher.label_field=correct",
        "verifier=precomputed",
        "verifier.source=imported",
        "verifier.use=label",
        f"generation.n={N}",
        f"run.batch_size={ROWS}",
        f"run.generate_batch_size={ROWS // N}",
        "run.progress=false",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run(cfg, run_dir)
    generated = next(run_dir.glob("stages/*_generate/data"))
    data_bytes = sum(f.stat().st_size for f in generated.glob("*.arrow"))
    out = {
        "max_memory": pa.default_memory_pool().max_memory(),
        "data_bytes": data_bytes,
        "positives": summary.get("sft_positive"),
        "pairs": summary.get("redi_pairs"),
        "shards": ROWS,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
