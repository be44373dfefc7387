"""Benchmark: the whole math pipeline, local executor vs Ray with 1 and 2 actors per stage.

The teacher is ``tests/helpers/latency_server.py`` run as its own process with
no delay (``--median 0``): an OpenAI-compatible server that answers every
request at once. By default (``--answers real``) the problems are the 100 MATH
problems of ``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl``, each copy
with a distinct prompt, and the server answers with one of the 8 real
Qwen2.5-Math responses to that problem: verify grades real traces against
LaTeX references (fractions, radicals, intervals...), most of which need
math-verify rather than the plain-number fast path. ``--answers canned``
answers ``\\boxed{42}`` to synthetic sums (a third have 42 as reference), where
verify is nearly free.
Every stage is the real one (load, decontaminate against the math benchmarks,
dedup, generate over the openai SDK with its request cache, verify with
math-verify, filter, emit); each run starts from an empty run directory.

Runs, on one local Ray instance (``ray.init(num_cpus=N)``) started beforehand
so that its start-up is not counted:

- ``local``: ``run.executor=local`` (math-verify uses a worker per usable CPU);
- ``ray_1x{N}``: one actor per stage holding all N CPUs: the executor's
  overhead against ``local`` on the same CPUs;
- ``ray_1x1`` and ``ray_2x1``: one and two actors of one CPU each: how
  throughput grows with actors (the verify stage's samples per second).

Prints JSON; ``--save`` also writes benchmarks/results/bench_ray.json. The load
average (``os.getloadavg``) before and after each run is recorded: on a shared
machine other processes take CPU from the actors.

    python benchmarks/bench_ray.py                         # 1,000 problems, ~3 minutes
    python benchmarks/bench_ray.py --problems 5000 --save  # the issue's measure
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "helpers" / "latency_server.py"
TRACES = ROOT / "tests" / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
RESULT = ROOT / "benchmarks" / "results" / "bench_ray.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def write_problems(path: Path, count: int, answers: str) -> None:
    """``count`` problems: copies of the real MATH problems, or synthetic sums."""
    real: dict[int, dict] = {}
    if answers == "real":
        for line in TRACES.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            real.setdefault(row["problem_idx"], row)
    groups = sorted(real)
    with open(path, "w") as fh:
        for i in range(count):
            if groups:
                g = groups[i % len(groups)]
                prompt = f"(copy {i // len(groups)} of problem {g}) {real[g]['problem']}"
                row = {"id": f"p{i:06d}", "problem": prompt, "answer": real[g]["answer"]}
            else:
                answer = "42" if i % 3 == 0 else str(2 * i + 1)  # the server always says 42
                row = {"id": f"p{i:06d}", "problem": f"What is {i} + {i + 1}?", "answer": answer}
            fh.write(json.dumps(row) + "\n")


def run_once(
    source: Path, base_url: str, tmp: Path, executor: str, actors: int, cpus: int, batch: int
) -> dict:
    from datagen.compose import compose, resolve_config
    from datagen.runner import Runner
    from datagen.stages import build_pipeline

    cfg = resolve_config(
        compose(
            "+pipeline=math",
            f"source.path={source}",
            "teacher=openai",
            "teacher.model=bench",
            f"teacher.base_url={base_url}",
            "teacher.api_key_env=null",
            "run.progress=false",
            f"run.executor={executor}",
            f"run.ray_concurrency={actors}",
            f"run.ray_cpus_per_actor={cpus}",
            f"run.batch_size={batch}",
            f"run.ray_batch_size={batch}",
        )
    )
    run_dir = Path(tempfile.mkdtemp(prefix=f"{executor}-", dir=tmp))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results = Runner(cfg, run_dir, build_pipeline(list(cfg.pipeline.stages))).run()
    seconds = time.perf_counter() - started
    stages = {r.name: {"seconds": r.seconds, "rows_in": r.rows_in} for r in results}
    verify = stages["verify"]
    verify_stats = next(r.stats for r in results if r.name == "verify")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "executor": executor,
        "actors_per_stage": actors if executor == "ray" else None,
        "cpus_per_actor": cpus if executor == "ray" else None,
        "wall_s": round(seconds, 2),
        "stages_s": {k: v["seconds"] for k, v in stages.items()},
        "verify_samples_per_s": round(verify["rows_in"] / verify["seconds"], 1),
        "samples": verify["rows_in"],
        "verify_stats": verify_stats,
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs given to the Ray instance")
    parser.add_argument("--batch-size", type=int, default=1024, help="run.batch_size")
    parser.add_argument(
        "--answers", choices=["real", "canned"], default="real", help="see the module docstring"
    )
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULT, help="where --save writes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(ROOT))
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    source = tmp / "problems.jsonl"
    write_problems(source, args.problems, args.answers)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--median=0"]
        + ([f"--traces={TRACES}"] if args.answers == "real" else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1"
        plan = [("local", 1, 1), ("ray", 1, args.cpus), ("ray", 1, 1), ("ray", 2, 1)]
        runs = {}
        for executor, actors, cpus in plan:
            name = "local" if executor == "local" else f"ray_{actors}x{cpus}"
            runs[name] = run_once(source, url, tmp, executor, actors, cpus, args.batch_size)
            print(name, json.dumps(runs[name]), file=sys.stderr, flush=True)
    finally:
        proc.kill()
        proc.wait()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    full = f"ray_1x{args.cpus}"
    result = {
        "benchmark": "bench_ray",
        "problems": args.problems,
        "samples_per_problem": runs["local"]["samples"] // args.problems,
        "answers": args.answers,
        "ray_cpus": args.cpus,
        "batch_size": args.batch_size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        },
        "runs": runs,
        "ray_1_actor_wall_over_local": round(runs[full]["wall_s"] / runs["local"]["wall_s"], 3),
        "verify_throughput_2_over_1_actor": round(
            runs["ray_2x1"]["verify_samples_per_s"] / runs["ray_1x1"]["verify_samples_per_s"], 3
        ),
        "targets": {"ray_1_actor_wall_over_local": "<= 1.2", "verify_2_over_1": ">= 1.6"},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
