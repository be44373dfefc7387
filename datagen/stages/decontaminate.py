"""Stage ``decontaminate``: set aside prompts that leak benchmark items.

A prompt is contaminated when its normalised text equals a benchmark item's,
or when it shares a word n-gram with one. Each removed row records the
benchmark, the item and the method that matched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from datagen.config import ConfigError
from datagen.records import Problem
from datagen.sources import resolve_path
from datagen.stages.base import StageContext


@dataclass(frozen=True)
class DecontamConfig:
    benchmark_dir: str = "data/benchmarks"
    """Folder of ``NAME.jsonl`` files with a ``problem`` field."""
    benchmarks: list[str] = field(default_factory=list)
    """Benchmark file stems to check against (empty: no decontamination)."""
    ngram: int = 13
    """Word n-gram length; a shared n-gram marks a leak (13 is a common choice)."""

    def __post_init__(self) -> None:
        if self.ngram < 3:
            raise ConfigError(f"decontam.ngram must be >= 3, got {self.ngram}")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def load_benchmarks(cfg: DecontamConfig) -> list[tuple[str, str, str]]:
    """Return (benchmark, item id, text) for every configured benchmark item."""
    folder = resolve_path(cfg.benchmark_dir)
    if folder is None and cfg.benchmarks:
        raise ConfigError(f"decontam.benchmark_dir: no such folder: {cfg.benchmark_dir}")
    items = []
    for name in cfg.benchmarks:
        path = folder / f"{name}.jsonl"  # type: ignore[operator]
        if not path.exists():
            raise ConfigError(f"decontam.benchmarks: no file {path} for benchmark {name!r}")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                row = json.loads(line)
                items.append((name, str(row.get("id", i)), str(row["problem"])))
    return items


class NgramIndex:
    """Benchmark n-grams and normalised texts, built once per process."""

    def __init__(self, cfg: DecontamConfig) -> None:
        self.n = cfg.ngram
        self.exact: dict[str, tuple[str, str]] = {}
        self.grams: dict[tuple[str, ...], tuple[str, str]] = {}
        for bench, item, text in load_benchmarks(cfg):
            toks = words(text)
            self.exact.setdefault(" ".join(toks), (bench, item))
            for gram in ngrams(toks, self.n):
                self.grams.setdefault(gram, (bench, item))

    def match(self, text: str) -> dict[str, Any] | None:
        toks = words(text)
        hit = self.exact.get(" ".join(toks))
        if hit:
            return {"benchmark": hit[0], "item": hit[1], "method": "exact", "score": 1.0}
        for gram in ngrams(toks, self.n):
            if gram in self.grams:
                bench, item = self.grams[gram]
                return {"benchmark": bench, "item": item, "method": f"{self.n}-gram", "score": 1.0}
        return None


def decontaminate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Mark every problem that matches a configured benchmark item."""
    dcfg: DecontamConfig = cfg["decontam"]
    if not dcfg.benchmarks:
        return batch
    index = ctx.resource("decontam_index", lambda: NgramIndex(dcfg))
    for problem in batch:
        hit = index.match(problem.prompt)
        if hit:
            problem.keep = False
            problem.reject_reason = f"contaminated: {hit['benchmark']} ({hit['method']})"
            problem.metadata["contamination"] = hit
    return batch
