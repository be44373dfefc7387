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
