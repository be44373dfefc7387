"""FAISS indexes over unit vectors: choose one by size, self-join, query.

Cosine similarity is the inner product of L2-normalised vectors, so every
index here uses ``METRIC_INNER_PRODUCT``.

Which index (``kind="auto"``):

* up to ``flat_max_rows`` vectors, ``IndexFlatIP``: exact, but a self-join costs
  n² dot products (4e12 flops at 100k x 384: minutes on 2 cores);
* above that, ``ivf``: ``IndexIVFFlat`` with lists of about ``ivf_list_size``
  vectors and an HNSW coarse quantizer. The centroids are a random sample of the
  vectors, not k-means: k-means with n/128 centroids costs O(n²) to train, while
  sampling keeps the whole self-join at about O(n log n) (HNSW over n/128
  centroids, then ``nprobe`` lists of constant size per query);
* ``hnsw`` on request: ``IndexHNSWFlat`` over every vector. Also about
  O(n log n) in theory, but 4x the CPU time of ``ivf`` at 100k vectors on 2 cores
  (same recall there) and more memory for the graph.

Measured by ``benchmarks/bench_dedup.py`` on random unit vectors (dim 384, 2
shared cores), the ``ivf`` self-join took 36, 68, 214 and 565 CPU seconds at
100k, 200k, 500k and 1M: within 1.3x of n log n. Random vectors are the worst
case for the HNSW quantizer: at 1M it finds the right list for only ~85% of
planted near-copies with ``hnsw_ef_search=64`` (98% at 256, for 4x the quantizer
time). Real embeddings are clustered and fare better; raise ``hnsw_ef_search``
or ``ivf_nprobe`` for more recall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

logger = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexSpec:
    """How to index vectors; see the module docstring for the trade-offs."""

    kind: str = "auto"
    """``auto`` (flat up to ``flat_max_rows``, else ivf), ``flat``, ``hnsw`` or ``ivf``."""
    flat_max_rows: int = 20_000
    """Largest set that ``auto`` indexes exactly."""
    hnsw_m: int = 32
    """HNSW graph degree (also of the IVF coarse quantizer)."""
    hnsw_ef_construction: int = 64
    """HNSW build-time beam width."""
    hnsw_ef_search: int = 64
    """HNSW search-time beam width (raised to at least k); also the IVF quantizer's."""
    ivf_list_size: int = 128
    """Average vectors per IVF list: nlist = n / ivf_list_size."""
    ivf_nprobe: int = 16
    """IVF lists scanned per query."""
    seed: int = 0
    """Seeds the choice of IVF centroids."""

    def resolve(self, n: int) -> str:
        """The concrete index kind for ``n`` vectors."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.flat_max_rows else "ivf"


def _hnsw(d: int, spec: IndexSpec) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec.hnsw_ef_construction
    index.hnsw.efSearch = spec.hnsw_ef_search
    return index


def build_index(vectors: np.ndarray, spec: IndexSpec, *, chunk: int = 50_000) -> faiss.Index:
    """Build and fill the index that ``spec`` chooses for ``vectors``.

    Args:
        vectors: float32 array ``(n, d)`` of unit rows.
        spec: The index choice.
        chunk: Vectors added per call (bounds temporary memory).

    Returns:
        A populated FAISS index using inner-product similarity.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    kind = spec.resolve(n)
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = _hnsw(d, spec)
    elif kind == "ivf":
        nlist = max(1, round(n / spec.ivf_list_size))
        quantizer = _hnsw(d, spec)
        quantizer.hnsw.efSearch = max(spec.hnsw_ef_search, 2 * spec.ivf_nprobe)
        rng = np.random.default_rng(spec.seed)
        quantizer.add(vectors[np.sort(rng.choice(n, size=nlist, replace=False))])
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # the sampled centroids stand in for k-means
        index.nprobe = min(spec.ivf_nprobe, nlist)
    else:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    for lo in range(0, n, chunk):
        index.add(vectors[lo : lo + chunk])
    logger.info("built %s index over %d vectors", kind, n)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int, *, chunk: int = 16_384):
    """Top-``k`` neighbours of each query, in chunks.

    Returns:
        ``(sims, ids)``, two arrays of shape ``(len(queries), k)``; missing
        neighbours have id -1.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(index.hnsw.efSearch, k)
    sims = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), chunk):
        sims[lo : lo + chunk], ids[lo : lo + chunk] = index.search(queries[lo : lo + chunk], k)
    return sims, ids


def neighbour_pairs(
    vectors: np.ndarray, threshold: float, k: int, spec: IndexSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs among ``vectors`` whose cosine similarity reaches ``threshold``.

    Each vector is compared with its ``k`` nearest neighbours, so a vector with
    more than ``k`` near-duplicates reports only ``k`` of them; union-find still
    joins them all into one cluster through the others.

    Args:
        vectors: float32 array ``(n, d)`` of unit rows.
        threshold: Cosine similarity in (0, 1].
        k: Neighbours searched per vector.
        spec: The index choice.

    Returns:
        ``(left, right, sims)``: pairs with ``left < right``, each pair once, with
        its similarity.
    """
    n = len(vectors)
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    index = build_index(vectors, spec)
    sims, ids = search(index, vectors, k + 1)
    rows = np.repeat(np.arange(n), ids.shape[1]).reshape(ids.shape)
    mask = (ids >= 0) & (ids != rows) & (sims >= threshold)
    left = np.minimum(rows[mask], ids[mask])
    right = np.maximum(rows[mask], ids[mask])
    pair_sims = sims[mask]
    _, first = np.unique(left * n + right, return_index=True)
    return left[first], right[first], pair_sims[first]
