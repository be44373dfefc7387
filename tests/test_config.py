"""Config: every knob is a key; unknown keys and bad values fail at start, naming the key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from datagen.config import ConfigError, SamplingConfig

from .conftest import compose


def test_defaults_resolve_to_dataclasses(make_config):
    cfg = make_config("+pipeline=math")
    assert cfg.pipeline.stages[0] == "load" and cfg.pipeline.stages[-1] == "emit"
    assert isinstance(cfg.generation, SamplingConfig)
    assert cfg.teacher.name == "local"
    assert cfg.verifier.name == "math"


def test_overrides_reach_the_dataclasses(make_config):
    cfg = make_config(
        "+pipeline=math",
        "generation.n=7",
        "generation.temperature=0.3",
        "run.limit=5",
        "run.seed=3",
        "generation.max_tokens=64",
    )
    assert (cfg.generation.n, cfg.generation.temperature, cfg.generation.max_tokens) == (7, 0.3, 64)
    assert (cfg.run.limit, cfg.run.seed) == (5, 3)


def test_unknown_key_is_refused_by_name():
    with pytest.raises(ConfigCompositionException, match=r"generation\.nn"):
        compose("+pipeline=math", "generation.nn=3")


def test_unknown_key_added_with_plus_is_refused_by_name(make_config):
    with pytest.raises(ConfigError, match=r"teacher\.bogus"):
        make_config("+pipeline=math", "+teacher.bogus=1")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("generation.temperature=-1", "generation.temperature"),
        ("generation.n=0", "generation.n"),
        ("generation.n=many", "generation.n"),
        ("run.limit=0", "run.limit"),
        ("source.domain=poetry", "source.domain"),
        ("teacher.name=nope", "teacher.name"),
        ("decontam.ngram=1", "decontam.ngram"),
    ],
)
def test_bad_value_names_the_key(make_config, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_config("+pipeline=math", override)


def test_missing_pipeline_says_how_to_choose(make_config):
    with pytest.raises(ConfigError, match=r"\+pipeline=math"):
        make_config()


def test_push_to_hub_needs_repo_id(make_config):
    with pytest.raises(ConfigError, match=r"output\.repo_id"):
        make_config("+pipeline=math", "output.push_to_hub=true")
