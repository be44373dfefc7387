"""The architecture contracts of pyproject.toml (import-linter) hold, and would catch a break.

The contracts: ``verifiers`` imports nothing from ``datagen``; the layers of
``datagen`` run one way (entry and composition, runner, executors, stages, the
plug-ins, the schemas); no package has an import circle among its modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytest.importorskip("importlinter")

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]  # fmt: skip


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root``, with its pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def copy_tree(tmp_path: Path) -> Path:
    for name in ("datagen", "verifiers"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_an_import_back_up_or_into_datagen_breaks_them(tmp_path):
    root = copy_tree(tmp_path)
    append(root / "datagen" / "config.py", "import datagen.stages  # noqa")  # schemas -> stages
    append(
        root / "verifiers" / "types.py", "import datagen.records  # noqa"
    )  # verifiers -> datagen
    result = lint(root)
    assert result.returncode != 0
    assert "verifiers stand alone: they import nothing from datagen BROKEN" in result.stdout
    assert "verifiers.types -> datagen.records" in result.stdout
    assert "layers run one way: entry, composition" in result.stdout
    assert "datagen.config is not allowed to import datagen.stages" in result.stdout


def test_a_circle_between_siblings_breaks_them(tmp_path):
    root = copy_tree(tmp_path)
    append(root / "datagen" / "stages" / "dedup.py", "import datagen.stages.decontaminate  # noqa")
    result = lint(root)
    assert result.returncode != 0
    assert "no import circle between the modules of any package BROKEN" in result.stdout
