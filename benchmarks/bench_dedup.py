"""Benchmark: semantic dedup at 100k real prompts and FAISS search up to 1M vectors.

Prints one JSON object. Two parts, each run in its own subprocess so that peak
memory (``ru_maxrss``) is measured per part:

``text``
    A pool of ``--rows`` prompts (default 100k) built from ``../shared/data``
    (read directly from that folder, which is not bundled: benchmarks do not run
    in CI). Every training prompt of math/, code/ and general/ once, plus planted
    variants of random base prompts until the pool is full:

    - ``whitespace``, ``case``: caught by normalisation, never embedded;
    - ``reorder``: sentences rotated (or comma clauses swapped);
    - ``prefix``: an instruction wrapper added ("Solve the following problem: ...");
    - ``numbers``: every number changed (a templated sibling; arguably a different
      problem, so reported but not counted as a miss).

    Runs the real ``dedup`` stage function (``method=semantic``, default config, a
    fresh embedding cache unless ``--cache-dir``) and reports embedding time,
    index-and-search time, the non-embedding share of the stage, peak memory and
    recall per variant type; then reruns it on the warm cache, alone and with
    the stage's MinHash pass (``dedup.minhash.enabled=true``); then runs a MinHash-LSH
    baseline (datasketch, word 3-gram shingles, Jaccard 0.7, 128 permutations)
    on the same pool.

    Also: a threshold sweep (recall and unplanted merges at other thresholds,
    from the warm cache) and, on the same vectors, the pairs found by the ``ivf``,
    ``hnsw`` and ``lsh`` indexes as a share of those the exact ``flat`` index finds.

``vectors``
    ``--vectors`` sizes (default 100k, 200k, 500k, 1M) of random unit vectors
    (dim 384), 1% of them planted near-copies (cosine ~0.97) of other rows; the
    self-join (k=16) with the index that ``dedup.index.kind=auto`` picks at that size
    and the default threshold (``lsh``; ``--vector-index ivf`` for the other
    one), plus ``hnsw`` at ``--hnsw-at`` for comparison. Reports build and
    search time (wall and CPU), peak memory, recall of planted pairs, and the
    log-log slope of time against n (1.0 is linear; n log n from 100k to 1M is
    about 1.08).

Usage::

    python benchmarks/bench_dedup.py                       # both parts (slow: see README)
    python benchmarks/bench_dedup.py --parts text --rows 5000
    python benchmarks/bench_dedup.py --parts vectors --vectors 100000,200000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SOURCES = {
    "math/math_train.jsonl": "problem",
    "math/gsm8k_train.jsonl": "problem",
    "math/aime_1983_2023.jsonl": "problem",
    "code/leetcode_train.jsonl": "problem",
    "code/mbpp_train.jsonl": "problem",
    "code/codenet_atcoder_stdin.jsonl": "problem",
    "general/oasst_prompts.jsonl": "prompt",
    "general/self_instruct_seed_prompts.jsonl": "prompt",
}
VARIANT_SHARE = {"whitespace": 0.25, "case": 0.25, "reorder": 0.17, "prefix": 0.17, "numbers": 0.16}
PREFIXES = [
    "Solve the following problem: ",
    "Please answer the question below.\n",
    "Question: ",
    "Think step by step. ",
]
NEAR_DUP_TYPES = ("reorder", "prefix")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the text pool ---------------------------------------------------------------
def load_base(data: Path) -> list[str]:
    texts = []
    for rel, field in SOURCES.items():
        with open(data / rel, encoding="utf-8") as fh:
            texts += [json.loads(line)[field] for line in fh if line.strip()]
    return texts


def whitespace(text: str, rng: random.Random) -> str:
    parts = text.split(" ")
    for _ in range(3):
        i = rng.randrange(len(parts))
        parts[i] = parts[i] + rng.choice(["  ", "\n", "\t"])
    return "  " + " ".join(parts) + " \n"


def case(text: str, rng: random.Random) -> str:
    return rng.choice([str.upper, str.lower, str.title])(text)


def reorder(text: str, rng: random.Random) -> str | None:
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    if len(sentences) >= 2:
        return " ".join([sentences[-1], *sentences[:-1]])
    clauses = text.split(", ")
    if len(clauses) >= 2:
        i = rng.randrange(len(clauses) - 1)
        clauses[i], clauses[i + 1] = clauses[i + 1], clauses[i]
        return ", ".join(clauses)
    return None


def prefix(text: str, rng: random.Random) -> str:
    return rng.choice(PREFIXES) + text


def numbers(text: str, rng: random.Random) -> str | None:
    if not re.search(r"\d", text):
        return None
    out = re.sub(r"\d+", lambda m: str(rng.randint(2, 10 ** len(m.group()) - 1)), text)
    return out if out != text else None


MAKERS = {
    "whitespace": whitespace,
    "case": case,
    "reorder": reorder,
    "prefix": prefix,
    "numbers": numbers,
}


def build_pool(data: Path, rows: int, seed: int = 0) -> tuple[list[str], list[tuple[str, int]]]:
    """Texts, and per text (kind, base position); base rows have kind ``base``."""
    rng = random.Random(seed)
    base = load_base(data)
    rng.shuffle(base)
    base = base[: max(1, min(len(base), rows // 5))] if rows < 5 * len(base) else base
    texts = list(base)
    labels: list[tuple[str, int]] = [("base", i) for i in range(len(base))]
    budget = rows - len(texts)
    kinds = list(VARIANT_SHARE)
    for kind in kinds:
        want = round(budget * VARIANT_SHARE[kind]) if kind != kinds[-1] else rows - len(texts)
        made = 0
        while made < want:
            b = rng.randrange(len(base))
            variant = MAKERS[kind](base[b], rng)
            if variant is None or variant == base[b]:
                continue
            texts.append(variant)
            labels.append((kind, b))
            made += 1
    return texts, labels


def recall_by_kind(labels: list[tuple[str, int]], cluster_of: list[int]) -> dict[str, float]:
    """Share of planted variants that ended up in their base prompt's cluster."""
    hits: dict[str, list[int]] = {}
    for pos, (kind, b) in enumerate(labels):
        if kind != "base":
            hits.setdefault(kind, []).append(int(cluster_of[pos] == cluster_of[b]))
    return {k: round(sum(v) / len(v), 4) for k, v in hits.items()}


def origin(labels: list[tuple[str, int]], pos: int) -> int:
    """The base prompt a row was made from (itself for a base row)."""
    kind, b = labels[pos]
    return pos if kind == "base" else b


def unplanted_removals(labels, cluster_of) -> int:
    """Removed rows whose source prompt differs from their cluster's kept row's.

    Counts merges of two different prompts of the source data. Some are real
    duplicates already in the data (MATH train holds many AIME problems, GSM8K
    has near-identical items), so it bounds false positives from above.
    """
    kept: dict[int, int] = {}
    count = 0
    for pos in range(len(labels)):
        head = kept.setdefault(cluster_of[pos], pos)
        count += head != pos and origin(labels, head) != origin(labels, pos)
    return count


def unplanted_examples(texts, labels, cluster_of, limit: int = 6) -> list[list[str]]:
    """A few (kept, removed) text pairs from different source prompts."""
    kept: dict[int, int] = {}
    out = []
    for pos in range(len(labels)):
        head = kept.setdefault(cluster_of[pos], pos)
        if head != pos and origin(labels, head) != origin(labels, pos):
            out.append([texts[head][:160], texts[pos][:160]])
            if len(out) >= limit:
                break
    return out


def threshold_sweep(texts, labels, cache: Path, thresholds: list[float]) -> dict:
    """Recall and unplanted removals at other thresholds (vectors from the warm cache)."""
    from datagen.similarity import Embedder, find_duplicates

    emb = Embedder(cache_dir=cache)
    out = {}
    for t in thresholds:
        found = find_duplicates(texts, embed=emb.encode, threshold=t)
        clusters = [found.kept[i] for i in range(len(texts))]
        out[str(t)] = {
            "recall": recall_by_kind(labels, clusters),
            "unplanted_removals": unplanted_removals(labels, clusters),
            "removed": len(found.removed()),
        }
    emb.close()
    return out


def compare_indexes(texts, cache: Path, threshold: float, k: int) -> dict:
    """Pairs found by ivf, hnsw and lsh as a share of those the exact flat index finds."""
    from datagen.similarity import Embedder, IndexSpec, neighbour_pairs, normalise

    uniq = list(dict.fromkeys(normalise(t) for t in texts))
    emb = Embedder(cache_dir=cache)
    vectors = emb.encode(uniq)
    emb.close()
    found, seconds = {}, {}
    for kind in ("flat", "ivf", "hnsw", "lsh"):
        started = time.monotonic()
        left, right, _ = neighbour_pairs(vectors, threshold, k, IndexSpec(kind=kind))
        seconds[kind] = round(time.monotonic() - started, 2)
        found[kind] = set(zip(left.tolist(), right.tolist(), strict=True))
    exact = found["flat"]
    return {
        "distinct_texts": len(uniq),
        "pairs_flat": len(exact),
        "seconds": seconds,
        "recall_vs_flat": {
            kind: round(len(found[kind] & exact) / max(1, len(exact)), 4)
            for kind in ("ivf", "hnsw", "lsh")
        },
    }


def run_stage(texts, cache_dir: Path, **overrides):
    from datagen.records import Problem
    from datagen.similarity import EmbeddingSpec
    from datagen.stages.base import StageContext
    from datagen.stages.dedup import DedupConfig, dedup

    batch = [
        Problem(id=str(i), source="bench", domain="math", messages=[{"role": "user", "content": t}])
        for i, t in enumerate(texts)
    ]
    cfg = DedupConfig(
        method="semantic", embedding=EmbeddingSpec(cache_dir=str(cache_dir)), **overrides
    )
    ctx = StageContext(
        config=SimpleNamespace(run=SimpleNamespace(progress=False)), run_dir=cache_dir
    )
    started = time.monotonic()
    dedup(batch, ctx, cfg={"dedup": cfg})
    total = time.monotonic() - started
    stats = dict(ctx.stats["dedup"])
    for res in ctx.resources.values():  # the embedder: cache hits vs texts embedded now
        stats["cache_hits"], stats["embedded_now"] = res.stats["cache_hits"], res.stats["embedded"]
    ctx.close()
    cluster_of = [int(p.metadata.get("cluster", p.id)) for p in batch]
    return total, stats, cluster_of, cfg


def run_minhash(texts, threshold: float = 0.7, num_perm: int = 128):
    """The MinHash baseline alone: normalised repeats, then datasketch MinHash LSH."""
    from datagen.similarity import MinHashSpec, find_duplicates

    started = time.monotonic()
    found = find_duplicates(texts, minhash=MinHashSpec(threshold=threshold, num_perm=num_perm))
    return time.monotonic() - started, found.kept


def part_text(args) -> dict:
    data = Path(args.data)
    texts, labels = build_pool(data, args.rows, seed=args.seed)
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="emb-"))
    total, stats, clusters, cfg = run_stage(texts, cache)
    embed_s = stats.get("embed_seconds", 0.0)
    out = {
        "rows": len(texts),
        "data": str(data),
        "kinds": {k: sum(1 for x, _ in labels if x == k) for k in ["base", *VARIANT_SHARE]},
        "config": {
            "threshold": cfg.threshold,
            "model": cfg.embedding.model,
            "index": cfg.index.kind,
        },
        "stage_seconds": round(total, 2),
        "embedding_seconds": round(embed_s, 2),
        "embedded_texts": stats.get("embedded_texts"),
        "embedded_now": stats.get("embedded_now"),
        "embedding_cache_hits": stats.get("cache_hits"),
        "embedding_texts_per_second": round(stats.get("embedded_now", 0) / max(embed_s, 1e-9), 1),
        "index_and_search_seconds": round(stats.get("search_seconds", 0.0), 2),
        "non_embedding_share": round((total - embed_s) / total, 4) if total else None,
        "removed": {k: stats.get(k) for k in ("exact", "normalised", "semantic")},
        "clusters": stats.get("clusters"),
        "recall": recall_by_kind(labels, clusters),
        "unplanted_removals": unplanted_removals(labels, clusters),
        "unplanted_examples": unplanted_examples(texts, labels, clusters),
        "peak_rss_mb_after_stage": round(peak_rss_mb(), 1),
    }
    total2, stats2, _, _ = run_stage(texts, cache)
    out["rerun_warm_cache"] = {
        "stage_seconds": round(total2, 2),
        "embedding_seconds_incl_cache_reads": round(stats2.get("embed_seconds", 0.0), 2),
    }
    from datagen.similarity import MinHashSpec

    total3, stats3, clusters3, _ = run_stage(texts, cache, minhash=MinHashSpec())
    out["semantic_plus_minhash"] = {
        "config": "dedup.minhash.enabled=true (jaccard>=0.7, word 3-grams, 128 perms), warm cache",
        "stage_seconds": round(total3, 2),
        "minhash_seconds": round(stats3.get("minhash_seconds", 0.0), 2),
        "removed": {k: stats3.get(k) for k in ("exact", "normalised", "semantic", "minhash")},
        "recall": recall_by_kind(labels, clusters3),
        "unplanted_removals": unplanted_removals(labels, clusters3),
    }
    mh_seconds, mh_clusters = run_minhash(texts)
    out["minhash_baseline"] = {
        "method": "datasketch MinHashLSH, word 3-gram shingles, jaccard>=0.7, 128 perms",
        "seconds": round(mh_seconds, 2),
        "recall": recall_by_kind(labels, mh_clusters),
        "unplanted_removals": unplanted_removals(labels, mh_clusters),
    }
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["threshold_sweep"] = threshold_sweep(texts, labels, cache, [0.85, 0.9, 0.92, 0.95, 0.98])
    if args.compare_indexes:
        out["index_comparison"] = compare_indexes(texts, cache, cfg.threshold, cfg.neighbours)
    return out


# -- random vectors ----------------------------------------------------------------
def part_vectors(args) -> dict:
    import numpy as np

    from datagen.similarity import IndexSpec, build_index, search
    from datagen.stages.dedup import DedupConfig

    n, dim = args.n, 384
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    planted = n // 100
    src = rng.choice(n - planted, size=planted, replace=False)
    noise = rng.standard_normal((planted, dim), dtype=np.float32) * 0.012
    x[n - planted :] = x[src] + noise
    x[n - planted :] /= np.linalg.norm(x[n - planted :], axis=1, keepdims=True)
    cfg = DedupConfig(method="semantic", index=IndexSpec(kind=args.vector_index))
    spec = cfg.index
    rss_before = peak_rss_mb()
    started, cpu = time.monotonic(), time.process_time()
    index = build_index(x, spec, threshold=cfg.threshold)
    build_s, build_cpu = time.monotonic() - started, time.process_time() - cpu
    started, cpu = time.monotonic(), time.process_time()
    sims, ids = search(index, x, cfg.neighbours + 1)
    search_s, search_cpu = time.monotonic() - started, time.process_time() - cpu
    hit = (ids[n - planted :] == src[:, None]) & (sims[n - planted :] >= cfg.threshold)
    kind = spec.resolve(n, cfg.threshold)
    detail = {
        "lsh": f"LSH {spec.lsh_tables} tables x {spec.lsh_bits} bits (IndexBinaryMultiHash)",
        "ivf": f"IVFFlat list_size={spec.ivf_list_size} nprobe={spec.ivf_nprobe}, HNSW quantizer",
        "hnsw": f"HNSWFlat M={spec.hnsw_m} efConstruction={spec.hnsw_ef_construction}",
        "flat": "IndexFlatIP",
    }[kind]
    return {
        "n": n,
        "dim": dim,
        "index": detail,
        "k": cfg.neighbours,
        "build_seconds": round(build_s, 2),
        "search_seconds": round(search_s, 2),
        "index_and_search_seconds": round(build_s + search_s, 2),
        "index_and_search_cpu_seconds": round(build_cpu + search_cpu, 2),
        "planted_pairs": planted,
        "planted_cosine_mean": round(float((x[n - planted :] * x[src]).sum(1).mean()), 4),
        "recall_planted": round(float(hit.any(axis=1).mean()), 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "vectors_mb": round(x.nbytes / 2**20, 1),
        "rss_before_index_mb": round(rss_before, 1),
    }


def slope(points: list[dict], key: str) -> dict:
    """Log-log slope of ``key`` against n, and ``key`` / (n log n) relative to the smallest n."""
    pts = sorted(points, key=lambda p: p["n"])
    if len(pts) < 2:
        return {}
    xs = [math.log(p["n"]) for p in pts]
    ys = [math.log(p[key]) for p in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    fit = cov / sum((a - mx) ** 2 for a in xs)
    n0, t0 = pts[0]["n"], pts[0][key]
    n1 = pts[-1]["n"]
    nlogn = math.log((n1 * math.log(n1)) / (n0 * math.log(n0))) / math.log(n1 / n0)
    return {
        "of": key,
        "loglog_slope": round(fit, 3),
        "n_log_n_would_be": round(nlogn, 3),
        "relative_to_n_log_n": {
            p["n"]: round((p[key] / t0) / (p["n"] * math.log(p["n"]) / (n0 * math.log(n0))), 3)
            for p in pts
        },
    }


def run_part(args, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *extra, "--data", args.data, "--seed", str(args.seed)]
    if "--vector-index" not in extra:
        cmd += ["--vector-index", args.vector_index]
    if not args.compare_indexes:
        cmd += ["--no-compare-indexes"]
    if args.cache_dir:
        cmd += ["--cache-dir", args.cache_dir]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "cmd": " ".join(extra)}
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "cmd": " ".join(extra)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--parts", default="text,vectors")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--vectors", default="100000,200000,500000,1000000")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--cache-dir", default=None, help="embedding cache (default: a fresh temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per subprocess")
    ap.add_argument(
        "--vector-index", default="auto", help="index kind for the vectors part (auto: as dedup)"
    )
    ap.add_argument("--hnsw-at", type=int, default=100_000, help="also time hnsw at this n (0: no)")
    ap.add_argument("--no-compare-indexes", dest="compare_indexes", action="store_false")
    ap.add_argument("--part", choices=["text", "vectors"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part == "text":
        print(json.dumps(part_text(args)))
        return
    if args.part == "vectors":
        print(json.dumps(part_vectors(args)))
        return
    result: dict = {"benchmark": "bench_dedup", "cpus": os.cpu_count()}
    parts = args.parts.split(",")
    if "text" in parts:
        result["text"] = run_part(args, ["--part", "text", "--rows", str(args.rows)], args.timeout)
    if "vectors" in parts:
        curve = []
        for n in [int(v) for v in args.vectors.split(",") if v]:
            point = run_part(args, ["--part", "vectors", "--n", str(n)], args.timeout)
            curve.append(point)
            print(json.dumps({"progress": point}), file=sys.stderr, flush=True)
            if "error" in point:
                break
        ok = [p for p in curve if "error" not in p]
        result["vectors"] = {
            "curve": curve,
            "scaling_wall": slope(ok, "index_and_search_seconds"),
            "scaling_cpu": slope(ok, "index_and_search_cpu_seconds"),
        }
        if args.hnsw_at:
            extra = ["--part", "vectors", "--n", str(args.hnsw_at), "--vector-index", "hnsw"]
            result["vectors"]["hnsw_for_comparison"] = run_part(args, extra, args.timeout)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
