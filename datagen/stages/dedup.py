"""Stage ``dedup``: set aside prompts that repeat another prompt.

Duplicates waste teacher money. Exact and normalised (case, width, spacing)
repeats are found by hashing; with ``dedup.method=semantic`` the remaining
distinct prompts are embedded and near-duplicates above ``dedup.threshold``
cosine similarity are found with FAISS; with ``dedup.minhash.enabled=true``, prompts
with a high word-shingle Jaccard (MinHash LSH) are joined as well. Duplicates
form clusters (union-find); one member per cluster is kept by ``dedup.keep``.
Every removed row records its evidence in ``metadata``::

    duplicate_of  id of the kept member
    cluster       id of the kept member (also set on the kept member itself)
    cluster_size  members in the cluster
    duplicate     {"of", "of_source": the kept member's source,
                   "method": exact|normalised|semantic|minhash, "score": to kept}

The machinery lives in :mod:`datagen.similarity`; this module maps records
onto it. :func:`dedup_samples` is the optional per-prompt near-duplicate pass
over generated samples, and :func:`write_dedup_report` writes example clusters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datagen.config import ConfigError
from datagen.records import Problem, Sample, arrow_rows, column_values
from datagen.similarity import (
    Embedder,
    EmbeddingSpec,
    IndexSpec,
    MinHashSpec,
    find_duplicates,
    jaccard,
    normalise,
    shingles,
)
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.views import open_part

logger = logging.getLogger(__name__)

DEDUP_METHODS = ("none", "exact", "semantic")
KEEP_POLICIES = ("source_order", "first", "reference", "longest")
SAMPLE_METHODS = ("none", "exact", "jaccard")

CONSUMES = ("messages", "reference")
PRODUCES = ("keep", "reject_reason", "metadata")


@dataclass(frozen=True)
class SampleDedupConfig:
    """Near-duplicate removal among the samples of one prompt (stage ``dedup_samples``)."""

    method: str = "none"
    """``none``; ``exact`` (same normalised text); ``jaccard`` (word-shingle Jaccard)."""
    threshold: float = 0.9
    """Jaccard similarity at or above which two samples of one prompt are duplicates."""
    ngram: int = 5
    """Shingle length in words for ``jaccard``."""

    def __post_init__(self) -> None:
        if self.method not in SAMPLE_METHODS:
            raise ConfigError(
                f"dedup.samples.method must be one of {SAMPLE_METHODS}, got {self.method!r}"
            )
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"dedup.samples.threshold must be in (0, 1], got {self.threshold}")
        if self.ngram < 1:
            raise ConfigError(f"dedup.samples.ngram must be >= 1, got {self.ngram}")


RENAMED_EMBEDDING = {
    "model": "embedding.model",
    "embed_batch_size": "embedding.batch_size",
    "max_seq_length": "embedding.max_seq_length",
    "device": "embedding.device",
    "cache_dir": "embedding.cache_dir",
}
"""Embedding keys that moved into the ``embedding`` group (dedup and decontam)."""


@dataclass(frozen=True)
class DedupConfig:
    """Prompt deduplication (``conf/dedup/*.yaml``)."""

    RENAMED: ClassVar[dict[str, str]] = {
        **RENAMED_EMBEDDING,
        "index": "index.kind",
        **{
            key: f"index.{key}"
            for key in (
                "flat_max_rows",
                "hnsw_m",
                "hnsw_ef_search",
                "ivf_list_size",
                "ivf_nprobe",
                "lsh_tables",
                "lsh_bits",
                "lsh_min_threshold",
            )
        },
        "minhash": "minhash.enabled",
        "minhash_threshold": "minhash.threshold",
        "minhash_ngram": "minhash.ngram",
        "minhash_perms": "minhash.num_perm",
    }
    """Old key -> new key (relative to ``dedup``): a config using an old key fails naming
    the new one."""

    method: str = "exact"
    """``none`` keeps every prompt; ``exact`` removes exact and normalised repeats;
    ``semantic`` also removes embedding near-duplicates."""
    threshold: float = 0.95
    """Cosine similarity in (0, 1] at or above which two prompts are duplicates (semantic).
    With all-MiniLM-L6-v2 on 100k real prompts (benchmarks/bench_dedup.py), 0.95 catches
    97% of added instructions but 67% of reordered sentences; 0.90 catches 99.7% and 91%
    and merges more distinct prompts. Templated problems with other numbers score
    0.72-0.98 (long word problems highest). See docs/dedup.md."""
    keep: str = "source_order"
    """Which member of a cluster to keep: ``source_order`` (the one from the source listed
    first in ``sources``, then the first seen; with one source, the same as ``first``),
    ``first`` seen, the first with a ``reference`` answer, or the ``longest`` prompt (ties
    go to the first seen)."""
    neighbours: int = 16
    """Nearest neighbours searched per prompt; larger clusters still join transitively."""
    embedding: EmbeddingSpec = field(default_factory=EmbeddingSpec)
    """The embedding model for ``semantic`` (shared with decontaminate's ``embedding``)."""
    index: IndexSpec = field(default_factory=IndexSpec)
    """The FAISS index: ``index.kind`` is ``auto`` (exact ``flat`` up to
    ``index.flat_max_rows`` prompts; above that ``lsh`` when ``threshold`` >=
    ``index.lsh_min_threshold``, else ``ivf``), ``flat``, ``ivf``, ``hnsw`` or ``lsh``;
    the other keys tune them (see :mod:`datagen.similarity.index`)."""
    minhash: MinHashSpec = field(default_factory=lambda: MinHashSpec(enabled=False))
    """``minhash.enabled``: also join prompts whose word-shingle Jaccard, estimated with
    MinHash LSH (datasketch), reaches ``minhash.threshold`` (word ``minhash.ngram``-grams,
    ``minhash.num_perm`` permutations). Works with ``exact`` (no model) and ``semantic``
    (the union of both): MinHash catches reordered sentences that embeddings at 0.95
    miss, embeddings catch added instructions MinHash misses."""
    samples: SampleDedupConfig = field(default_factory=SampleDedupConfig)
    """Near-duplicate removal among the samples of one prompt (stage ``dedup_samples``)."""

    def __post_init__(self) -> None:
        if self.method not in DEDUP_METHODS:
            raise ConfigError(f"dedup.method must be one of {DEDUP_METHODS}, got {self.method!r}")
        if self.keep not in KEEP_POLICIES:
            raise ConfigError(f"dedup.keep must be one of {KEEP_POLICIES}, got {self.keep!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"dedup.threshold must be in (0, 1], got {self.threshold}")
        if self.neighbours < 1:
            raise ConfigError(f"dedup.neighbours must be >= 1, got {self.neighbours}")
        problem = self.embedding.problem("dedup.embedding.") or self.index.problem("dedup.index.")
        if problem:
            raise ConfigError(problem)
        mh = self.minhash
        if not 0.0 < mh.threshold <= 1.0:
            raise ConfigError(f"dedup.minhash.threshold must be in (0, 1], got {mh.threshold}")
        for name in ("ngram", "num_perm"):
            if getattr(mh, name) < 1:
                raise ConfigError(f"dedup.minhash.{name} must be >= 1, got {getattr(mh, name)}")

    def minhash_spec(self) -> MinHashSpec | None:
        """The MinHash pass these settings ask for (None: off)."""
        return self.minhash if self.minhash.enabled else None


def get_embedder(ctx: StageContext, spec: EmbeddingSpec) -> Embedder:
    """The process-wide embedder for ``dedup.embedding`` or ``decontam.embedding``.

    The cache defaults to ``RUN_DIR/cache/embeddings``, shared by both; the model
    loads on the first miss.
    """
    model, cache_dir, batch_size = spec.model, spec.cache_dir, spec.batch_size
    max_seq_length, device = spec.max_seq_length, spec.device
    folder = Path(cache_dir) if cache_dir else ctx.run_dir / "cache" / "embeddings"
    key = f"embedder:{model}:{folder}:{batch_size}:{max_seq_length}:{device}"
    progress = bool(getattr(getattr(ctx.config, "run", None), "progress", False))
    return ctx.resource(
        key,
        lambda: Embedder(
            model,
            folder,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            device=device,
            progress=progress,
        ),
    )


def source_ranks(ctx: StageContext, batch: list[Problem]) -> dict[str, int]:
    """Each source's place in ``sources`` (sources not listed: in order of first appearance)."""
    source_list = getattr(getattr(ctx, "config", None), "source_list", None)
    listed = [s.label for s in source_list()] if callable(source_list) else []
    ranks = {label: i for i, label in enumerate(listed)}
    for p in batch:
        ranks.setdefault(p.source, len(ranks))
    return ranks


def _priority(batch: list[Problem], policy: str, ranks: dict[str, int]) -> list[Any]:
    if policy == "source_order":
        return [(ranks[p.source], i) for i, p in enumerate(batch)]
    if policy == "reference":
        return [(not (p.reference or "").strip(), i) for i, p in enumerate(batch)]
    if policy == "longest":
        return [(-len(p.prompt), i) for i, p in enumerate(batch)]
    return list(range(len(batch)))


def dedup(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Mark every prompt that duplicates a kept one; needs all rows at once.

    Args:
        batch: Every problem of the run (the stage declares ``needs_all_rows``).
        ctx: Supplies the embedder (built once) and the stage counters.
        cfg: ``{"dedup": DedupConfig}``.

    Returns:
        The same rows in the same order; duplicates have ``keep=False``, a
        ``reject_reason`` of ``duplicate: exact`` or ``duplicate: semantic``, and
        the evidence in ``metadata``.
    """
    dcfg: DedupConfig = cfg["dedup"]
    if dcfg.method == "none" or not batch:
        return batch
    embed = None
    if dcfg.method == "semantic":
        embed = get_embedder(ctx, dcfg.embedding).encode
    found = find_duplicates(
        [p.conversation_text for p in batch],
        priority=_priority(batch, dcfg.keep, source_ranks(ctx, batch)),
        embed=embed,
        threshold=dcfg.threshold,
        neighbours=dcfg.neighbours,
        spec=dcfg.index,
        minhash=dcfg.minhash_spec(),
    )
    for i, problem in enumerate(batch):
        size = found.cluster_size[i]
        if size == 1:
            continue
        head = batch[found.kept[i]]
        problem.metadata["cluster"] = head.id
        problem.metadata["cluster_size"] = size
        if head is problem:
            continue
        method = found.method[i]
        problem.keep = False
        problem.reject_reason = (
            f"duplicate: {method}" if method in ("semantic", "minhash") else "duplicate: exact"
        )
        problem.metadata["duplicate_of"] = head.id
        problem.metadata["duplicate"] = {
            "of": head.id,
            "of_source": head.source,
            "method": method,
            "score": found.score[i],
        }
    for key, value in found.stats.items():
        ctx.count("dedup", key, round(value, 3) if isinstance(value, float) else value)
    logger.info("dedup: %s", found.stats)
    return batch


def dedup_samples(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Mark samples that repeat an earlier sample of the same prompt.

    Samples are compared only within one ``problem_id``, on reasoning plus
    content, so this is cheap (n² per prompt for small n) and needs no model.
    Put it after ``generate`` in ``pipeline.stages`` and set ``dedup.samples.method``;
    it runs on batches of whole prompts, so a prompt's samples are never split.

    Args:
        batch: Samples (every sample of a prompt in this batch).
        ctx: Receives the counters.
        cfg: ``{"dedup.samples": SampleDedupConfig}``.

    Returns:
        The same rows; repeats get ``keep=False``, ``reject_reason`` ``duplicate sample``.
    """
    scfg: SampleDedupConfig = cfg["dedup.samples"]
    if scfg.method == "none":
        return batch
    by_problem: dict[str, list[int]] = {}
    for i, sample in enumerate(batch):
        if sample.keep:
            by_problem.setdefault(sample.problem_id, []).append(i)
    for members in by_problem.values():
        texts = [normalise(f"{batch[i].reasoning or ''}\n{batch[i].content}") for i in members]
        grams = [shingles(t, scfg.ngram) for t in texts] if scfg.method == "jaccard" else []
        kept: list[int] = []
        for pos, i in enumerate(members):
            match = None
            for k in kept:
                if texts[pos] == texts[k]:
                    match = (k, 1.0)
                elif scfg.method == "jaccard":
                    sim = jaccard(grams[pos], grams[k])
                    match = (k, sim) if sim >= scfg.threshold else None
                if match:
                    break
            if match is None:
                kept.append(pos)
                continue
            sample = batch[i]
            # Sample has no metadata column, so the evidence goes in the reason.
            other = batch[members[match[0]]]
            sample.keep = False
            sample.reject_reason = (
                f"duplicate sample: of {other.id} ({scfg.method}, {match[1]:.3f})"
            )
            ctx.count("dedup_samples", "duplicates")
    return batch


def write_dedup_report(stage_dir: Path, examples: int = 5, max_chars: int = 300) -> dict[str, Any]:
    """Summarise a finished dedup stage and write ``clusters.json`` into its folder.

    Reads the stage's ``data`` (kept rows) and its side output (``duplicates``) as
    the runner wrote them, so a resumed run gives the same answer.

    Args:
        stage_dir: ``RUN_DIR/stages/NN_dedup``.
        examples: How many clusters to show: those with a semantic member first,
            then the largest.
        max_chars: Prompt text is cut to this length in the report.

    Returns:
        ``{"duplicates": n, "by_method": {...}, "clusters": n, "examples": [...]}``;
        each example is ``{"kept": {id, prompt}, "size", "members": [{id, method,
        score, prompt}]}``. The same dict is written to ``stage_dir / "clusters.json"``.
    """

    stage_dir = Path(stage_dir)
    aside = open_part(stage_dir / "duplicates")
    clusters: dict[str, list[dict[str, Any]]] = {}
    by_method: dict[str, int] = {}
    for row in arrow_rows(aside):
        p = Problem.from_row(row)
        info = p.metadata.get("duplicate") or {"method": "exact", "score": 1.0}
        by_method[info["method"]] = by_method.get(info["method"], 0) + 1
        head = p.metadata.get("cluster") or p.metadata.get("duplicate_of", "?")
        member = {"id": p.id, "method": info["method"], "score": info.get("score")}
        clusters.setdefault(head, []).append({**member, "prompt": p.prompt[:max_chars]})
    ordered = sorted(
        clusters.items(),
        key=lambda kv: (not any(m["method"] == "semantic" for m in kv[1]), -len(kv[1]), kv[0]),
    )[:examples]
    kept = open_part(stage_dir / "data")
    wanted = {cid for cid, _ in ordered}
    positions = [i for i, pid in enumerate(column_values(kept, "id")) if pid in wanted]
    heads = {row["id"]: Problem.from_row(row).prompt[:max_chars] for row in kept.select(positions)}
    report = {
        "duplicates": len(aside),
        "by_method": by_method,
        "clusters": len(clusters),
        "examples": [
            {"kept": {"id": cid, "prompt": heads.get(cid, "")}, "size": len(m) + 1, "members": m}
            for cid, m in ordered
        ],
    }
    (stage_dir / "clusters.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


register_stage(
    Stage(
        "dedup",
        dedup,
        "problem",
        "problem",
        ("dedup",),
        needs_all_rows=True,
        writes=PRODUCES,
        side_name="duplicates",
        report=lambda stage_dir, config: write_dedup_report(stage_dir),
        report_key="dedup_report",
        sections={"dedup": DedupConfig},
    )
)
# Compares the samples of one prompt, so all of a prompt's samples in one batch.
register_stage(
    Stage(
        "dedup_samples",
        dedup_samples,
        "sample",
        "sample",
        ("dedup.samples",),
        needs_all_rows=True,
        per_prompt=True,
        writes=("keep", "reject_reason"),
        side_name="duplicates",
        sections={"dedup": DedupConfig},
    )
)
