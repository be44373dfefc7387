"""Stage ``decontaminate``: set aside prompts that leak benchmark items.

A prompt is contaminated when it matches an item of a configured benchmark by
one of ``decontam.methods`` (cheapest first; the first that fires is reported):

* ``exact``: same letters and digits as the item (punctuation, case, spacing
  ignored), or, with ``strip_digits``, the same letters only, which catches an
  item restated with new numbers (``exact_nodigits``);
* ``ngram``: shares word ``ngram``-grams with the item, covering at least
  ``ngram_min_overlap`` of the smaller text's n-grams. N-grams found in more than
  ``ngram_max_items`` benchmark items are boilerplate and ignored;
* ``embedding``: cosine similarity of sentence embeddings at least
  ``embedding_threshold``.

Each removed row keeps ``metadata["contamination"] = {benchmark, item, method,
score, item_text}`` (``shared`` too for n-grams). :func:`write_decontam_report`
lists every contaminated row for the run report.

Measured on ``../shared/data`` (``tests/test_decontaminate.py``): with 13-grams,
the GPT-3 rule (any shared n-gram) flags 125 of the 975 AIME 1983-2023 problems
against AIME 2024/2025 and HMMT 2024/2025, which cannot contain them (shared
phrasing such as "where m and n are relatively prime positive integers"), and
30 against MATH-500, of which 10 are real. An overlap of at least 0.2 keeps all
10 and leaves 2 false alarms; 0.3 would lose 2 real ones. Embeddings at 0.9
flag none of MATH train against GSM8K test, and none of old AIME against the
2024/2025 sets; light paraphrases score 0.85-0.97, so they catch some, not all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datagen.config import ConfigError
from datagen.records import DOMAINS, Problem, arrow_rows, content_hash
from datagen.similarity import LEAK_METHODS, EmbeddingSpec, Item, LeakIndex
from datagen.sources import resolve_path
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.stages.dedup import RENAMED_EMBEDDING, get_embedder
from datagen.views import open_part

logger = logging.getLogger(__name__)

CONSUMES = ("messages",)
PRODUCES = ("keep", "reject_reason", "metadata")

ITEM_TEXT_CHARS = 300
"""Benchmark text kept in each row's evidence (enough to eyeball the match)."""


@dataclass(frozen=True)
class DecontamConfig:
    """Benchmark decontamination (``conf/decontam/*.yaml``)."""

    benchmark_dir: str = "data/benchmarks"
    """Folder of ``NAME.jsonl`` files with ``id`` and ``problem`` fields."""
    benchmarks: list[str] = field(default_factory=list)
    """Benchmark file stems in ``benchmark_dir``, or paths to ``.jsonl`` files elsewhere,
    checked against every problem whatever its domain (empty: none)."""
    by_domain: dict[str, list[str]] | None = None
    """More benchmarks per domain (e.g. ``{math: [math500], code: [humaneval]}``): a problem
    is checked against its own domain's list plus ``benchmarks``. None: ``benchmarks`` only.
    ``decontam=mix`` lists the bundled sets of all three domains."""
    methods: list[str] = field(default_factory=lambda: ["exact", "ngram"])
    """Any of ``exact``, ``ngram``, ``embedding`` (run in that order)."""
    ngram: int = 13
    """Word n-gram length (13 and 32 are common; 8 catches more, with more false alarms)."""
    ngram_max_items: int = 3
    """Ignore n-grams that occur in more than this many benchmark items (boilerplate)."""
    ngram_min_overlap: float = 0.2
    """Shared n-grams over the smaller text's n-gram count needed to flag a prompt
    (0: any shared n-gram, the GPT-3 rule)."""
    strip_digits: bool = True
    """``exact`` also compares letters only, so restated items with new numbers match."""
    min_template_chars: int = 40
    """Shortest letters-only text compared with digits stripped (short texts collide)."""
    embedding_threshold: float = 0.9
    """Cosine similarity at or above which ``embedding`` flags a prompt."""
    embedding: EmbeddingSpec = field(default_factory=EmbeddingSpec)
    """The model for the ``embedding`` method (the same group as ``dedup.embedding``;
    the default loads offline)."""

    RENAMED: ClassVar[dict[str, str]] = RENAMED_EMBEDDING
    """Old key -> new key (relative to ``decontam``)."""

    def for_domain(self, domain: str) -> list[str]:
        """The benchmarks a problem of ``domain`` is checked against (each once)."""
        return list(dict.fromkeys([*(self.by_domain or {}).get(domain, []), *self.benchmarks]))

    def __post_init__(self) -> None:
        unknown_domains = sorted(set(self.by_domain or {}) - set(DOMAINS))
        if unknown_domains:
            raise ConfigError(
                f"decontam.by_domain: unknown domain(s) {unknown_domains}; use {DOMAINS}"
            )
        unknown = sorted(set(self.methods) - set(LEAK_METHODS))
        if unknown:
            raise ConfigError(f"decontam.methods: unknown {unknown}; choose from {LEAK_METHODS}")
        if self.ngram < 3:
            raise ConfigError(f"decontam.ngram must be >= 3, got {self.ngram}")
        if self.ngram_max_items < 1:
            raise ConfigError(f"decontam.ngram_max_items must be >= 1, got {self.ngram_max_items}")
        if not 0.0 <= self.ngram_min_overlap <= 1.0:
            raise ConfigError(
                f"decontam.ngram_min_overlap must be in [0, 1], got {self.ngram_min_overlap}"
            )
        if not 0.0 < self.embedding_threshold <= 1.0:
            raise ConfigError(
                f"decontam.embedding_threshold must be in (0, 1], got {self.embedding_threshold}"
            )
        problem = self.embedding.problem("decontam.embedding.")
        if problem:
            raise ConfigError(problem)


def benchmark_path(cfg: DecontamConfig, name: str) -> Path:
    """The file for benchmark ``name`` (a stem in ``benchmark_dir`` or a path)."""
    if name.endswith(".jsonl") or "/" in name:
        path = resolve_path(name)
        if path is None:
            raise ConfigError(f"decontam.benchmarks: no such file: {name}")
        return path
    folder = resolve_path(cfg.benchmark_dir)
    if folder is None:
        raise ConfigError(f"decontam.benchmark_dir: no such folder: {cfg.benchmark_dir}")
    path = folder / f"{name}.jsonl"
    if not path.exists():
        choices = sorted(p.stem for p in folder.glob("*.jsonl"))
        raise ConfigError(
            f"decontam.benchmarks: no file {path} for benchmark {name!r}; "
            f"bundled: {choices}, or give a path to a .jsonl file"
        )
    return path


def load_benchmarks(cfg: DecontamConfig, names: list[str] | None = None) -> list[Item]:
    """Every item of the benchmarks ``names`` (default: ``benchmarks``), as ``Item(...)``."""
    items = []
    for name in cfg.benchmarks if names is None else names:
        path = benchmark_path(cfg, name)
        group = path.stem if ("/" in name or name.endswith(".jsonl")) else name
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if line.strip():
                    row = json.loads(line)
                    items.append(Item(group, str(row.get("id", i)), str(row["problem"])))
    return items


def build_leak_index(
    cfg: DecontamConfig, ctx: StageContext, names: list[str] | None = None
) -> LeakIndex:
    """The index of benchmarks ``names`` (default: ``benchmarks``); embeddings from the cache."""
    embed = None
    if "embedding" in cfg.methods:
        embed = get_embedder(ctx, cfg.embedding).encode
    names = list(cfg.benchmarks) if names is None else names
    items = load_benchmarks(cfg, names)
    logger.info("decontaminate: %d items from %d benchmarks", len(items), len(names))
    return LeakIndex(
        items,
        methods=cfg.methods,
        ngram=cfg.ngram,
        max_items=cfg.ngram_max_items,
        min_overlap=cfg.ngram_min_overlap,
        strip_digits=cfg.strip_digits,
        min_key_chars=cfg.min_template_chars,
        embed=embed,
        threshold=cfg.embedding_threshold,
    )


def decontaminate(batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Problem]:
    """Mark every problem that matches a configured benchmark item.

    Args:
        batch: Problems (any batch size; the benchmark index is built once per process).
        ctx: Supplies the index and embedder, and receives the counters.
        cfg: ``{"decontam": DecontamConfig}``.

    Returns:
        The same rows; leaks get ``keep=False``, ``reject_reason``
        ``contaminated: BENCHMARK (METHOD)`` and ``metadata["contamination"]``.
    """
    dcfg: DecontamConfig = cfg["decontam"]
    by_names: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(batch):  # each problem against its own domain's benchmarks
        by_names.setdefault(tuple(dcfg.for_domain(p.domain)), []).append(i)
    for names, rows in by_names.items():
        if names:
            _mark_leaks([batch[i] for i in rows], list(names), dcfg, ctx)
    return batch


def _mark_leaks(
    batch: list[Problem], names: list[str], dcfg: DecontamConfig, ctx: StageContext
) -> None:
    key = f"decontam_index:{content_hash(asdict(dcfg), names)}"
    index: LeakIndex = ctx.resource(key, lambda: build_leak_index(dcfg, ctx, names))
    matches = index.match([p.prompt for p in batch])
    for problem, hit in zip(batch, matches, strict=True):
        if hit is None:
            continue
        evidence: dict[str, Any] = {
            "benchmark": hit.group,
            "item": hit.item,
            "method": hit.method,
            "score": hit.score,
            "item_text": index.items[hit.position].text[:ITEM_TEXT_CHARS],
        }
        if hit.shared is not None:
            evidence["shared"] = hit.shared
        problem.keep = False
        problem.reject_reason = f"contaminated: {hit.group} ({hit.method})"
        problem.metadata["contamination"] = evidence
        ctx.count("decontaminate", f"{hit.group}:{hit.method}")


def write_decontam_report(stage_dir: Path, max_chars: int = 300) -> dict[str, Any]:
    """List every contaminated row of a finished stage; write ``contaminated.jsonl``.

    Args:
        stage_dir: ``RUN_DIR/stages/NN_decontaminate``.
        max_chars: Prompt text is cut to this length.

    Returns:
        ``{"contaminated": n, "by_benchmark": {...}, "by_method": {...}, "items": [...]}``,
        where each item is ``{id, source, prompt, benchmark, item, method, score,
        item_text}``; the items are also written, one per line, to
        ``stage_dir / "contaminated.jsonl"``.
    """

    stage_dir = Path(stage_dir)
    aside = open_part(Path(stage_dir) / "contaminated")
    items = []
    by_benchmark: dict[str, int] = {}
    by_method: dict[str, int] = {}
    for row in arrow_rows(aside):
        p = Problem.from_row(row)
        ev = p.metadata.get("contamination", {})
        by_benchmark[ev.get("benchmark", "?")] = by_benchmark.get(ev.get("benchmark", "?"), 0) + 1
        by_method[ev.get("method", "?")] = by_method.get(ev.get("method", "?"), 0) + 1
        items.append({"id": p.id, "source": p.source, "prompt": p.prompt[:max_chars], **ev})
    with open(stage_dir / "contaminated.jsonl", "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    return {
        "contaminated": len(items),
        "by_benchmark": by_benchmark,
        "by_method": by_method,
        "items": items,
    }


register_stage(
    Stage(
        "decontaminate",
        decontaminate,
        "problem",
        "problem",
        ("decontam",),
        writes=PRODUCES,
        side_name="contaminated",
        report=lambda stage_dir, config: write_decontam_report(stage_dir),
        report_key="contamination_report",
        sections={"decontam": DecontamConfig},
    )
)
