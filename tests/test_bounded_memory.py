"""No stage holds all of its rows: peak Arrow allocation stays far below the data's size.

A real run (replay teacher, precomputed verdicts, filter, emit with every output,
the report) over many small shards, in fresh processes so that Arrow's memory pool
peak (``max_memory``) is the run's own. Memory-mapped files are not allocations, so
a stage that concatenates its shards, or emit building every row at once, allocates
at least the data's size; batch by batch it allocates a few batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets

from datagen.shards import prompt_bounds
from datagen.views import open_part

ROOT = Path(__file__).resolve().parents[1]


def bounded_run(run_dir: Path, stages: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.bounded_run", str(run_dir), stages],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_stages_after_generation_allocate_a_small_part_of_the_data(tmp_path):
    run_dir = tmp_path / "run"
    bounded_run(run_dir, "load,generate")  # reads the sources and traces (not measured)
    out = bounded_run(run_dir, "load,generate,verify,filter,emit")
    assert out["positives"] > 0 and out["pairs"] > 0  # emit built real outputs
    # verify, filter and emit each pass over all rows (about data_bytes of Arrow data):
    # what they and the report allocate at once must stay a small part of it.
    assert out["max_memory"] < out["data_bytes"] / 4, out


def test_per_prompt_batches_end_at_prompt_boundaries():
    pids = ["a"] * 3 + ["b"] * 1 + ["c"] * 4 + ["d"] * 2
    data = datasets.Dataset.from_dict({"problem_id": pids})
    assert prompt_bounds(data, 2) == [(0, 3), (3, 8), (8, 10)]
    assert prompt_bounds(data, 100) == [(0, 10)]
    assert prompt_bounds(data, 1) == [(0, 3), (3, 4), (4, 8), (8, 10)]
    interleaved = datasets.Dataset.from_dict({"problem_id": ["a", "b", "a"]})
    assert prompt_bounds(interleaved, 2) is None  # the stage then gets every row at once


def test_sample_dedup_in_batches_of_whole_prompts_equals_one_batch(tmp_path, make_config):
    """``dedup_samples`` compares the samples of one prompt: batches of one prompt each
    (``run.batch_size=1``) set aside exactly what one batch of everything does."""
    from datagen.runner import Runner
    from datagen.stages import build_pipeline

    trace = "<think>\n3 times 4 is 12.\n</think>\nThe answer is $\\boxed{12}$."
    rows = [
        {"id": f"p{i}", "problem": f"What is $3 \\times {i}$?", "answer": str(3 * i),
         "generations": [trace, f"$\\boxed{{{3 * i}}}$", trace.upper(), trace]}
        for i in range(5)
    ]  # fmt: skip
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = ["load", "generate", "dedup_samples"]
    found = []
    for batch in (1, 1000):
        config = make_config(
            "+pipeline=math",
            f"source.path={path}",
            "teacher=replay",
            f"teacher.path={path}",
            "teacher.response_field=generations",
            "generation.n=4",
            "dedup.samples.method=exact",
            f"pipeline.stages=[{','.join(names)}]",
            f"run.batch_size={batch}",
            "run.progress=false",
        )
        run_dir = tmp_path / f"run{batch}"
        results = Runner(config, run_dir, build_pipeline(names)).run()
        stage = run_dir / "stages" / "02_dedup_samples"
        found.append(
            (
                [(r.rows_out, r.rows_set_aside) for r in results],
                open_part(str(stage / "data")).to_list(),
                open_part(str(stage / "duplicates")).to_list(),
            )
        )
    assert found[0] == found[1]
    assert found[0][0][2] == (15, 5)  # the repeated trace of each of the five prompts
