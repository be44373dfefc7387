"""Checks that need a resource, run once before the first stage.

The config dataclasses check values on their own (``__post_init__``); what
they cannot see is the world: whether the API key variable is set, the
tokenizer loads, the source's first rows have the named fields, the request
cache is readable. Each check here would otherwise fail only after paid
generation, or never.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from datagen.config import ConfigError, DatagenConfig
from datagen.stages.base import Stage

logger = logging.getLogger(__name__)

GENERATING = ("generate", "generate_adaptive")
SAMPLE_ROWS = 20
"""Source rows looked at to check that the named fields exist."""


def preflight(config: DatagenConfig, stages: list[Stage], run_dir: Path) -> None:
    """Raise :class:`ConfigError` (one line, naming the key) for the first problem found."""
    names = [s.name for s in stages]
    if not names:
        raise ConfigError("pipeline.stages is empty: nothing would run")
    check_rank_rules(config, names)
    check_curation(config, names)
    check_semantic_extra(config, names)
    if any(n in GENERATING for n in names):
        for teacher in [e.config for e in config.teachers] or [config.teacher]:
            check_api_key(teacher)
        check_request_cache(config, run_dir)
    if "student" in names and config.student.enabled:
        check_api_key(config.student.backend)
    if "emit" in names and config.output.tokenizer is not None:
        from datagen.output.tokens import load_tokenizer

        load_tokenizer(config.output.tokenizer)
    if "load" in names:
        check_source_fields(config)


def check_curation(config: DatagenConfig, names: list[str]) -> None:
    """A student needs its stage (before emit); several teachers need fixed-N generation."""
    if config.student.enabled and "student" not in names:
        raise ConfigError(
            "student.enabled=true but pipeline.stages has no student stage: list it after "
            "verify (or filter) and before emit, or use +pipeline=math_student"
        )
    if config.teachers and "generate_adaptive" in names:
        raise ConfigError(
            "teachers: several teachers run with the stage generate, not generate_adaptive "
            "(adaptive rounds follow one teacher); use generate, or the single teacher key"
        )


def check_semantic_extra(config: DatagenConfig, names: list[str]) -> None:
    """Embedding dedup / decontamination need the ``[semantic]`` extra, which the base lacks."""
    users = []
    if "dedup" in names and config.dedup.method == "semantic":
        users.append("dedup.method=semantic")
    if "decontaminate" in names and "embedding" in config.decontam.methods:
        users.append("decontam.methods has embedding")
    if "dedup" in names and config.dedup.minhash.enabled and not _have("datasketch"):
        from datagen.similarity.embed import MINHASH_EXTRA

        raise ConfigError(f"dedup.minhash.enabled=true: datasketch not installed: {MINHASH_EXTRA}")
    if not users:
        return
    from datagen.similarity.embed import SEMANTIC_EXTRA

    missing = [m for m in ("sentence_transformers", "faiss") if not _have(m)]
    if missing:
        raise ConfigError(
            f"{' and '.join(users)}: {', '.join(missing)} not installed: {SEMANTIC_EXTRA}"
        )


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_rank_rules(config: DatagenConfig, names: list[str]) -> None:
    """A rank rule needs every sample of a prompt at once: stage ``verify_groups``."""
    if "verify" not in names:
        return
    from datagen.stages.verify import rank_rule_users

    ranked = rank_rule_users(config.verifier, config.verify)
    if ranked:
        raise ConfigError(
            f"{', '.join(ranked)} rank(s) the samples of each prompt against each other: "
            "list verify_groups instead of verify in pipeline.stages (or use rule=threshold)"
        )


def check_api_key(teacher: Any) -> None:
    """The variable ``teacher.api_key_env`` names must be set (when the teacher takes a key)."""
    env = getattr(teacher, "api_key_env", None)
    if env is not None and not os.environ.get(env):
        raise ConfigError(
            f"teacher.api_key_env: the environment variable {env} is not set; export it, "
            "or set teacher.api_key_env=null for a server without a key"
        )


def check_source_fields(config: DatagenConfig) -> None:
    """The first rows of each source must hold its prompt (or messages) and reference fields."""
    from datagen.sources import iter_raw_rows

    for i, src in enumerate(config.source_list()):
        key = f"sources[{i}]" if config.sources else "source"
        rows: list[dict[str, Any]] = []
        for _, _, row in iter_raw_rows(src):
            if isinstance(row, dict):
                rows.append(row)
            if len(rows) >= SAMPLE_ROWS:
                break
        if not rows:
            continue  # nothing readable up front: the load stage reports each row
        seen = sorted({k for r in rows for k in r})
        prompt = ("messages_field", src.messages_field) if src.messages_field else None
        fields = (prompt or ("prompt_field", src.prompt_field),)
        fields += (("reference_field", src.reference_field), ("options_field", src.options_field))
        for name_key, name in fields:
            if name is not None and not any(name in r for r in rows):
                raise ConfigError(
                    f"{key}.{name_key}={name!r}: no such field in the first {len(rows)} rows "
                    f"of {src.path}; fields there: {seen}"
                )


def check_request_cache(config: DatagenConfig, run_dir: Path) -> None:
    """Open the teacher's request cache once (a damaged file fails here, with the fix)."""
    from datagen.teachers import TEACHERS, default_cache_path
    from datagen.teachers.cache import RequestCache
    from datagen.teachers.cache_repair import warn_if_cache_lost

    spec = TEACHERS.get(config.teacher.name)
    if spec is None or not spec.uses_cache:
        return
    path = default_cache_path(config.teacher, run_dir)
    warn_if_cache_lost(path, run_dir)
    if path.exists():
        RequestCache(path, check=True).close()
