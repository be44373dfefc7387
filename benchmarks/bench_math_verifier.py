"""Benchmark the math verifier against a naive math-verify loop; prints one JSON object.

In one run and on the same traces, for each data set:

* ``naive``: a single-process loop of ``math_verify.parse(reference)``,
  ``math_verify.parse(trace)`` and ``math_verify.verify`` per trace (what a reward
  function written from Math-Verify's README does);
* ``ours``: :func:`verifiers.math.verify_batch` with the default options and
  ``--workers`` processes (the prompts passed along, as the pipeline does).

Each reports ``traces_per_s`` and ``agreement`` with the labels; ``speedup`` is
ours over naive. Both sides are warmed up first (the naive loop's first parse, our
worker pool), so the figures are steady-state throughput.

Data sets:

* ``math_traces``: the 800 Qwen2.5-Math traces with Qwen's correctness labels
  (``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl``).
* ``gsm8k``: GSM8K train solutions (``tests/fixtures/math/gsm8k_train_500.jsonl``,
  MIT) written as a model would, ending ``A: <answer>``: each problem once with
  the right answer (label true) and once with a wrong one (label false), half of
  them followed by a check line that ends on the reference number
  (``Check: 71 + 1 = 72.``), the trap of issue 14.

The machine may be shared: ``load_before``/``load_after`` are ``os.getloadavg()``
and ``contended`` says whether the one-minute load exceeded half a core when the
run started.

Usage: ``python benchmarks/bench_math_verifier.py [--gsm8k-rows 250] [--workers 2]
[--out benchmarks/results/bench_math_verifier.json]``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import sys
import time
from decimal import Decimal
from pathlib import Path

import math_verify

from verifiers.math import MathVerifyConfig, verify_batch

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "math"


def math_traces() -> list[dict]:
    rows = [json.loads(x) for x in (FIXTURES / "traces_qwen25_math_cot_100.jsonl").open()]
    return [
        {
            "text": r["response"],
            "reference": r["answer"],
            "prompt": r["problem"],
            "label": r["correct"],
        }
        for r in rows
    ]


def gsm8k_traces(n_rows: int) -> list[dict]:
    """Right and wrong final answers, half with a check line that ends on the reference."""
    traces = []
    rows = [json.loads(x) for x in (FIXTURES / "gsm8k_train_500.jsonl").open()][:n_rows]
    for i, row in enumerate(rows):
        solution = re.sub(r"<<[^>]*>>", "", row["solution"]).strip()
        gold = Decimal(row["answer"])
        wrong = gold + (1 if i % 3 else 10)
        for answer, label in ((row["answer"], True), (str(wrong), False)):
            text = f"{solution}\nA: {answer}"
            if i % 2:
                text += f"\nCheck: {gold - 1} + 1 = {gold}."
            traces.append(
                {"text": text, "reference": row["answer"], "prompt": row["problem"], "label": label}
            )
    return traces


def run_naive(traces: list[dict]) -> tuple[float, list[bool]]:
    """Parse both sides and verify, one trace after another, in this process."""
    start = time.perf_counter()
    verdicts = []
    for t in traces:
        gold = math_verify.parse(t["reference"], parsing_timeout=None)
        pred = math_verify.parse(t["text"], parsing_timeout=None)
        verdicts.append(bool(math_verify.verify(gold, pred, timeout_seconds=None)))
    return time.perf_counter() - start, verdicts


def run_ours(traces: list[dict], config: MathVerifyConfig) -> tuple[float, list[bool | None]]:
    start = time.perf_counter()
    verdicts = verify_batch(
        [t["text"] for t in traces],
        [t["reference"] for t in traces],
        config,
        prompts=[t["prompt"] for t in traces],
    )
    return time.perf_counter() - start, [v.passed for v in verdicts]


def agreement(traces: list[dict], verdicts: list) -> float:
    return sum(v is t["label"] for t, v in zip(traces, verdicts, strict=True)) / len(traces)


def measure(name: str, traces: list[dict], config: MathVerifyConfig) -> dict:
    naive_s, naive = run_naive(traces)
    ours_s, ours = run_ours(traces, config)
    return {
        "dataset": name,
        "traces": len(traces),
        "naive": {
            "seconds": round(naive_s, 3),
            "traces_per_s": round(len(traces) / naive_s, 1),
            "agreement": round(agreement(traces, naive), 4),
        },
        "ours": {
            "seconds": round(ours_s, 3),
            "traces_per_s": round(len(traces) / ours_s, 1),
            "agreement": round(agreement(traces, ours), 4),
            "unverifiable": sum(v is None for v in ours),
        },
        "speedup": round(naive_s / ours_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k-rows", type=int, default=250, help="GSM8K problems (x2 traces)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of verify_batch")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    load_before = os.getloadavg()
    config = MathVerifyConfig(workers=args.workers, timeout_s=30.0)
    # Warm-up: the naive loop's first LaTeX parse loads ANTLR; ours starts its pool.
    run_naive([{"text": "$\\frac{1}{2}$", "reference": "0.5", "label": True}])
    run_ours([{"text": "\\boxed{x^2}", "reference": "x^2", "prompt": None, "label": True}], config)
    results = [
        measure("math_traces", math_traces(), config),
        measure("gsm8k", gsm8k_traces(args.gsm8k_rows), config),
    ]
    naive_total = sum(r["naive"]["seconds"] for r in results)
    ours_total = sum(r["ours"]["seconds"] for r in results)
    report = {
        "benchmark": "math_verifier",
        "workers": args.workers,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "timeout_s": config.timeout_s,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "contended": load_before[0] > 0.5,
        "math_verify": importlib.metadata.version("math-verify"),
        "results": results,
        "speedup_overall": round(naive_total / ours_total, 2),
        "python": sys.version.split()[0],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
