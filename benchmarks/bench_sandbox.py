"""Benchmark the code sandbox on reference solutions; prints one JSON object.

Measures, in one run and on the same programs (LeetCode + MBPP reference solutions
from ``tests/fixtures/code``):

* ``bare_ms``: median wall time of ``subprocess.run([sys.executable, "-c", script])``
  where ``script`` is setup + solution + tests, run one at a time (no isolation).
* ``warm_ms`` / ``cold_ms``: median wall time of one :func:`verifiers.code.verify`
  call, one at a time, with a warm sandbox (default) and a fresh sandbox per run.
* ``*_overhead_ratio``: those medians divided by ``bare_ms``.
* ``warm_exec_per_s`` / ``cold_exec_per_s``: throughput of :func:`verify_batch` on
  all programs with the default pool (one slot per core).

Usage: ``python benchmarks/bench_sandbox.py [--n 300] [--latency-n 60]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from verifiers.code import CodeVerifierConfig, TestSpec, verify, verify_batch
from verifiers.sandbox import SandboxConfig, close_shared_sandboxes, get_sandbox

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "code"


def _programs(n: int, seed: int) -> list[tuple[str, TestSpec]]:
    rows = []
    for line in (FIXTURES / "leetcode_train.jsonl").read_text().splitlines():
        row = json.loads(line)
        if not row["requires_packages"]:
            rows.append(
                (row["canonical_solution"], TestSpec.leetcode(row["test"], row["entry_point"]))
            )
    for line in (FIXTURES / "mbpp_train.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["id"] != "mbpp/927":
            spec = TestSpec.mbpp(row["test_list"], row["test_setup_code"])
            rows.append((row["canonical_solution"], spec))
    return random.Random(seed).sample(rows, n)


def _bare_ms(code: str, spec: TestSpec) -> float:
    script = f"{spec.setup}\n{code}\n{spec.test_code}\n"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
    return (time.perf_counter() - start) * 1000


def _verify_ms(code: str, spec: TestSpec, cfg: CodeVerifierConfig) -> float:
    start = time.perf_counter()
    verdict = verify(code, spec, cfg)
    if verdict.passed is not True:
        raise RuntimeError(f"reference solution failed: {verdict.details}")
    return (time.perf_counter() - start) * 1000


def _throughput(programs: list[tuple[str, TestSpec]], cfg: CodeVerifierConfig) -> float:
    start = time.perf_counter()
    verdicts = verify_batch([p[0] for p in programs], [p[1] for p in programs], cfg)
    elapsed = time.perf_counter() - start
    if not all(v.passed for v in verdicts):
        raise RuntimeError("a reference solution failed")
    return len(programs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="programs for the throughput runs")
    parser.add_argument("--latency-n", type=int, default=60, help="programs timed one by one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    programs = _programs(args.n, args.seed)
    warm, cold = CodeVerifierConfig(), CodeVerifierConfig(SandboxConfig(warm=False))
    sample = programs[: args.latency_n]
    verify(*sample[0], warm)  # start the warm supervisors and the pool
    verify(*sample[0], cold)
    # Interleave the three measurements so that machine load affects them alike.
    bare, warm_ms, cold_ms = [], [], []
    for code, spec in sample:
        bare.append(_bare_ms(code, spec))
        warm_ms.append(_verify_ms(code, spec, warm))
        cold_ms.append(_verify_ms(code, spec, cold))
    result = {
        "programs": len(programs),
        "latency_programs": len(sample),
        "cores": len(os.sched_getaffinity(0)),
        "isolation": get_sandbox(warm.sandbox).isolation.name,
        "bare_ms": round(statistics.median(bare), 2),
        "warm_ms": round(statistics.median(warm_ms), 2),
        "cold_ms": round(statistics.median(cold_ms), 2),
        "warm_overhead_ratio": round(statistics.median(warm_ms) / statistics.median(bare), 3),
        "cold_overhead_ratio": round(statistics.median(cold_ms) / statistics.median(bare), 3),
        "warm_exec_per_s": round(_throughput(programs, warm), 1),
        "cold_exec_per_s": round(_throughput(programs, cold), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    close_shared_sandboxes()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
