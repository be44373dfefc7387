"""Typed configuration: one dataclass per config group, converted once at entry.

The schemas only: this module imports no plug-in. :mod:`datagen.compose`
turns Hydra's composed config into these frozen dataclasses (picking the
teacher's and verifier's dataclass from their declarations), so nothing past
``__main__`` sees a ``DictConfig``. Each default lives here, once; the YAML in
``conf/`` holds only what a pipeline or group changes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from datagen.records import DOMAINS


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


def reject_non_finite(obj: Any, section: str) -> None:
    """Refuse NaN and infinity in any float field of a config dataclass, naming the key.

    Range checks such as ``x <= 0`` are silently true or false for NaN, so every
    config runs this first; nested dataclasses, lists and dicts are walked.
    """
    for f in dataclasses.fields(obj):
        _check_finite_value(getattr(obj, f.name), f"{section}.{f.name}")


def _check_finite_value(value: Any, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        reject_non_finite(value, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite_value(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite_value(v, f"{key}[{i}]")


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    """Seeds sampling and every random choice; same seed, same dataset."""
    limit: int | None = None
    """Use at most this many problems from the source (None: all)."""
    resume: bool = True
    """Reuse finished stages and partial shards in the run directory."""
    batch_size: int = 1024
    """Rows handed to a stage function at a time (also the resume granularity: one
    Parquet shard per batch). Large, so that a row-wise stage pays its per-batch costs
    (a shard written, a worker pool fed) rarely: at 64 the shards of a 100k-trace
    re-grade cost more than its filter rules (issue 19)."""
    generate_batch_size: int | None = None
    """Problems per generation batch: each finished batch is saved before the next starts.
    None: the teacher's own default (16 for the local teacher, 64 for an API, 1024 for
    vLLM, which wants one large batch). A teacher that streams (``openai``) keeps its
    window full regardless: there it is only the finished prompts per shard."""
    progress: bool = True
    """Show progress bars on long stages."""
    executor: str = "local"
    """``local`` (this process plus worker pools) or ``ray`` (every row-wise stage runs
    on a stage-long pool of Ray actors; see docs/ray.md)."""
    ray_address: str | None = None
    """Ray cluster to join (None: start or reuse a local one; ``auto``: the running one)."""
    ray_concurrency: int = 2
    """Ray actors per stage; each builds its models and clients once for the stage.
    A ``concurrency`` budget (``teacher.concurrency``) is split across them."""
    ray_batch_size: int = 512
    """Rows per actor call: each runner batch is cut into pieces of at most this size
    (a call costs some milliseconds, so pieces much smaller than a batch cost time)."""
    ray_cpus_per_actor: float = 1.0
    """CPUs each Ray actor asks for; its worker pools (math-verify) use that many."""
    ray_gpus_per_actor: float = 0.0
    """GPUs each Ray actor of a stage that declares a GPU need asks for (e.g. 1 for
    ``generate`` with a vLLM teacher, or ``verify`` with a reward model on CUDA)."""
    max_failed_share: float = 0.5
    """The run exits non-zero (status 3) when more than this share of the generations
    failed for good. A run where everything failed always fails (1.0 included)."""
    max_rejected_share: float = 0.5
    """The run exits non-zero (status 3) when more than this share of the source rows
    were rejected as malformed. A source where every row was rejected always fails."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "run")
        self._check_executor()
        self._check_sizes()
        self._check_shares()

    def _check_executor(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"run.executor must be 'local' or 'ray', got {self.executor!r}")
        if self.ray_concurrency < 1 or self.ray_batch_size < 1:
            raise ConfigError("run.ray_concurrency and run.ray_batch_size must be >= 1")
        if self.ray_cpus_per_actor <= 0:
            raise ConfigError(f"run.ray_cpus_per_actor must be > 0, got {self.ray_cpus_per_actor}")
        if self.ray_gpus_per_actor < 0:
            raise ConfigError(f"run.ray_gpus_per_actor must be >= 0, got {self.ray_gpus_per_actor}")

    def _check_sizes(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"run.limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"run.batch_size must be >= 1, got {self.batch_size}")
        if self.generate_batch_size is not None and self.generate_batch_size < 1:
            raise ConfigError(
                f"run.generate_batch_size must be >= 1 or null (the teacher's default), "
                f"got {self.generate_batch_size}"
            )

    def _check_shares(self) -> None:
        for key in ("max_failed_share", "max_rejected_share"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"run.{key} must be in [0, 1], got {value}")


SOURCE_LOADERS: tuple[str, ...] = ("auto", "files", "datasets")


@dataclass(frozen=True)
class SourceConfig:
    """One source of problems: ``source`` (the one-source shorthand) or an entry of ``sources``."""

    path: str = "data/math_sample.jsonl"
    """A local .jsonl/.json/.parquet file or folder, or a Hugging Face dataset name."""
    name: str | None = None
    """The ``source`` on every row, in the funnel and on the card (None: ``path``).
    Names must differ between the entries of ``sources``."""
    domain: str = "math"
    """math, code or general: picks the verifier and the benchmarks for these problems."""
    split: str = "train"
    """Split to read when ``path`` is a Hub dataset name."""
    config: str | None = None
    """The Hub dataset's config (subset) name (None: its default)."""
    revision: str | None = None
    """The Hub dataset's revision: a branch, tag or commit (None: the main branch)."""
    loader: str = "auto"
    """``files`` reads ``path`` as local files; ``datasets`` hands it to
    ``datasets.load_dataset`` (a Hub name, or a local folder laid out as a Hub dataset
    repo); ``auto``: ``files`` when ``path`` exists locally and neither ``config`` nor
    ``revision`` is set, else ``datasets``."""
    id_field: str | None = "id"
    """Column holding a stable id, kept as ``metadata.source_id`` (ids stay content hashes)."""
    prompt_field: str = "problem"
    """Column holding the problem text (one user turn)."""
    messages_field: str | None = None
    """Column holding the prompt as a conversation (a list of ``{role, content}`` with
    roles system/user/assistant, ending with a user turn); it replaces ``prompt_field``."""
    reference_field: str | None = "answer"
    """Column holding the reference answer or tests (None: no reference)."""
    options_field: str | None = None
    """Column holding multiple-choice options (a list, or a letter -> text mapping), kept as
    ``metadata.options``, a list ``A`` first, for the verifier (None: none)."""
    metadata_fields: list[str] = field(default_factory=list)
    """Extra columns copied into each problem's metadata."""
    system_prompt: str | None = None
    """Prepended to every prompt as a system message (None: none); a conversation that
    starts with its own system turn keeps it."""
    limit: int | None = None
    """Take at most this many valid problems from this source (None: all). Without
    ``seed``, the first ones (rows after them are not read); with ``seed``, a sample."""
    fraction: float | None = None
    """Take about this share (0, 1] of the valid problems, chosen by ``seed`` (None: all)."""
    seed: int | None = None
    """Seeds ``limit``/``fraction`` sampling: a problem is picked by a hash of the seed and
    its id, so the same rows are picked on every rerun and after the file moves."""
    license: str | None = None
    """The source's licence (e.g. ``mit``, ``cc-by-4.0``), listed on the dataset card."""
    verifier: str | None = None
    """Verifier name for this source's problems instead of its domain's (None: the domain's)."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "source")
        if self.domain not in DOMAINS:
            raise ConfigError(f"source.domain must be one of {DOMAINS}, got {self.domain!r}")
        if self.loader not in SOURCE_LOADERS:
            raise ConfigError(f"source.loader must be one of {SOURCE_LOADERS}, got {self.loader!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"source.limit must be >= 1 or null, got {self.limit}")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"source.fraction must be in (0, 1] or null, got {self.fraction}")
        if self.limit is not None and self.fraction is not None:
            raise ConfigError("source.limit and source.fraction: set one of them, not both")

    @property
    def label(self) -> str:
        """What rows of this source carry as ``source``."""
        return self.name or self.path


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling options, the same for every teacher (modelled on vLLM's SamplingParams)."""

    n: int = 4
    """Samples per prompt."""
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    """Upper bound on generated tokens; a sample that hits it is marked truncated. 256 keeps
    the embedded CPU teacher's default run to minutes; reasoning teachers need thousands."""
    seed: int | None = None
    """Base seed for sampling (None: use run.seed). Each sample derives its own."""
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        reject_non_finite(self, "generation")
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
    """Stage names, in order; see ``datagen.stages.STAGES``. Must not be empty."""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(
                "pipeline.stages is empty: nothing would run; list stages, e.g. "
                "pipeline.stages=[load,dedup,generate,verify,filter,emit], or pick +pipeline=math"
            )


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
        reject_non_finite(self, "filter")
        if self.max_completion_tokens is not None and self.max_completion_tokens < 1:
            raise ConfigError(
                "filter.max_completion_tokens must be >= 1 or null, "
                f"got {self.max_completion_tokens}"
            )
        if not 0.0 < self.max_repeated_ngram_fraction <= 1.0:
            raise ConfigError("filter.max_repeated_ngram_fraction must be in (0, 1]")


PAIR_POLICIES: tuple[str, ...] = (
    "all",
    "random",
    "length_matched",
    "teacher_vs_student",
    "shorter_correct",
)
SFT_WEIGHTINGS: tuple[str, ...] = ("none", "failure_rate", "paced")
SFT_SELECTIONS: tuple[str, ...] = ("all", "shortest", "k_shortest")


@dataclass(frozen=True)
class OutputConfig:
    """How verified samples become SFT and preference datasets, and where they go."""

    dir: str = "outputs"
    """Folder under the run directory that receives the datasets."""
    save_arrow: bool = False
    """Also save each output with ``save_to_disk`` in ``<name>/arrow/`` (for
    ``load_from_disk``). Off: the Parquet file is the one copy (the outputs' text would
    otherwise be on disk twice)."""
    pair_policy: str = "all"
    """How pairs are drawn per prompt: ``all`` (chosen x rejected combinations, shuffled by
    seed, capped by ``max_pairs_per_prompt``), ``random`` (one random pair per prompt) or
    ``length_matched`` (each sample used once, closest response lengths first),
    ``teacher_vs_student`` (chosen a teacher's correct trace, rejected the student's wrong
    one; needs ``student.enabled``) or ``shorter_correct`` (chosen a shorter correct trace,
    rejected a longer correct one of the same prompt, against overthinking)."""
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
    """The SFT ``weight`` column: ``none`` (1.0), ``failure_rate`` (1 - pass rate) or ``paced``
    (PACED's p^alpha (1-p)^beta). The pass rate is the student's when a student is set."""
    sft_selection: str = "all"
    """Which verified-correct traces of a prompt ``sft_positive`` (and the curriculum sets)
    keep: ``all``, ``shortest`` (the one shortest in response tokens) or ``k_shortest``
    (the ``sft_selection_k`` shortest). Incorrect traces are never kept by these rules."""
    sft_selection_k: int = 2
    """Traces per prompt kept by ``sft_selection: k_shortest``."""
    paced_alpha: float = 1.0
    """PACED's alpha in w(p) = p^alpha (1-p)^beta (the ``paced_weight`` column)."""
    paced_beta: float = 1.0
    """PACED's beta in w(p) = p^alpha (1-p)^beta."""
    student_min_pass_rate: float = 0.0
    """With a student: leave out prompts whose student pass rate is below this."""
    student_max_pass_rate: float = 1.0
    """With a student: leave out prompts whose student pass rate is above this (open-r1's
    pass-rate filter); ``student_drop_solved`` is the common case."""
    student_drop_solved: bool = False
    """With a student: leave out prompts the student always solves (pass rate 1)."""
    curriculum: bool = False
    """Also write ``curriculum_stage1`` (broad) and ``curriculum_stage2`` (hard) SFT sets,
    Light-R1 style; needs ``student.enabled``."""
    stage2_max_pass_rate: float = 0.5
    """``curriculum_stage2`` holds the prompts whose student pass rate is at most this and
    that have a usable verified-correct teacher trace."""
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
    license_name: str | None = None
    """With ``license: other``: the licence's id on the card (None:
    ``terms-of-sources-and-teacher``)."""
    license_link: str | None = None
    """With ``license: other``: a URL, or a file in the folder (None: ``LICENSE.md``, which
    datagen writes, naming the sources' and the teacher's terms)."""
    language: list[str] = field(default_factory=lambda: ["en"])
    """The card's ``language`` codes (ISO 639-1) of the prompts and responses."""
    source_datasets: list[str] | None = None
    """The card's ``source_datasets``: Hub ids of where the prompts came from. None:
    ``source.path`` when it names a Hub dataset, none for a local file."""
    pretty_name: str | None = None
    """Title of the Hub dataset (None: the repo name, else the pipeline name)."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "output")
        self._validate_pairs()
        self._validate_lengths()
        self._validate_difficulty()
        self._validate_curation()
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

    def _validate_curation(self) -> None:
        if self.sft_selection not in SFT_SELECTIONS:
            raise ConfigError(
                f"output.sft_selection must be one of {SFT_SELECTIONS}, got {self.sft_selection!r}"
            )
        if self.sft_selection_k < 1:
            raise ConfigError(f"output.sft_selection_k must be >= 1, got {self.sft_selection_k}")
        for key in ("paced_alpha", "paced_beta"):
            if getattr(self, key) < 0:
                raise ConfigError(f"output.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("student_min_pass_rate", "student_max_pass_rate", "stage2_max_pass_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"output.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.student_min_pass_rate > self.student_max_pass_rate:
            raise ConfigError(
                "output.student_min_pass_rate must be <= output.student_max_pass_rate"
            )

    def _validate_subsets(self) -> None:
        # Unknown output names are refused where outputs are declared (datagen.compose).
        for name, size in (self.subset_sizes or {}).items():
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
        reject_non_finite(self, "adaptive")
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


ANY_ROUTE = "*"
"""``verify.default_route`` of a single-verifier run: ``verifier`` grades every row that
no route of ``verify.routes`` takes."""


@dataclass(frozen=True)
class VerifyConfig:
    """Which verifier grades which rows: the route of a row is its ``verifier`` override,
    else its domain (see docs/verifiers.md, "Verifiers by domain").

    A row whose route has no verifier gets an unverifiable verdict (``no verifier for
    domain X``); it is never passed.
    """

    routes: dict[str, Any] = field(default_factory=dict)
    """Route key (a domain, or a name rows pick with their ``verifier`` override) ->
    a verifier group of its own, e.g. ``{code: {name: code}}``, or from a
    ``conf/verifier`` file: ``+verifier@verify.routes.code=code``. Built into a
    :class:`VerifierChoice` per key."""
    default_route: str | None = ANY_ROUTE
    """The route the top-level ``verifier`` group serves: ``*`` (every row that no
    entry of ``routes`` takes and that names no route of its own: a one-domain
    pipeline), a route key such as ``math`` (only those rows), or null (none: only
    ``routes`` grade)."""

    def __post_init__(self) -> None:
        for key in self.routes:
            if not isinstance(key, str) or not key or key == ANY_ROUTE:
                raise ConfigError(f"verify.routes: bad route key {key!r}; use a domain or a name")
        if self.default_route in self.routes:
            raise ConfigError(
                f"verify.default_route={self.default_route} is also in verify.routes: two "
                "verifiers for one route; drop one, or set verify.default_route to another key"
            )

    def choice(self, key: str, overridden: bool, default: VerifierChoice) -> VerifierChoice | None:
        """The verifier of route ``key`` (None: none configured).

        Args:
            key: The row's route key (its override, else its domain).
            overridden: The row named the key itself: ``*`` does not catch it.
            default: The top-level ``verifier`` group.
        """
        if key in self.routes:
            return self.routes[key]
        if self.default_route == key or (self.default_route == ANY_ROUTE and not overridden):
            return default
        return None

    def keys(self) -> set[str]:
        """Every route key a row's ``verifier`` override may name."""
        keys = set(self.routes)
        if self.default_route not in (None, ANY_ROUTE):
            keys.add(self.default_route)
        return keys


@dataclass(frozen=True)
class TeacherEntry:
    """One teacher of a ``teachers:`` list: its backend config and its own sampling."""

    label: str
    """Recorded as ``Sample.teacher`` and hashed into its sample ids (default: the backend
    name; must be unique in the list)."""
    config: Any
    """The backend's config dataclass (``local``, ``openai``, ``vllm``, ``replay``, ...)."""
    generation: SamplingConfig
    """``generation`` with this entry's own overrides (``n``, ``temperature``, ...)."""


@dataclass(frozen=True)
class StudentConfig:
    """A student model in the loop (stage ``student``): k samples per prompt, same verifiers.

    When enabled, ``pass_rate`` and ``difficulty`` of every output row are the student's
    (the teachers' stay in ``teacher_pass_rate`` / ``teacher_difficulty``), and rows get a
    PACED ``paced_weight``. The backend is built in :mod:`datagen.compose`.
    """

    enabled: bool = False
    """Off by default: the ``student`` stage then passes rows through untouched."""
    backend: Any = None
    """Any teacher backend's config (``student.backend.name``; default the embedded local
    model)."""
    label: str = "student"
    """``Sample.teacher`` of the student's samples (must differ from every teacher label)."""
    k: int = 4
    """Student samples per prompt."""
    temperature: float | None = None
    """Student sampling temperature (None: ``generation.temperature``)."""
    max_tokens: int | None = None
    """Student ``max_tokens`` (None: ``generation.max_tokens``)."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "student")
        if self.k < 1:
            raise ConfigError(f"student.k must be >= 1, got {self.k}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"student.max_tokens must be >= 1 or null, got {self.max_tokens}")
        if self.temperature is not None and not 0.0 <= self.temperature <= 5.0:
            raise ConfigError(f"student.temperature must be in [0, 5], got {self.temperature}")
        if not self.label:
            raise ConfigError("student.label must not be empty")

    def sampling(self, base: SamplingConfig) -> SamplingConfig:
        """The student's sampling: ``base`` with ``n = k`` and its own overrides."""
        changes: dict[str, Any] = {"n": self.k}
        if self.temperature is not None:
            changes["temperature"] = self.temperature
        if self.max_tokens is not None:
            changes["max_tokens"] = self.max_tokens
        return dataclasses.replace(base, **changes)


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
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    """Verifiers by route (domain); ``verifier`` is the default route's."""
    sources: list[SourceConfig] = field(default_factory=list)
    """Several sources pooled in one run, read in this order (empty: ``source`` alone)."""
    teachers: tuple[TeacherEntry, ...] = ()
    """Several teachers in one run (empty: the one ``teacher``)."""
    student: StudentConfig = field(default_factory=StudentConfig)
    """The student in the loop (stage ``student``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Sections that plug-in stages declare (``Stage.sections``), by top-level key."""

    def __post_init__(self) -> None:
        labels = [s.label for s in self.sources]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"sources: two entries are named {twice}; give each a name")

    def source_list(self) -> list[SourceConfig]:
        """The sources this run reads: ``sources`` when given, else ``source``."""
        return list(self.sources) or [self.source]

    def __getattr__(self, name: str) -> Any:
        """A section declared by a plug-in stage reads like a built-in one."""
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no section {name!r}")

    def section(self, name: str) -> Any:
        """A top-level section, built-in or declared by a plug-in stage."""
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for hashing and for the run directory)."""
        plain = {
            f.name: _to_plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "extra"
        }
        return plain | {name: _to_plain(value) for name, value in self.extra.items()}


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class VerifierChoice:
    """The chosen verifier and its own (verifier-side) options dataclass."""

    name: str
    options: Any
    label: str | None = None
    """In an ensemble: the member's name, under which its verdict is stored."""
    weight: float = 1.0
    """In an ensemble with ``combine: weighted``: the member's vote weight."""
