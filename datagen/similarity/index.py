"""FAISS indexes over unit vectors: choose one by size, self-join, query.

Cosine similarity is the inner product of L2-normalised vectors, so every
index here uses ``METRIC_INNER_PRODUCT``.

Which index (``kind="auto"``):

* up to ``flat_max_rows`` vectors, ``IndexFlatIP``: exact, but a self-join costs
  n² dot products (4e12 flops at 100k x 384: minutes on 2 cores);
* above that, for a near-duplicate threshold (at least ``lsh_min_threshold``),
  ``lsh``: random-hyperplane sign bits, ``lsh_tables`` tables of ``lsh_bits``
  bits each, in FAISS's ``IndexBinaryMultiHash``. Two vectors at cosine c agree
  on a bit with probability 1 - arccos(c)/pi, so a pair at 0.95 shares one
  20-bit table with probability 0.12, and at least one of 32 tables with 0.98
  (0.999 at 0.97). A random pair shares a table with probability 2^-20. Work
  per vector is constant, and the hash tables grow with n, so the self-join is
  about linear up to ~2^lsh_bits vectors. Candidates are re-scored by cosine.
* otherwise, ``ivf``: ``IndexIVFFlat`` with lists of about ``ivf_list_size``
  vectors and an HNSW coarse quantizer. The centroids are a random sample of the
  vectors, not k-means: k-means with n/128 centroids costs O(n²) to train;
* ``hnsw`` on request: ``IndexHNSWFlat`` over every vector.

Measured by ``benchmarks/bench_dedup.py`` (2 cores; docs/dedup.md): on random
unit vectors (dim 384) with planted near-copies at cosine 0.97, the ``lsh``
self-join took 4.3 s at 100k and 52 s at 1M (n log n predicts 12.0x; it grew
12.1x) with recall 0.9999; ``ivf`` took 17 s and 306 s (n^1.26) with recall
falling to 0.84. On 54k real prompt embeddings at threshold 0.95, ``lsh`` finds
99.8% of the pairs the exact index finds, ``ivf`` 99.99%. At lower thresholds
LSH needs fewer bits and then many more candidates, so ``auto`` uses ``ivf``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from datagen.similarity.embed import SEMANTIC_EXTRA

try:
    import faiss
except ImportError:  # the [semantic] extra; build_index says so, preflight checks first
    faiss = None

logger = logging.getLogger(__name__)


INDEX_KINDS = ("auto", "flat", "hnsw", "ivf", "lsh")


@dataclass(frozen=True)
class IndexSpec:
    """How to index vectors; see the module docstring for the trade-offs."""

    kind: str = "auto"
    """``auto`` (see :meth:`resolve`), ``flat``, ``hnsw``, ``ivf`` or ``lsh``."""
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
    lsh_tables: int = 32
    """LSH hash tables; more raise recall and cost."""
    lsh_bits: int = 20
    """Sign bits per LSH table; fewer raise recall and the candidates per query."""
    lsh_min_threshold: float = 0.94
    """Lowest threshold at which ``auto`` picks ``lsh`` for a large set."""
    seed: int = 0
    """Seeds the choice of IVF centroids and the LSH hyperplanes."""

    def problem(self, prefix: str = "") -> str | None:
        """The first invalid field as ``"<prefix><field> must ..."``, or None.

        The owner passes its key (``"dedup.index."``) so the message names the full key.
        """
        if self.kind not in INDEX_KINDS:
            return f"{prefix}kind must be one of {INDEX_KINDS}, got {self.kind!r}"
        positive = ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_list_size")
        for name in (*positive, "ivf_nprobe", "lsh_tables", "lsh_bits"):
            if getattr(self, name) < 1:
                return f"{prefix}{name} must be >= 1, got {getattr(self, name)}"
        if (self.lsh_tables * self.lsh_bits) % 8:
            return (
                f"{prefix}lsh_tables * {prefix}lsh_bits must be a multiple of 8, "
                f"got {self.lsh_tables} * {self.lsh_bits}"
            )
        if self.flat_max_rows < 0:
            return f"{prefix}flat_max_rows must be >= 0, got {self.flat_max_rows}"
        return None

    def resolve(self, n: int, threshold: float | None = None) -> str:
        """The concrete index kind for ``n`` vectors searched at ``threshold``."""
        if self.kind != "auto":
            return self.kind
        if n <= self.flat_max_rows:
            return "flat"
        high = threshold is not None and threshold >= self.lsh_min_threshold
        return "lsh" if high else "ivf"


class LshIndex:
    """Random-hyperplane LSH over unit vectors, answering like a FAISS index.

    Sign bits of random projections are packed into binary codes and stored in
    FAISS's ``IndexBinaryMultiHash`` (one hash table per ``bits``-bit slice).
    A search gathers the vectors that share a slice with the query, keeps the
    ``k`` nearest in Hamming distance, and returns their cosine similarities.
    """

    def __init__(self, d: int, tables: int, bits: int, seed: int = 0) -> None:
        if (tables * bits) % 8:
            raise ValueError(f"lsh_tables * lsh_bits must be a multiple of 8, got {tables * bits}")
        _need_faiss()
        rng = np.random.default_rng(seed)
        self.planes = rng.standard_normal((d, tables * bits), dtype=np.float32)
        self.codes = faiss.IndexBinaryMultiHash(tables * bits, tables, bits)
        self._parts: list[np.ndarray] = []  # the vectors, to re-score candidates by cosine

    @property
    def vectors(self) -> np.ndarray:
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        return self._parts[0]

    @property
    def ntotal(self) -> int:
        return self.codes.ntotal

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.packbits(x @ self.planes > 0, axis=1)

    def add(self, x: np.ndarray) -> None:
        self.codes.add(self.encode(x))
        self._parts.append(x)

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        _, ids = self.codes.search(self.encode(x), k)
        sims = np.empty(ids.shape, dtype=np.float32)  # cosine of each candidate; -inf for none
        ptr = faiss.swig_ptr
        faiss.fvec_inner_products_by_idx(
            ptr(sims), ptr(x), ptr(self.vectors), ptr(ids), x.shape[1], len(x), ids.shape[1]
        )
        order = np.argsort(-sims, axis=1, kind="stable")
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def _hnsw(d: int, spec: IndexSpec) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = spec.hnsw_ef_construction
    index.hnsw.efSearch = spec.hnsw_ef_search
    return index


def _need_faiss() -> None:
    if faiss is None:
        raise ImportError(f"embedding similarity needs faiss: {SEMANTIC_EXTRA}")


def build_index(
    vectors: np.ndarray,
    spec: IndexSpec,
    *,
    threshold: float | None = None,
    chunk: int = 50_000,
) -> faiss.Index | LshIndex:
    """Build and fill the index that ``spec`` chooses for ``vectors``.

    Args:
        vectors: float32 array ``(n, d)`` of unit rows.
        spec: The index choice.
        threshold: The similarity the caller will search for (lets ``auto`` pick ``lsh``).
        chunk: Vectors added per call (bounds temporary memory).

    Returns:
        A populated FAISS index using inner-product similarity.
    """
    _need_faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    kind = spec.resolve(n, threshold)
    if kind == "flat":
        index: faiss.Index | LshIndex = faiss.IndexFlatIP(d)
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
    elif kind == "lsh":
        index = LshIndex(d, spec.lsh_tables, spec.lsh_bits, spec.seed)
    else:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    for lo in range(0, n, chunk):
        index.add(vectors[lo : lo + chunk])
    logger.info("built %s index over %d vectors", kind, n)
    return index


def search(index: faiss.Index | LshIndex, queries: np.ndarray, k: int, *, chunk: int = 16_384):
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
    index = build_index(vectors, spec, threshold=threshold)
    sims, ids = search(index, vectors, k + 1)
    rows = np.repeat(np.arange(n), ids.shape[1]).reshape(ids.shape)
    mask = (ids >= 0) & (ids != rows) & (sims >= threshold)
    left = np.minimum(rows[mask], ids[mask])
    right = np.maximum(rows[mask], ids[mask])
    pair_sims = sims[mask]
    _, first = np.unique(left * n + right, return_index=True)
    return left[first], right[first], pair_sims[first]
