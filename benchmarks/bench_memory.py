"""Peak memory and time per sample of the whole math pipeline, from 10k to 1M samples.

Each size runs in a fresh process: ``load, decontaminate, dedup, generate, verify,
filter, emit`` (``+pipeline=math``) plus the run report, with the replay teacher
serving traces from a generated file. The inputs are written to a temporary
folder first (by another process, so generating them is not measured):

- problems: arithmetic word problems with integer or fraction answers; 2% are
  repeated word for word under another id (dedup sets them aside) and 1% are
  MATH-500 problems (decontaminate sets them aside);
- traces: ``generation.n`` per problem, about 8 KB each with heavy-tailed lengths
  (lognormal, clipped to 0.5-64 KB), reasoning sentences ending in a boxed answer
  that is right about 60% of the time, missing in 3% (filtered as unanswered); so
  math-verify parses every trace, the filter looks at every text, and emit pairs.

Peak RSS is of the whole process tree (the run and its math-verify workers: a
forked worker's copy-on-write pages of the run count in its RSS too), sampled every
0.1 s, overall and per stage; beside it the tree's anonymous RSS, the run process's
own anonymous and file-backed RSS (memory-mapped Arrow pages it has read, which
``datagen.pages`` reclaims every second), and the tree's PSS (shared pages counted
once, every 0.5 s). Prints JSON (and writes it with
``--out``): per size the peak RSS, wall seconds and seconds per sample of every
stage, and per metric the growth exponent (least-squares slope of log value
against log size; 0 is flat). Disk: about 6x the traces' size while a size runs
(traces, stage copies, outputs); each size's folder is removed afterwards.

    python benchmarks/bench_memory.py                      # 2k and 10k samples
    python benchmarks/bench_memory.py --sizes 10000 100000 1000000 \\
        --out benchmarks/results/bench_memory.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
N = 4
"""Samples per problem."""
DUPLICATE_SHARE = 0.02
CONTAMINATED_SHARE = 0.01
UNANSWERED_SHARE = 0.03
CORRECT_SHARE = 0.6
MEDIAN_CHARS = 6700
SIGMA = 0.6
VOCABULARY = """first then next so therefore thus we note that the value of term is equal to
multiply add subtract divide both sides by check again carefully simplify expression gives
result so far which means this step factor out common and substitute back into original
equation consider case where let denote sum product quotient remainder integer fraction
numerator denominator compute verify recall since because hence it follows"""


def sentence_pool(rng: random.Random, size: int = 20000) -> list[str]:
    """Reasoning sentences with numbers in them (varied enough not to look like a loop)."""
    vocabulary = VOCABULARY.split()
    pool = []
    for _ in range(size):
        words = rng.choices(vocabulary, k=rng.randint(8, 18))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words)), str(rng.randint(2, 9999)))
        pool.append(" ".join(words).capitalize() + ".")
    return pool


def problem_text(rng: random.Random, a: int, b: int, c: int, d: int, pool: list[str]) -> str:
    context = " ".join(rng.choices(pool, k=rng.randint(1, 5)))
    return (
        f"{context} A crate holds {a} boxes of {b} items, and {c} more items are shared "
        f"equally by {d} people. Compute ${a} \\times {b} + \\frac{{{c}}}{{{d}}}$."
    )


def answer_of(a: int, b: int, c: int, d: int) -> str:
    from fractions import Fraction

    value = Fraction(a * b) + Fraction(c, d)
    return (
        str(value.numerator)
        if value.denominator == 1
        else f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
    )


def generate_inputs(folder: Path, samples: int, seed: int = 0) -> dict[str, Any]:
    """Write ``problems.jsonl`` and ``traces.jsonl`` for ``samples`` generated samples."""
    rng = random.Random(seed)
    pool = sentence_pool(rng)
    clean = samples // N
    bench = [
        json.loads(line)
        for line in (ROOT / "data" / "benchmarks" / "math500.jsonl").read_text().splitlines()
        if line.strip()
    ]
    trace_bytes = 0
    with (
        open(folder / "problems.jsonl", "w", encoding="utf-8") as problems,
        open(folder / "traces.jsonl", "w", encoding="utf-8") as traces,
    ):
        for i in range(clean):
            a, b, c, d = (
                rng.randint(2, 999),
                rng.randint(2, 99),
                rng.randint(1, 999),
                rng.randint(2, 12),
            )
            text = f"Problem {i}. " + problem_text(rng, a, b, c, d, pool)
            answer = answer_of(a, b, c, d)
            row = {"id": f"p{i}", "problem": text, "answer": answer, "source": "synthetic"}
            problems.write(json.dumps(row) + "\n")
            if rng.random() < DUPLICATE_SHARE:
                problems.write(json.dumps({**row, "id": f"p{i}-again"}) + "\n")
            if rng.random() < CONTAMINATED_SHARE:
                leak = bench[rng.randrange(len(bench))]
                leak_row = {"id": f"leak{i}", "problem": leak["problem"], "answer": leak["answer"]}
                problems.write(json.dumps(leak_row) + "\n")
            for k in range(N):
                chars = min(64000, max(500, int(rng.lognormvariate(math.log(MEDIAN_CHARS), SIGMA))))
                body = " ".join(rng.choices(pool, k=max(1, chars // 90)))
                roll = rng.random()
                if roll < UNANSWERED_SHARE:
                    ending = ""
                elif roll < UNANSWERED_SHARE + CORRECT_SHARE:
                    ending = f" The answer is $\\boxed{{{answer}}}$."
                else:
                    ending = f" The answer is $\\boxed{{{a * b + rng.randint(1, 50)}}}$."
                response = body + ending
                trace_bytes += len(response)
                trace = {"problem": text, "response": response, "sample_idx": k}
                traces.write(json.dumps(trace) + "\n")
    return {"problems": clean, "traces": clean * N, "trace_bytes": trace_bytes}


def status_kb(pid: int) -> dict[str, int]:
    """``VmRSS``, ``RssAnon`` and ``RssFile`` of ``/proc/PID/status``, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = 1024 * int(value.split()[0])
    return fields


METRICS = ("rss", "anon", "main_anon", "main_file", "pss")
"""Per stage: the tree's RSS and anonymous RSS (every process's sum), the run process's
own anonymous and file-backed RSS, and the tree's PSS (shared pages counted once)."""


def tree_sample(proc: psutil.Process, with_pss: bool) -> dict[str, int]:
    """One reading of :data:`METRICS` for ``proc`` and all its descendants."""
    out = dict.fromkeys(METRICS, 0)
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, OSError, ValueError):  # a worker that just exited
            fields = status_kb(p.pid)
            out["rss"] += fields["VmRSS"]
            out["anon"] += fields["RssAnon"]
            if p.pid == proc.pid:
                out["main_anon"] = fields["RssAnon"]
                out["main_file"] = fields["RssFile"]
            if with_pss:
                out["pss"] += p.memory_full_info().pss
    return out


class StagePeaks(logging.Handler):
    """Peaks of :data:`METRICS` between the runner's "stage X: ... in, ..." log lines,
    sampled every 0.1 s (PSS, which reads every mapping, every 0.5 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.proc = psutil.Process()
        self.peak = dict.fromkeys(METRICS, 0)
        self.overall = dict.fromkeys(METRICS, 0)
        self.stages: dict[str, dict[str, int]] = {}
        self._mu = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        ticks = 0
        while not self.done.wait(0.1):
            ticks += 1
            now = tree_sample(self.proc, with_pss=ticks % 5 == 0)
            with self._mu:
                for k, v in now.items():
                    self.peak[k] = max(self.peak[k], v)
                    self.overall[k] = max(self.overall[k], v)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("stage ") and " in, " in msg:
            self.take(msg.split()[1].rstrip(":"))

    def take(self, name: str) -> None:
        now = tree_sample(self.proc, with_pss=False)
        with self._mu:
            self.stages[name] = {k: max(self.peak[k], now.get(k, 0)) for k in METRICS}
            self.peak = dict.fromkeys(METRICS, 0)


def run_pipeline(folder: Path) -> dict[str, Any]:
    """Run the math pipeline over ``folder``'s inputs (in this process); its measurements."""
    from hydra import compose, initialize_config_dir

    from datagen.__main__ import run

    peaks = StagePeaks()
    logging.getLogger("datagen.runner").addHandler(peaks)
    logging.getLogger("datagen.runner").setLevel(logging.INFO)
    run_dir = folder / "run"
    overrides = [
        "+pipeline=math",
        f"source.path={folder / 'problems.jsonl'}",
        "source.metadata_fields=[source]",
        "teacher=replay",
        f"teacher.path={folder / 'traces.jsonl'}",
        "teacher.order_field=sample_idx",
        f"generation.n={N}",
        f"decontam.benchmark_dir={ROOT / 'data' / 'benchmarks'}",
        "run.progress=false",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=overrides)
    started = time.monotonic()
    summary = run(cfg, run_dir)
    total = time.monotonic() - started
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    stage_seconds = {name: entry["seconds"] for name, entry in manifest.items()}
    peaks.take("report")  # summary and report after the last stage
    peaks.done.set()
    stage_seconds["report"] = round(total - sum(stage_seconds.values()), 3)
    disk = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    return {
        "wall_s": round(total, 3),
        "peak_rss_bytes": peaks.overall["rss"],
        "peak_pss_bytes": peaks.overall["pss"],
        "peak_anon_rss_bytes": peaks.overall["anon"],
        "peak_main_anon_bytes": peaks.overall["main_anon"],
        "peak_main_file_bytes": peaks.overall["main_file"],
        "stage_seconds": stage_seconds,
        "stage_peak_rss_bytes": {k: v["rss"] for k, v in peaks.stages.items()},
        "stage_peaks_bytes": peaks.stages,
        "rows": {
            name: [e["rows_in"], e["rows_out"], e["rows_set_aside"]] for name, e in manifest.items()
        },
        "outputs": {k: summary.get(k) for k in ("sft_positive", "sft_negative", "redi_pairs")},
        "run_dir_bytes": disk,
    }


def child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.child == "inputs":
        print(json.dumps(generate_inputs(folder, args.samples)))
    else:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(run_pipeline(folder)))


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    var = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / var, 3) if var else None


def measure(samples: int, workdir: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-memory-{samples}-", dir=workdir))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        started = time.monotonic()
        made = subprocess.run(
            [*me, "--child", "inputs", "--folder", str(folder), "--samples", str(samples)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        inputs = json.loads(made.stdout) | {"seconds": round(time.monotonic() - started, 1)}
        done = subprocess.run(
            [*me, "--child", "run", "--folder", str(folder)],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode:
            raise RuntimeError(f"run of {samples} samples failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    per_sample = {k: v / samples for k, v in result["stage_seconds"].items()}
    return {"samples": samples, "inputs": inputs, **result, "stage_seconds_per_sample": per_sample}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = [r["samples"] for r in runs]
    stages = list(runs[0]["stage_seconds"])
    exponents = {
        "peak_rss": slope(sizes, [r["peak_rss_bytes"] for r in runs]),
        "peak_pss": slope(sizes, [r["peak_pss_bytes"] for r in runs]),
        "peak_anon_rss": slope(sizes, [r["peak_anon_rss_bytes"] for r in runs]),
        "wall": slope(sizes, [r["wall_s"] for r in runs]),
        "stage_seconds": {s: slope(sizes, [r["stage_seconds"][s] for r in runs]) for s in stages},
        "stage_seconds_per_sample": {
            s: slope(sizes, [r["stage_seconds_per_sample"][s] for r in runs]) for s in stages
        },
        "stage_peak_rss": {
            s: slope(sizes, [r["stage_peak_rss_bytes"].get(s, 0) for r in runs]) for s in stages
        },
    }
    per_sample = [r["wall_s"] / r["samples"] for r in runs]
    ratios = {
        s: round(
            max(r["stage_seconds_per_sample"][s] for r in runs)
            / max(min(r["stage_seconds_per_sample"][s] for r in runs), 1e-9),
            3,
        )
        for s in stages
    }
    return {
        "stage_seconds_per_sample_max_over_min": ratios,
        "exponents": exponents,
        "wall_s_per_sample_ratio_largest_to_smallest": round(per_sample[-1] / per_sample[0], 3),
        "peak_rss_gb_at_largest": round(runs[-1]["peak_rss_bytes"] / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--previous", type=Path, help="a results JSON whose runs (other sizes) are kept"
    )
    parser.add_argument("--child", choices=["inputs", "run"])
    parser.add_argument("--folder")
    parser.add_argument("--samples", type=int)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs: list[dict[str, Any]] = []
    if args.previous:
        kept = json.loads(args.previous.read_text())["runs"]
        runs = [r for r in kept if r["samples"] not in args.sizes]
    report: dict[str, Any] = {
        "pipeline": "math (load, decontaminate, dedup, generate, verify, filter, emit) + report",
        "teacher": "replay",
        "samples_per_problem": N,
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    for size in sorted(args.sizes):
        runs.append(measure(size, Path(args.workdir)))
        runs.sort(key=lambda r: r["samples"])
        report.update(summarise(runs))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
        if args.out:  # written after each size, so a long run keeps what it measured
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
