"""Match texts against a fixed set of reference items (benchmark questions).

Three methods, cheapest first; :meth:`LeakIndex.match` reports the first
that fires:

* ``exact``: equal letters and digits (punctuation, case and spacing ignored);
  ``exact_nodigits``: equal letters only, so a restatement with new numbers
  matches. Keys shorter than ``min_key_chars`` letters are not used for the
  digit-stripped match, since short questions collide by chance.
* ``ngram``: shared word n-grams. An n-gram found in more than ``max_items``
  reference items is boilerplate ("put your final answer within boxed") and is
  ignored. The score is the overlap coefficient: shared n-grams over the
  smaller of the two texts' n-gram counts.
* ``embedding``: cosine similarity of sentence embeddings to the nearest item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from datagen.similarity.index import IndexSpec, build_index, search
from datagen.similarity.text import alnum_key, normalise, template_key, word_ngrams, words

LEAK_METHODS = ("exact", "ngram", "embedding")


@dataclass(frozen=True)
class Item:
    """One reference item: the set it belongs to, its id and its text."""

    group: str
    id: str
    text: str


@dataclass(frozen=True)
class Match:
    """Evidence that a text leaks an item."""

    group: str
    item: str
    method: str
    score: float
    shared: int | None = None
    """Shared n-grams (``ngram`` method only)."""
    position: int = -1
    """Index of the item in :attr:`LeakIndex.items`."""


class LeakIndex:
    """Exact keys, n-grams and (optionally) embeddings of reference items.

    Args:
        items: The reference items.
        methods: Which of :data:`LEAK_METHODS` to run, in that order.
        ngram: Word n-gram length.
        max_items: Ignore n-grams that occur in more than this many items.
        min_overlap: Smallest n-gram overlap coefficient that counts as a leak
            (0: any shared n-gram).
        strip_digits: Also match with digits removed (``exact_nodigits``).
        min_key_chars: Shortest letters-only key used for ``exact_nodigits``.
        embed: Function from normalised texts to unit vectors (needed for ``embedding``).
        threshold: Cosine similarity at or above which ``embedding`` reports a leak.

    Example:
        >>> idx = LeakIndex([Item("b", "1", "Find the sum of all primes below 10.")])
        >>> idx.match(["find the sum of all primes below 10"])[0].method
        'exact'
    """

    def __init__(
        self,
        items: Sequence[Item],
        *,
        methods: Sequence[str] = ("exact", "ngram"),
        ngram: int = 13,
        max_items: int = 3,
        min_overlap: float = 0.2,
        strip_digits: bool = True,
        min_key_chars: int = 40,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        threshold: float = 0.9,
    ) -> None:
        unknown = set(methods) - set(LEAK_METHODS)
        if unknown:
            raise ValueError(f"unknown leak methods {sorted(unknown)}; known: {LEAK_METHODS}")
        if "embedding" in methods and embed is None:
            raise ValueError("the embedding method needs an embed function")
        self.items = list(items)
        self.methods = tuple(m for m in LEAK_METHODS if m in methods)
        self.n = ngram
        self.min_overlap = min_overlap
        self.strip_digits = strip_digits
        self.min_key_chars = min_key_chars
        self.threshold = threshold
        self.embed = embed
        self.exact: dict[str, int] = {}
        self.template: dict[str, int] = {}
        self.grams: dict[tuple[str, ...], list[int]] = {}
        self.gram_counts: list[int] = []
        for i, item in enumerate(self.items):
            self.exact.setdefault(alnum_key(item.text), i)
            key = template_key(item.text)
            if len(key) >= min_key_chars:
                self.template.setdefault(key, i)
        if "ngram" in self.methods:
            self._index_ngrams(max_items)
        self.index = None
        if "embedding" in self.methods and self.items:
            vectors = embed([normalise(it.text) for it in self.items])  # type: ignore[misc]
            self.index = build_index(vectors, IndexSpec(kind="flat"))

    def _index_ngrams(self, max_items: int) -> None:
        owners: dict[tuple[str, ...], list[int]] = {}
        for i, item in enumerate(self.items):
            grams = word_ngrams(words(item.text), self.n)
            self.gram_counts.append(len(grams))
            for gram in grams:
                owners.setdefault(gram, []).append(i)
        self.grams = {g: own for g, own in owners.items() if len(own) <= max_items}

    def match_one(self, text: str) -> Match | None:
        """The first exact or n-gram match of one text (embeddings need :meth:`match`)."""
        if "exact" in self.methods:
            hit = self.exact.get(alnum_key(text))
            if hit is not None:
                return self._match(hit, "exact", 1.0)
            key = template_key(text)
            if self.strip_digits and len(key) >= self.min_key_chars and key in self.template:
                return self._match(self.template[key], "exact_nodigits", 1.0)
        if "ngram" in self.methods:
            grams = word_ngrams(words(text), self.n)
            shared: Counter[int] = Counter()
            for gram in grams:
                for owner in self.grams.get(gram, ()):
                    shared[owner] += 1
            if shared:
                best, count = max(shared.items(), key=lambda kv: (kv[1], -kv[0]))
                overlap = count / max(1, min(len(grams), self.gram_counts[best]))
                if overlap >= self.min_overlap:
                    return self._match(best, "ngram", round(overlap, 4), shared=count)
        return None

    def match(self, texts: Sequence[str]) -> list[Match | None]:
        """The first match of each text, running the embedding method on the rest in one batch.

        Args:
            texts: The texts to check.

        Returns:
            One :class:`Match` or None per text, in order.
        """
        out = [self.match_one(t) for t in texts]
        rest = [i for i, m in enumerate(out) if m is None]
        if self.index is not None and rest:
            vectors = self.embed([normalise(texts[i]) for i in rest])  # type: ignore[misc]
            sims, ids = search(self.index, vectors, 1)
            for i, sim, best in zip(rest, sims[:, 0].tolist(), ids[:, 0].tolist(), strict=True):
                if best >= 0 and sim >= self.threshold:
                    out[i] = self._match(best, "embedding", round(sim, 4))
        return out

    def _match(self, i: int, method: str, score: float, shared: int | None = None) -> Match:
        item = self.items[i]
        return Match(item.group, item.id, method, score, shared, i)
