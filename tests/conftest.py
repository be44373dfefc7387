"""Shared fixtures: a composed config for any overrides, offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def compose(*overrides: str):
    """Compose conf/ with Hydra, as ``python -m datagen`` would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return hydra_compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def make_config():
    """Return a function: overrides -> resolved DatagenConfig."""
    from datagen.config import resolve_config

    def _make(*overrides: str):
        return resolve_config(compose(*overrides))

    return _make
