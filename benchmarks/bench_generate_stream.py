"""Benchmark: datagen's generate stage (default config) vs a bare ``AsyncOpenAI`` sliding window.

Starts ``tests/helpers/latency_server.py`` as its own process on 127.0.0.1:
an OpenAI-compatible server whose latency per request is lognormal (median
``--median`` seconds, ``--sigma``) with ``--tail-share`` of requests at
``--tail-factor`` times the median (traces that run to ``max_tokens``). The
delay is a function of the request, so both clients meet the same latencies.

For each concurrency it runs, in one process, on the same requests:

- **bare**: ``AsyncOpenAI.chat.completions.create`` under one ``asyncio.Semaphore``
  over all requests (what a hand-written script would do);
- **datagen**: the real runner over a ``load, generate`` pipeline with
  ``teacher=openai`` pointed at the server and every other setting at its
  default (``load`` is run beforehand, so only ``generate`` is timed: request
  cache, shards, the stage's dataset included).

Then the same against an instant server (0 ms), where the client is the
limit, reporting process CPU per sample of both (``time.process_time`` of this
process, which does all the requests). Prints JSON; ``--save`` also writes it
to benchmarks/results/bench_generate_stream.json.

    python benchmarks/bench_generate_stream.py                      # ~2 minutes
    python benchmarks/bench_generate_stream.py --problems 2000 --instant-problems 2000  # issue
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "helpers" / "latency_server.py"
RESULT = ROOT / "benchmarks" / "results" / "bench_generate_stream.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


class Server:
    """The latency server in a subprocess (its CPU is not the client's)."""

    def __init__(self, median: float, sigma: float, tail_share: float, tail_factor: float) -> None:
        self.args = [
            f"--median={median}",
            f"--sigma={sigma}",
            f"--tail-share={tail_share}",
            f"--tail-factor={tail_factor}",
        ]

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), *self.args], stdout=subprocess.PIPE, text=True
        )
        port = int(self.proc.stdout.readline())  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def stats(self) -> dict:
        """The server's request counts (``GET /stats``)."""
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/stats") as resp:
            return json.loads(resp.read())

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def write_problems(path: Path, count: int) -> None:
    with open(path, "w") as fh:
        for i in range(count):
            row = {
                "id": f"p{i:06d}",
                "problem": f"What is {i} + {i + 1}?",
                "answer": str(2 * i + 1),
            }
            fh.write(json.dumps(row) + "\n")


def compose(overrides: list[str]):
    from datagen.compose import compose as compose_config
    from datagen.compose import resolve_config

    return resolve_config(compose_config(*overrides))


def overrides(source: Path, base_url: str, concurrency: int, n: int, stages: str) -> list[str]:
    """Only what pointing datagen at this server needs; everything else stays default."""
    return [
        "+pipeline=math",
        f"pipeline.stages=[{stages}]",
        f"source.path={source}",
        "teacher=openai",
        "teacher.model=bench",
        f"teacher.base_url={base_url}",
        "teacher.api_key_env=null",
        f"teacher.concurrency={concurrency}",
        f"generation.n={n}",
    ]


def run_datagen(source: Path, base_url: str, concurrency: int, n: int, tmp: Path) -> dict:
    from datagen.runner import Runner
    from datagen.stages import build_pipeline

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=tmp))
    load_cfg = compose(overrides(source, base_url, concurrency, n, "load"))
    Runner(load_cfg, run_dir, build_pipeline(["load"])).run()
    cfg = compose(overrides(source, base_url, concurrency, n, "load,generate"))
    runner = Runner(cfg, run_dir, build_pipeline(["load", "generate"]))
    started, cpu = time.perf_counter(), time.process_time()
    results = runner.run()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    gen = results[-1]
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"seconds": seconds, "cpu_s": cpu, "samples": gen.rows_out, "failed": gen.rows_set_aside}


def bodies_for(source: Path, base_url: str, concurrency: int, n: int, tmp: Path) -> list[dict]:
    """The very requests datagen sends: the problems as its load stage reads them (ids
    included: each sample's seed derives from its problem's id), same seeds and options.
    The server's latency is a function of prompt and seed, so both sides meet the same."""
    from datagen.records import Problem
    from datagen.runner import Runner
    from datagen.stages import build_pipeline
    from datagen.teachers.api import OpenAITeacher
    from datagen.views import open_part

    run_dir = Path(tempfile.mkdtemp(prefix="load-", dir=tmp))
    load_cfg = compose(overrides(source, base_url, concurrency, n, "load"))
    Runner(load_cfg, run_dir, build_pipeline(["load"])).run()
    loaded = open_part(str(run_dir / "stages" / "00_load" / "data"))
    problems = [Problem.from_row(row) for row in loaded]
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = compose(overrides(source, base_url, concurrency, n, "load,generate"))
    teacher = OpenAITeacher(cfg.teacher, None)
    seed = cfg.generation.seed if cfg.generation.seed is not None else cfg.run.seed
    requests = teacher.build_requests(problems, cfg.generation, seed)
    bodies = [teacher.build_body(r.messages, 1, r.seed, cfg.generation) for r in requests]
    teacher.close()
    return bodies


async def bare_loop(base_url: str, bodies: list[dict], concurrency: int) -> int:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> bool:
        async with sem:
            resp = await client.chat.completions.create(**body)
            return bool(resp.choices)

    done = await asyncio.gather(*(one(b) for b in bodies))
    await client.close()
    return sum(done)


def run_bare(base_url: str, bodies: list[dict], concurrency: int) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    samples = asyncio.run(bare_loop(base_url, bodies, concurrency))
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "samples": samples,
    }


def pooled(runs: list[dict]) -> dict:
    """One side over all its rounds: total samples over total seconds (and CPU)."""
    seconds = sum(r["seconds"] for r in runs)
    samples = sum(r["samples"] for r in runs)
    out = {
        "seconds": [round(r["seconds"], 3) for r in runs],
        "samples": samples,
        "samples_per_s": round(samples / seconds, 2),
        "cpu_ms_per_sample": round(1000 * sum(r["cpu_s"] for r in runs) / max(samples, 1), 3),
    }
    if "failed" in runs[0]:
        out["failed"] = sum(r["failed"] for r in runs)
    return out


def summarize(sides: dict[str, list[dict]]) -> dict:
    out = {name: pooled(runs) for name, runs in sides.items()}
    bare, ours = out["bare_asyncopenai"], out["datagen_generate"]
    out["ratio_samples_per_s"] = round(ours["samples_per_s"] / bare["samples_per_s"], 3)
    out["cpu_per_sample_ratio"] = round(ours["cpu_ms_per_sample"] / bare["cpu_ms_per_sample"], 3)
    out["ratio_per_round"] = [
        round(b["seconds"] / d["seconds"], 3)
        for b, d in zip(sides["bare_asyncopenai"], sides["datagen_generate"], strict=True)
    ]
    return out


def measure(args: argparse.Namespace, median: float, source: Path, tmp: Path) -> dict:
    """Each concurrency: ``args.rounds`` rounds, the sides' order rotating every round,
    so that load from other processes on the machine falls on every side alike."""
    out = {}
    with Server(median, args.sigma, args.tail_share, args.tail_factor) as server:
        url = server.base_url
        for conc in args.concurrency:
            bodies = bodies_for(source, url, conc, args.n, tmp)
            run_bare(url, bodies[: 2 * conc], conc)  # warm-up (imports, sockets)
            sides = {
                "bare_asyncopenai": lambda c=conc, b=bodies: run_bare(url, b, c),
                "datagen_generate": lambda c=conc: run_datagen(source, url, c, args.n, tmp),
            }
            runs: dict[str, list[dict]] = {name: [] for name in sides}
            names = list(sides)
            load = [os.getloadavg()[0]]
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    runs[name].append(sides[name]())
                load.append(os.getloadavg()[0])
            out[str(conc)] = {**summarize(runs), "load_average_1min": [round(x, 1) for x in load]}
            print(f"median={median} concurrency={conc}: {out[str(conc)]}", file=sys.stderr)
        # Both sides sent the same requests: the server saw no (prompt, seed) beyond them.
        distinct = server.stats()["distinct"]
        if distinct != len(bodies):
            raise SystemExit(
                f"the sides sent different requests: {distinct} distinct, {len(bodies)} expected"
            )
        out["distinct_requests_at_the_server"] = distinct
    return out


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--n", type=int, default=4, help="samples per problem (generation.n)")
    parser.add_argument("--median", type=float, default=0.2, help="seconds (as in the issue)")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--tail-share", type=float, default=0.05)
    parser.add_argument("--tail-factor", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--instant-problems", type=int, default=500)
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each side, alternating (default 2)"
    )
    parser.add_argument("--save", action="store_true", help=f"also write {RESULT}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import datasets

    datasets.disable_progress_bars()

    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        source = tmp / "problems.jsonl"
        write_problems(source, args.problems)
        latency = measure(args, args.median, source, tmp)
        instant_source = tmp / "instant.jsonl"
        write_problems(instant_source, args.instant_problems)
        instant = measure(args, 0.0, instant_source, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "benchmark": "generate_stage_vs_bare_asyncopenai",
        "server": (
            f"tests/helpers/latency_server.py on 127.0.0.1 (own process): lognormal "
            f"median {args.median}s sigma {args.sigma}, {args.tail_share:.0%} of requests "
            f"at {args.tail_factor}x the median"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "problems": args.problems,
        "n": args.n,
        "requests": args.problems * args.n,
        "datagen_config": "default (teacher=openai, only concurrency and n set)",
        "rounds": args.rounds,
        "method": (
            "each side runs `rounds` times per concurrency, the order rotating each round; "
            "samples/s and CPU pooled over the rounds"
        ),
        "commit": _commit(),
        "heavy_tailed": latency,
        "instant_server": {"requests": args.instant_problems * args.n, **instant},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(text + "\n")


if __name__ == "__main__":
    main()
