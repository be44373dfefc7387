"""Cheap text keys: normalisation, exact-match keys, word n-grams, shingles.

These run before any model: exact and normalised duplicates are removed for
the price of a hash, and benchmark leaks that survive only punctuation or
number changes are caught without embeddings.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9]+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NON_ALPHA = re.compile(r"[^a-z]+")


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a text.

    Args:
        text: Any string.

    Returns:
        The NFKC form, lower-cased, with runs of whitespace collapsed to one space.

    Example:
        >>> normalise("  What is  2+2?\\n")
        'what is 2+2?'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", text).strip()


def alnum_key(text: str) -> str:
    """Letters and digits only: equal for texts that differ in punctuation or spacing.

    Example:
        >>> alnum_key("Find $x$, if x+1 = 2.") == alnum_key("find x if x + 1=2")
        True
    """
    return _NON_ALNUM.sub("", normalise(text))


def template_key(text: str) -> str:
    """Letters only: equal for texts that differ in numbers, punctuation or spacing.

    This is the "digit-and-punctuation-stripped" key: a benchmark item restated
    with new numbers has the same key. Short texts collide by chance, so callers
    should require a minimum key length.

    Example:
        >>> template_key("What is 3+5?") == template_key("what is 17 + 2 ?")
        True
    """
    return _NON_ALPHA.sub("", normalise(text))


def words(text: str) -> list[str]:
    """Lower-case alphanumeric word tokens.

    Example:
        >>> words("Let $f(x)=x^2$.")
        ['let', 'f', 'x', 'x', '2']
    """
    return _WORD.findall(normalise(text))


def word_ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    """All contiguous word n-grams of ``tokens`` (none when it is shorter than ``n``).

    Example:
        >>> sorted(word_ngrams(["a", "b", "c"], 2))
        [('a', 'b'), ('b', 'c')]
    """
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def shingles(text: str, n: int = 5) -> set[int]:
    """Hashed word n-grams of a text (the whole text when shorter), for Jaccard similarity."""
    toks = words(text)
    if len(toks) < n:
        return {hash(tuple(toks))} if toks else set()
    return {hash(g) for g in word_ngrams(toks, n)}


def jaccard(a: set[int], b: set[int]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets).

    Example:
        >>> jaccard({1, 2, 3}, {2, 3, 4})
        0.5
    """
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def text_hash(text: str, namespace: str = "") -> str:
    """Hex SHA-256 of ``namespace`` and ``text``: the embedding cache key."""
    h = hashlib.sha256(namespace.encode("utf-8"))
    h.update(b"\0")
    h.update(text.encode("utf-8"))
    return h.hexdigest()[:32]


def group_by_key(keys: Iterable[str]) -> dict[str, list[int]]:
    """Positions of each distinct key, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups
