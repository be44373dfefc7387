"""Near-duplicate pairs by word-shingle Jaccard, estimated with MinHash LSH (datasketch).

A complement to embeddings, not a replacement. On 100k real prompts
(``benchmarks/bench_dedup.py``), all-MiniLM-L6-v2 at cosine 0.95 put 67% of
prompts whose sentences were reordered with their source, and MinHash at
Jaccard 0.7 put 97%; for an added instruction the order was reversed (97% and
93%). Shingles are local, so moving whole sentences keeps most of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datagen.similarity.embed import MINHASH_EXTRA
from datagen.similarity.text import word_ngrams, words


@dataclass(frozen=True)
class MinHashSpec:
    """MinHash LSH settings."""

    enabled: bool = True
    """Run the pass (``dedup.minhash.enabled``; a config carries the settings switched off)."""
    threshold: float = 0.7
    """Estimated Jaccard similarity at or above which two texts are duplicates."""
    ngram: int = 3
    """Shingle length in words (a text shorter than this is one shingle)."""
    num_perm: int = 128
    """Hash permutations: more estimate Jaccard more precisely, at more cost."""
    seed: int = 1


def signatures(texts: Sequence[str], spec: MinHashSpec) -> list:
    """One datasketch ``LeanMinHash`` per text, over its word ``ngram``-shingles."""
    try:
        from datasketch import LeanMinHash, MinHash
    except ImportError as exc:
        raise ImportError(f"the MinHash pass needs {MINHASH_EXTRA} ({exc})") from exc

    sets = []
    for text in texts:
        toks = words(text)
        grams = {" ".join(g) for g in word_ngrams(toks, spec.ngram)} or {" ".join(toks)}
        sets.append([g.encode("utf-8") for g in grams])
    return [LeanMinHash(m) for m in MinHash.bulk(sets, num_perm=spec.num_perm, seed=spec.seed)]


def minhash_pairs(
    texts: Sequence[str], spec: MinHashSpec
) -> tuple[list[tuple[int, int, float]], list]:
    """All pairs ``(i, j, jaccard_estimate)`` with ``i < j`` at or above ``spec.threshold``.

    LSH proposes candidates; each is confirmed on its signature estimate, so a
    pair LSH proposes below the threshold is dropped.

    Returns:
        The pairs, and the signatures (to score other pairs of the same texts).
    """
    from datasketch import MinHashLSH

    sigs = signatures(texts, spec)
    lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
    with lsh.insertion_session() as session:
        for i, sig in enumerate(sigs):
            session.insert(i, sig, check_duplication=False)
    pairs = []
    for i, sig in enumerate(sigs):
        for j in lsh.query(sig):
            if j > i:
                est = sig.jaccard(sigs[j])
                if est >= spec.threshold:
                    pairs.append((i, j, round(float(est), 4)))
    return pairs, sigs
