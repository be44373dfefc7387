"""Union-find over row positions: duplicate pairs in, clusters out."""

from __future__ import annotations

from collections.abc import Iterable


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size.

    Example:
        >>> uf = UnionFind(4)
        >>> uf.union(0, 2); uf.union(2, 3)
        >>> sorted(map(sorted, uf.groups()))
        [[0, 2, 3], [1]]
    """

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        """The representative of ``x``'s set."""
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def union_all(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Merge every pair."""
        for a, b in pairs:
            self.union(int(a), int(b))

    def groups(self, min_size: int = 1) -> list[list[int]]:
        """Sets with at least ``min_size`` members, each sorted, ordered by first member."""
        by_root: dict[int, list[int]] = {}
        for x in range(len(self.parent)):
            by_root.setdefault(self.find(x), []).append(x)
        return [g for g in by_root.values() if len(g) >= min_size]
