"""Exact-size subsets drawn by seed, with an optional per-domain mix.

Rows are ranked by a hash of ``(seed, row id)`` and taken from the top, so a
subset is reproducible, does not depend on row order, and the subset of size
``n`` is contained in the one of size ``n + 1`` for the same seed. The kept
rows stay in their original order (a prompt's rows stay together).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from datagen.config import ConfigError
from datagen.records import column_values, content_hash


def allocate(total: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Split ``total`` rows over domains by share, rounding so the parts sum to ``total``.

    Largest remainders get the leftover rows (ties: domain name order).

    >>> allocate(10, {"math": 0.7, "code": 0.3})
    {'code': 3, 'math': 7}
    >>> allocate(3, {"math": 0.5, "code": 0.5})
    {'code': 2, 'math': 1}
    """
    exact = {d: total * share for d, share in sorted(mix.items())}
    counts = {d: math.floor(v) for d, v in exact.items()}
    leftover = total - sum(counts.values())
    for d in sorted(exact, key=lambda d: (counts[d] - exact[d], d))[:leftover]:
        counts[d] += 1
    return counts


def largest_total(available: Mapping[str, int], mix: Mapping[str, float]) -> int:
    """The most rows a subset with this mix can hold, given the rows per domain."""
    total = min(math.floor(available.get(d, 0) / share) for d, share in mix.items())
    while total > 0 and any(n > available.get(d, 0) for d, n in allocate(total, mix).items()):
        total -= 1
    return total


def take_subset(
    ds: datasets.Dataset,
    size: int | None,
    mix: Mapping[str, float] | None,
    seed: int,
    name: str,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Draw exactly ``size`` rows (split by ``mix`` over domains) from ``ds``.

    Args:
        ds: An output dataset with ``id`` and ``domain`` columns.
        size: Rows wanted (None: all, or the largest set that fits ``mix``).
        mix: Share per domain, summing to 1 (None or empty: no mix).
        seed: ``run.seed``.
        name: The output's name, for messages.

    Returns:
        The subset and what was drawn (empty stats when nothing was asked).

    Raises:
        ConfigError: Fewer rows (of some domain) than asked for.
    """
    if size is None and not mix:
        return ds, {}
    ids = column_values(ds, "id")
    order = sorted(range(len(ds)), key=lambda i: content_hash(seed, ids[i]))
    domains = column_values(ds, "domain")
    if mix:
        available = Counter(domains)
        total = size if size is not None else largest_total(available, mix)
        want = allocate(total, mix)
        for domain, n in want.items():
            if n > available.get(domain, 0):
                raise ConfigError(
                    f"output: {name} needs {n} {domain} rows for size {total} and mix "
                    f"{dict(mix)}, but only {available.get(domain, 0)} were built; lower "
                    f"output.subset_sizes.{name} or change output.domain_mix (rerunning "
                    "resumes at emit)"
                )
        taken: Counter[str] = Counter()
        picked = []
        for i in order:
            if taken[domains[i]] < want.get(domains[i], 0):
                taken[domains[i]] += 1
                picked.append(i)
    else:
        total = size if size is not None else len(ds)
        if total > len(ds):
            raise ConfigError(
                f"output.subset_sizes.{name}={total}, but only {len(ds)} rows were built; "
                "lower it or generate more (rerunning resumes at emit)"
            )
        picked = order[:total]
    subset = ds.select(sorted(picked))
    return subset, {
        "subset_of": len(ds),
        "rows": len(subset),
        "by_domain": dict(sorted(Counter(column_values(subset, "domain")).items())),
        "seed": seed,
    }


DOMAINS_FOLDER = "domains"
"""Where an output folder keeps one Parquet file per domain (its per-domain configs)."""


def domain_data_files(ds: datasets.Dataset) -> dict[str, str]:
    """Domain -> data file of its config, when ``ds`` holds rows of two or more domains.

    A card config can only point at files, so each domain gets its own file and
    ``load_dataset(folder, "math")`` reads that domain's rows alone.
    """
    found = sorted(set(column_values(ds, "domain"))) if len(ds) else []
    if len(found) < 2:
        return {}
    return {d: f"{DOMAINS_FOLDER}/{d}.parquet" for d in found}


def write_domain_files(ds: datasets.Dataset, folder: Path) -> None:
    """Write the files :func:`domain_data_files` names (nothing for a one-domain output)."""
    files = domain_data_files(ds)
    if not files:
        return
    (folder / DOMAINS_FOLDER).mkdir(parents=True, exist_ok=True)
    domains = column_values(ds, "domain")
    for domain, path in files.items():
        rows = [i for i, d in enumerate(domains) if d == domain]
        ds.select(rows).to_parquet(str(folder / path))
