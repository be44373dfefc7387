"""Both notebooks run top to bottom (nbclient + ipykernel) against a small replay run.

The run is the ``replay_run`` fixture (a real math run on the replay teacher); the
notebooks read it from ``DATAGEN_RUN_DIR``, so the quickstart skips starting its own
llama.cpp run here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["quickstart", "explore"])
def test_notebook_executes_without_errors(name, replay_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DATAGEN_RUN_DIR", str(replay_run))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert errors == []
    if name == "explore":
        assert (replay_run / "explore_subset" / "sft_subset.parquet").exists()
