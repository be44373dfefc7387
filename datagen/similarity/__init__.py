"""Text similarity machinery that knows nothing about the pipeline.

* :mod:`~datagen.similarity.text`: normalisation, exact keys, word n-grams, shingles.
* :mod:`~datagen.similarity.embed`: sentence embeddings with an on-disk cache.
* :mod:`~datagen.similarity.index`: FAISS index choice (flat / HNSW / IVF), self-join.
* :mod:`~datagen.similarity.minhash`: word-shingle MinHash LSH pairs (datasketch).
* :mod:`~datagen.similarity.unionfind`: union-find.
* :mod:`~datagen.similarity.cluster`: duplicate clusters and the member to keep.
* :mod:`~datagen.similarity.leaks`: matching texts against benchmark items.

The stages ``dedup`` and ``decontaminate`` are thin adapters over these.
"""

from __future__ import annotations

from datagen.similarity.cluster import Duplicates, find_duplicates
from datagen.similarity.embed import (
    DEFAULT_MODEL,
    Embedder,
    EmbeddingCache,
    EmbeddingSpec,
    resolve_model,
)
from datagen.similarity.index import INDEX_KINDS, IndexSpec, build_index, neighbour_pairs, search
from datagen.similarity.leaks import LEAK_METHODS, Item, LeakIndex, Match
from datagen.similarity.minhash import MinHashSpec, minhash_pairs
from datagen.similarity.text import (
    alnum_key,
    jaccard,
    normalise,
    shingles,
    template_key,
    text_hash,
    word_ngrams,
    words,
)
from datagen.similarity.unionfind import UnionFind

__all__ = [
    "DEFAULT_MODEL",
    "INDEX_KINDS",
    "LEAK_METHODS",
    "Duplicates",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingSpec",
    "IndexSpec",
    "Item",
    "LeakIndex",
    "Match",
    "MinHashSpec",
    "UnionFind",
    "alnum_key",
    "build_index",
    "find_duplicates",
    "jaccard",
    "minhash_pairs",
    "neighbour_pairs",
    "normalise",
    "resolve_model",
    "search",
    "shingles",
    "template_key",
    "text_hash",
    "word_ngrams",
    "words",
]
