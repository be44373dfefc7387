"""Typed configuration: one dataclass per config group, converted once at entry.

Hydra composes YAML from ``conf/``; :func:`resolve_config` turns the result
into these frozen dataclasses, so nothing past ``__main__`` sees a
``DictConfig``. Groups whose schema depends on a choice (teacher, verifier)
carry a ``name`` that picks the dataclass from a registry; unknown keys and bad
values fail here, naming the full key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    """Seeds sampling and every random choice; same seed, same dataset."""
    limit: int | None = None
    """Use at most this many problems from the source (None: all)."""
    resume: bool = True
    """Reuse finished stages and partial shards in the run directory."""
    batch_size: int = 64
    """Rows handed to a stage function at a time (also the resume granularity)."""
    generate_batch_size: int | None = None
    """Problems per generation batch: each finished batch is saved before the next starts.
    None: the teacher's own default (1 for the local teacher, 64 for an API with its
    concurrency, 1024 for vLLM, which wants one large batch)."""
    progress: bool = True
    """Show progress bars on long stages."""
    executor: str = "local"
    """``local`` (this process plus worker pools) or ``ray`` (each batch of a row-wise
    stage is spread over a Ray cluster with Ray Data ``map_batches``)."""
    ray_address: str | None = None
    """Ray cluster to join (None: start or reuse a local one; ``auto``: the running one)."""
    ray_concurrency: int = 2
    """Ray actors per stage; each builds its models and clients once."""
    ray_batch_size: int = 16
    """Rows per Ray ``map_batches`` call inside one runner batch."""
    ray_gpus_per_actor: float = 0.0
    """GPUs each actor of the ``generate`` stage asks for (e.g. 1 for a vLLM teacher)."""

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"run.executor must be 'local' or 'ray', got {self.executor!r}")
        if self.ray_concurrency < 1 or self.ray_batch_size < 1:
            raise ConfigError("run.ray_concurrency and run.ray_batch_size must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"run.limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1 or (self.generate_batch_size or 1) < 1:
            raise ConfigError("run.batch_size and run.generate_batch_size must be >= 1")


@dataclass(frozen=True)
class SourceConfig:
    path: str = "data/math_sample.jsonl"
    """A local .jsonl/.json/.parquet file, or a Hugging Face dataset name (with ``split``)."""
    domain: str = "math"
    """math, code or general: picks the verifier for these problems."""
    split: str = "train"
    """Split to read when ``path`` is a Hub dataset name."""
    id_field: str | None = "id"
    """Column holding a stable id (None: ids are content hashes)."""
    prompt_field: str = "problem"
    """Column holding the problem text."""
    reference_field: str | None = "answer"
    """Column holding the reference answer or tests (None: no reference)."""
    metadata_fields: list[str] = field(default_factory=list)
    """Extra columns copied into each problem's metadata."""
    system_prompt: str | None = None
    """Prepended to every prompt as a system message (None: none)."""

    def __post_init__(self) -> None:
        from datagen.records import DOMAINS

        if self.domain not in DOMAINS:
            raise ConfigError(f"source.domain must be one of {DOMAINS}, got {self.domain!r}")


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling options, the same for every teacher (modelled on vLLM's SamplingParams)."""

    n: int = 4
    """Samples per prompt."""
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    """Upper bound on generated tokens; a sample that hits it is marked truncated."""
    seed: int | None = None
    """Base seed for sampling (None: use run.seed). Each sample derives its own."""
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"generation.n must be >= 1, got {self.n}")
        if not 0.0 <= self.temperature <= 5.0:
            raise ConfigError(f"generation.temperature must be in [0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"generation.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"generation.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "math"
    stages: list[str] = field(default_factory=list)
    """Stage names, in order; see ``datagen.stages.STAGES``."""


@dataclass(frozen=True)
class FilterConfig:
    max_completion_tokens: int | None = None
    """Set aside samples longer than this (None: no cap)."""
    drop_truncated: bool = True
    """Set aside samples that hit max_tokens (finish reason ``length``)."""
    require_answer: bool = True
    """Set aside samples with no extractable final answer (e.g. no ``\\boxed{}``)."""
    max_repeated_ngram_fraction: float = 0.5
    """Set aside samples where one 8-gram line pattern covers more than this share."""

    def __post_init__(self) -> None:
        if not 0.0 < self.max_repeated_ngram_fraction <= 1.0:
            raise ConfigError("filter.max_repeated_ngram_fraction must be in (0, 1]")


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "outputs"
    """Folder under the run directory that receives the datasets."""
    max_pairs_per_prompt: int = 4
    """Cap on chosen x rejected combinations per prompt."""
    push_to_hub: bool = False
    repo_id: str | None = None
    private: bool = True

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.repo_id:
            raise ConfigError("output.push_to_hub=true needs output.repo_id=<user>/<name>")
        if self.max_pairs_per_prompt < 1:
            raise ConfigError("output.max_pairs_per_prompt must be >= 1")


@dataclass(frozen=True)
class DatagenConfig:
    """The resolved configuration of one run."""

    pipeline: PipelineConfig
    run: RunConfig
    source: SourceConfig
    generation: SamplingConfig
    teacher: Any
    """A teacher config dataclass chosen by ``teacher.name``."""
    verifier: VerifierChoice
    decontam: Any
    dedup: Any
    filter: FilterConfig
    output: OutputConfig

    def section(self, name: str) -> Any:
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for hashing and for the run directory)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _make_writable(node: DictConfig) -> None:
    """Frozen dataclasses mark every nested node read-only; merging needs them writable."""
    OmegaConf.set_readonly(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _make_writable(child)


def build(cls: type, node: Any, key: str) -> Any:
    """Validate ``node`` against dataclass ``cls``; errors name ``key``."""
    if node is None:
        node = {}
    try:
        schema = OmegaConf.structured(cls)
        _make_writable(schema)
        merged = OmegaConf.merge(schema, node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        full_key = f"{key}.{exc.full_key}" if getattr(exc, "full_key", None) else key
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"bad config at '{full_key}': {msg}") from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad config at '{key}': {exc}") from None


@dataclass(frozen=True)
class VerifierChoice:
    """The chosen verifier and its own (verifier-side) options dataclass."""

    name: str
    options: Any


def build_verifier(registry: dict[str, type], node: Any, key: str) -> VerifierChoice:
    """Build ``verifier.name``'s options from the other keys of the group."""
    node = dict(node or {})
    name = node.pop("name", None)
    if name not in registry:
        raise ConfigError(f"{key}.name must be one of {sorted(registry)}, got {name!r}")
    return VerifierChoice(name=name, options=build(registry[name], node, key))


def build_named(registry: dict[str, type], node: Any, key: str) -> Any:
    """Build the dataclass that ``node.name`` selects from ``registry``."""
    name = node.get("name") if node is not None else None
    if name not in registry:
        raise ConfigError(f"{key}.name must be one of {sorted(registry)}, got {name!r}")
    return build(registry[name], node, key)


def resolve_config(cfg: DictConfig) -> DatagenConfig:
    """Turn Hydra's composed config into a :class:`DatagenConfig` (the one conversion)."""
    from datagen.stages.decontaminate import DecontamConfig
    from datagen.stages.dedup import DedupConfig
    from datagen.teachers import TEACHER_CONFIGS
    from datagen.verify_registry import VERIFIER_CONFIGS

    if "pipeline" not in cfg or cfg.pipeline is None:
        raise ConfigError("no pipeline chosen: add +pipeline=math (or code, general)")
    raw = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError("the composed config is not a mapping")
    raw.pop("hydra", None)
    known = {f.name for f in dataclasses.fields(DatagenConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown top-level config key(s): {unknown}; known: {sorted(known)}")
    return DatagenConfig(
        pipeline=build(PipelineConfig, raw.get("pipeline"), "pipeline"),
        run=build(RunConfig, raw.get("run"), "run"),
        source=build(SourceConfig, raw.get("source"), "source"),
        generation=build(SamplingConfig, raw.get("generation"), "generation"),
        teacher=build_named(TEACHER_CONFIGS, raw.get("teacher"), "teacher"),
        verifier=build_verifier(VERIFIER_CONFIGS, raw.get("verifier"), "verifier"),
        decontam=build(DecontamConfig, raw.get("decontam"), "decontam"),
        dedup=build(DedupConfig, raw.get("dedup"), "dedup"),
        filter=build(FilterConfig, raw.get("filter"), "filter"),
        output=build(OutputConfig, raw.get("output"), "output"),
    )
