"""Duplicate clusters: exact, then normalised, then embedding neighbours and MinHash.

The cheap passes run first so the model sees each normalised text once.
Every duplicate relation becomes a union-find edge; each connected component
is one cluster, and one member per cluster is kept by a priority the caller
gives (first seen, has a reference, longest, ...).

Clusters are connected components, so similarity chains: A~B and B~C put A
and C in one cluster even when A and C are below the threshold. Each removed
row reports its own similarity to the kept member, which can then be below
the threshold; a high threshold (0.9 or more) keeps chains short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.similarity.index import IndexSpec, neighbour_pairs
from datagen.similarity.minhash import MinHashSpec, minhash_pairs
from datagen.similarity.text import group_by_key, normalise
from datagen.similarity.unionfind import UnionFind


@dataclass
class Duplicates:
    """Per-row result of :func:`find_duplicates`, aligned with the input texts."""

    kept: list[int]
    """Position of the row kept for this row's cluster (itself when it is kept)."""
    method: list[str | None]
    """``exact``, ``normalised``, ``semantic`` or ``minhash`` for a removed row; None when kept."""
    score: list[float | None]
    """Similarity to the kept row: cosine (semantic), estimated Jaccard (minhash), 1.0 for
    exact and normalised; None when kept."""
    cluster_size: list[int]
    """Members in this row's cluster (1 for a row with no duplicate)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts and timings: ``exact``, ``normalised``, ``semantic``, ``minhash``, ``clusters``,
    ``embedded_texts``, ``embed_seconds``, ``search_seconds``, ``minhash_seconds``."""

    def removed(self) -> list[int]:
        """Positions of the rows that duplicate a kept row."""
        return [i for i, k in enumerate(self.kept) if k != i]


def find_duplicates(
    texts: Sequence[str],
    *,
    priority: Sequence[Any] | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    threshold: float = 0.95,
    neighbours: int = 16,
    spec: IndexSpec | None = None,
    minhash: MinHashSpec | None = None,
) -> Duplicates:
    """Cluster duplicate texts and choose one member of each cluster to keep.

    Args:
        texts: The texts to compare.
        priority: One sort key per text; the smallest key in a cluster is kept
            (None: the first seen).
        embed: Function from normalised texts to unit vectors; None skips the
            semantic pass (exact and normalised duplicates only).
        threshold: Cosine similarity at or above which two texts are duplicates.
        neighbours: Nearest neighbours searched per distinct text.
        spec: Index choice (None: :class:`IndexSpec` defaults).
        minhash: Also join texts whose estimated word-shingle Jaccard reaches
            ``minhash.threshold`` (None: no MinHash pass).

    Returns:
        A :class:`Duplicates` aligned with ``texts``.

    Example:
        >>> d = find_duplicates(["What is 2+2?", "what is  2+2?", "Name a prime."])
        >>> d.kept, d.method
        ([0, 0, 2], [None, 'normalised', None])
    """
    n = len(texts)
    priority = list(range(n)) if priority is None else list(priority)
    stats: dict[str, Any] = {"embed_seconds": 0.0, "search_seconds": 0.0, "embedded_texts": 0}
    normed = [normalise(t) for t in texts]
    groups = list(group_by_key(normed).values())
    uf = UnionFind(n)
    for members in groups:
        for m in members[1:]:
            uf.union(members[0], m)

    vectors: np.ndarray | None = None
    group_of = np.empty(n, dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    if embed is not None and len(groups) > 1:
        started = time.monotonic()
        vectors = embed([normed[members[0]] for members in groups])
        stats["embed_seconds"] = time.monotonic() - started
        stats["embedded_texts"] = len(groups)
        started = time.monotonic()
        left, right, _ = neighbour_pairs(vectors, threshold, neighbours, spec or IndexSpec())
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            uf.union(groups[a][0], groups[b][0])
        stats["search_seconds"] = time.monotonic() - started
    sigs: list | None = None
    if minhash is not None and len(groups) > 1:
        started = time.monotonic()
        pairs, sigs = minhash_pairs([normed[members[0]] for members in groups], minhash)
        for a, b, _ in pairs:
            uf.union(groups[a][0], groups[b][0])
        stats["minhash_seconds"] = time.monotonic() - started

    kept = list(range(n))
    method: list[str | None] = [None] * n
    score: list[float | None] = [None] * n
    size = [1] * n
    counts = {"exact": 0, "normalised": 0, "semantic": 0, "minhash": 0}
    clusters = 0
    for members in uf.groups(min_size=2):
        clusters += 1
        head = min(members, key=lambda i: (priority[i], i))
        for m in members:
            kept[m] = head
            size[m] = len(members)
            if m == head:
                continue
            if texts[m] == texts[head]:
                method[m], score[m] = "exact", 1.0
            elif normed[m] == normed[head]:
                method[m], score[m] = "normalised", 1.0
            else:
                method[m], score[m] = _near_match(
                    group_of[m], group_of[head], vectors, threshold, sigs, minhash
                )
            counts[method[m]] += 1  # type: ignore[index]
    stats.update(counts, clusters=clusters)
    return Duplicates(kept=kept, method=method, score=score, cluster_size=size, stats=stats)


def _near_match(
    a: int,
    b: int,
    vectors: np.ndarray | None,
    threshold: float,
    sigs: list | None,
    minhash: MinHashSpec | None,
) -> tuple[str, float | None]:
    """Which pass explains a member's place in its cluster, and its score to the kept row.

    Embeddings win when they reach their threshold or MinHash does not; a member
    joined only through a chain reports the method that has a score.
    """
    cos = float(vectors[a] @ vectors[b]) if vectors is not None else None
    jac = float(sigs[a].jaccard(sigs[b])) if sigs is not None and minhash is not None else None
    if cos is not None and (jac is None or cos >= threshold or jac < minhash.threshold):
        return "semantic", round(cos, 4)
    if jac is not None:
        return "minhash", round(jac, 4)
    return "semantic", None
