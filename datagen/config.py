"""Typed configuration: one dataclass per config group, converted once at entry.

Hydra composes YAML from ``conf/``; :func:`resolve_config` turns the result
into these frozen dataclasses, so nothing past ``__main__`` sees a
``DictConfig``. Groups whose schema depends on a choice (teacher, verifier)
carry a ``name`` that picks the dataclass from a registry; unknown keys and bad
values fail here, naming the full key.
"""

from __future__ import annotations

import dataclasses
import re
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
    None: the teacher's own default (1 for the local teacher, 64 for an API, 1024 for
    vLLM, which wants one large batch). A teacher that streams (``openai``) keeps its
    window full regardless: there it is only the finished prompts per shard."""
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


PAIR_POLICIES: tuple[str, ...] = ("all", "random", "length_matched")
SFT_WEIGHTINGS: tuple[str, ...] = ("none", "failure_rate")
OUTPUT_NAMES: tuple[str, ...] = ("sft_positive", "sft_negative", "redi_pairs")


@dataclass(frozen=True)
class OutputConfig:
    """How verified samples become SFT and preference datasets, and where they go."""

    dir: str = "outputs"
    """Folder under the run directory that receives the datasets."""
    pair_policy: str = "all"
    """How pairs are drawn per prompt: ``all`` (chosen x rejected combinations, shuffled by
    seed, capped by ``max_pairs_per_prompt``), ``random`` (one random pair per prompt) or
    ``length_matched`` (each sample used once, closest response lengths first)."""
    max_pairs_per_prompt: int = 4
    """Cap on pairs per prompt (``all`` and ``length_matched``; ``random`` makes one)."""
    max_prompt_tokens: int | None = None
    """Leave out samples whose prompt is longer than this, in tokens (None: no cap).
    REDI used 800."""
    max_response_tokens: int | None = None
    """Leave out samples whose response (reasoning and answer) is longer than this, in
    tokens (None: no cap). REDI used 19,000."""
    tokenizer: str | None = None
    """Counts tokens for the caps and the card: a tokenizer folder, a ``.gguf`` file, or a
    Hub name already in the local cache. None: the counts the teacher reported."""
    reasoning_in_content: bool = True
    """Put the reasoning inside ``<think>...</think>`` before the answer in the assistant turn."""
    reasoning_column: bool = True
    """Also keep the reasoning as its own column (``reasoning``; ``chosen_reasoning`` and
    ``rejected_reasoning`` in pairs)."""
    difficulty_edges: list[float] = field(default_factory=lambda: [0.3, 0.7])
    """Two pass rates (low, high) that split prompts strictly between 0 and 1 into ``hard``
    (< low), ``medium`` and ``easy`` (>= high); 0 is ``unsolved`` and 1 is ``solved``."""
    sft_drop_unsolved: bool = False
    """Leave prompts with pass rate 0 out of the SFT sets (often a wrong reference)."""
    sft_drop_solved: bool = False
    """Leave prompts with pass rate 1 out of the SFT sets (too easy to teach much)."""
    sft_weighting: str = "none"
    """The SFT ``weight`` column: ``none`` (1.0) or ``failure_rate`` (1 - pass rate)."""
    subset_sizes: dict[str, int] | None = None
    """Exact row count per output name (e.g. ``{redi_pairs: 1000}``), drawn by ``run.seed``;
    the run stops if an output has fewer rows. None, or an output not named: kept whole.
    (None rather than ``{}`` so that ``output.subset_sizes={...}`` overrides on the CLI.)"""
    domain_mix: dict[str, float] | None = None
    """Share of rows per domain in every output (e.g. ``{math: 0.7, code: 0.3}``), summing
    to 1. None: as generated. Without a subset size, the largest set with this mix."""
    push_to_hub: bool = False
    """Upload the outputs to the Hub as one dataset repo, one config per output."""
    repo_id: str | None = None
    """Target repo, ``<user or org>/<name>``; needed by ``push_to_hub``."""
    private: bool = True
    """Create the repo private (an existing repo keeps its visibility)."""
    dry_run: bool = False
    """Write the exact folder that would be uploaded (``<dir>/hub``) and upload nothing."""
    token_env: str = "HF_TOKEN"
    """Environment variable holding the Hub token (falls back to ``hf auth login``'s token)."""
    license: str = "other"
    """License tag on the card; set it to what the teacher's and sources' terms allow."""
    pretty_name: str | None = None
    """Title of the Hub dataset (None: the repo name, else the pipeline name)."""

    def __post_init__(self) -> None:
        self._validate_pairs()
        self._validate_lengths()
        self._validate_difficulty()
        self._validate_subsets()
        self._validate_hub()

    def _validate_pairs(self) -> None:
        if self.pair_policy not in PAIR_POLICIES:
            raise ConfigError(
                f"output.pair_policy must be one of {PAIR_POLICIES}, got {self.pair_policy!r}"
            )
        if self.max_pairs_per_prompt < 1:
            raise ConfigError("output.max_pairs_per_prompt must be >= 1")

    def _validate_lengths(self) -> None:
        for key in ("max_prompt_tokens", "max_response_tokens"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"output.{key} must be >= 1 or null, got {value}")

    def _validate_difficulty(self) -> None:
        edges = list(self.difficulty_edges)
        if len(edges) != 2 or not 0.0 < edges[0] <= edges[1] < 1.0:
            raise ConfigError(
                f"output.difficulty_edges must be [low, high] with 0 < low <= high < 1, got {edges}"
            )
        if self.sft_weighting not in SFT_WEIGHTINGS:
            raise ConfigError(
                f"output.sft_weighting must be one of {SFT_WEIGHTINGS}, got {self.sft_weighting!r}"
            )

    def _validate_subsets(self) -> None:
        from datagen.records import DOMAINS

        for name, size in (self.subset_sizes or {}).items():
            if name not in OUTPUT_NAMES:
                raise ConfigError(
                    f"output.subset_sizes: unknown output {name!r}; use {OUTPUT_NAMES}"
                )
            if size < 1:
                raise ConfigError(f"output.subset_sizes.{name} must be >= 1, got {size}")
        mix = self.domain_mix or {}
        for domain, share in mix.items():
            if domain not in DOMAINS:
                raise ConfigError(f"output.domain_mix: unknown domain {domain!r}; use {DOMAINS}")
            if not 0.0 < share <= 1.0:
                raise ConfigError(f"output.domain_mix.{domain} must be in (0, 1], got {share}")
        if mix and abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ConfigError(f"output.domain_mix shares must sum to 1, got {sum(mix.values())}")

    def _validate_hub(self) -> None:
        if self.push_to_hub and not self.repo_id:
            raise ConfigError("output.push_to_hub=true needs output.repo_id=<user>/<name>")
        if self.repo_id is not None and self.repo_id.count("/") != 1:
            raise ConfigError(f"output.repo_id must look like <user>/<name>, got {self.repo_id!r}")


@dataclass(frozen=True)
class AdaptiveConfig:
    """Adaptive sampling (stage ``generate_adaptive``): rounds of generate, then verify.

    A prompt keeps getting samples until it has ``min_positives`` usable verified-correct
    and ``min_negatives`` usable verified-incorrect samples, or has had ``max_samples``.
    Sample ``i`` of a prompt is the same request as sample ``i`` of a fixed-N run, so
    both modes share the request cache.
    """

    min_positives: int = 1
    """Verified-correct samples a prompt needs before it stops (k)."""
    min_negatives: int = 1
    """Verified-incorrect samples a prompt needs before it stops (m)."""
    max_samples: int = 8
    """Most samples one prompt may get, over all rounds."""
    first_round: int = 2
    """Samples per prompt in the first round."""
    per_round: int = 2
    """Samples per prompt in each later round (fewer when ``max_samples`` is near)."""
    count_usable_only: bool = True
    """Count only samples the ``filter`` stage will keep (not truncated, has an answer, ...),
    so a prompt does not stop on samples that never reach the outputs."""

    def __post_init__(self) -> None:
        for key in ("min_positives", "min_negatives"):
            if getattr(self, key) < 0:
                raise ConfigError(f"adaptive.{key} must be >= 0, got {getattr(self, key)}")
        if self.min_positives + self.min_negatives < 1:
            raise ConfigError("adaptive.min_positives + adaptive.min_negatives must be >= 1")
        for key in ("first_round", "per_round"):
            if getattr(self, key) < 1:
                raise ConfigError(f"adaptive.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_samples < max(self.first_round, self.min_positives + self.min_negatives):
            raise ConfigError(
                f"adaptive.max_samples ({self.max_samples}) must be >= adaptive.first_round "
                "and >= min_positives + min_negatives"
            )


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
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    """Used by the ``generate_adaptive`` stage only."""

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
    label: str | None = None
    """In an ensemble: the member's name, under which its verdict is stored."""
    weight: float = 1.0
    """In an ensemble with ``combine: weighted``: the member's vote weight."""


def build_verifier(registry: dict[str, type], node: Any, key: str) -> VerifierChoice:
    """Build ``verifier.name``'s options from the other keys of the group.

    ``name: ensemble`` also takes ``members``: a mapping from a label (the name its
    verdict is stored under) to a verifier group of its own plus an optional
    ``weight``; a list of groups is labelled by their names.
    """
    node = dict(node or {})
    name = node.pop("name", None)
    if name not in registry:
        raise ConfigError(f"{key}.name must be one of {sorted(registry)}, got {name!r}")
    if name != "ensemble":
        return VerifierChoice(name=name, options=_build_options(registry[name], node, key))
    members = _build_members(registry, node.pop("members", None), key)
    options = dataclasses.replace(_build_options(registry[name], node, key), members=members)
    return VerifierChoice(name=name, options=options)


def _build_options(cls: type, node: dict[str, Any], key: str) -> Any:
    """:func:`build`, with the verifier's hints (``model=...``) spelled as full keys."""
    try:
        return build(cls, node, key)
    except ConfigError as exc:
        names = "|".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(re.sub(rf"(?<![\w.])({names})=", rf"{key}.\1=", str(exc))) from None


def _build_members(registry: dict[str, type], members: Any, key: str) -> tuple[VerifierChoice, ...]:
    """The members of ``verifier.members``, each built as a verifier group of its own."""
    if isinstance(members, list):
        names = [str((m or {}).get("name")) for m in members]
        if len(set(names)) < len(names):
            raise ConfigError(
                f"{key}.members: two members have the same name; give them labels with the "
                "mapping form, e.g. members: {judge_a: {name: judge, ...}, judge_b: {...}}"
            )
        members = dict(zip(names, members, strict=True))
    if not isinstance(members, dict) or not members:
        raise ConfigError(
            f"{key}.members must name at least one verifier, e.g. "
            "members: {math: {name: math}, judge: {name: judge, model: ...}}"
        )
    built = []
    for label, member in members.items():
        member_key = f"{key}.members.{label}"
        member = dict(member or {})
        weight = member.pop("weight", 1.0)
        if member.get("name") == "ensemble":
            raise ConfigError(f"{member_key}.name: an ensemble cannot contain an ensemble")
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{member_key}.weight must be a number > 0, got {weight!r}")
        choice = build_verifier(registry, member, member_key)
        built.append(dataclasses.replace(choice, label=str(label), weight=float(weight)))
    return tuple(built)


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
        adaptive=build(AdaptiveConfig, raw.get("adaptive"), "adaptive"),
    )
