"""Benchmark: our API teacher vs a bare ``AsyncOpenAI`` loop, same server, same concurrency.

Starts llama.cpp's OpenAI-compatible server on 127.0.0.1 with the bundled
SmolLM2-135M GGUF, then, in one run, alternates rounds of

- **bare**: ``AsyncOpenAI.chat.completions.create`` under an ``asyncio.Semaphore``,
  nothing else (the baseline: what a hand-written script would do);
- **teacher**: ``OpenAITeacher.generate`` with a fresh request cache (retries,
  parsing, cache writes, Sample records included);

with the same prompts and seeds, so both ask for exactly the same tokens.
Then it times a fully cached rerun of the teacher. Prints JSON: completed
samples/s and completion tokens/s of each over the median round, their ratio
(teacher / bare; also over all rounds summed), client CPU per sample, and
the cached rerun's time as a share of the first run's.

    python benchmarks/bench_api_teacher.py --prompts 16 --max-tokens 32 --rounds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the server launcher shared with the tests

from helpers.llama_server import LlamaServer  # noqa: E402

from datagen.config import SamplingConfig  # noqa: E402
from datagen.records import Problem, content_hash  # noqa: E402
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig  # noqa: E402
from datagen.teachers.cache import RequestCache  # noqa: E402

TOPICS = [
    "prime numbers",
    "fractions",
    "triangles",
    "averages",
    "percentages",
    "circles",
    "probability",
    "square roots",
]


def make_problems(count: int) -> list[Problem]:
    texts = [f"Explain {TOPICS[i % len(TOPICS)]} to a child, example {i}." for i in range(count)]
    return [
        Problem(
            id=content_hash("bench", t),
            source="bench",
            domain="general",
            messages=[{"role": "user", "content": t}],
        )
        for t in texts
    ]


async def bare_loop(base_url: str, bodies: list[dict], concurrency: int) -> tuple[int, int]:
    """The baseline: as little as a correct client can do. Returns (samples, tokens)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> int:
        async with sem:
            resp = await client.chat.completions.create(**body)
            return resp.usage.completion_tokens if resp.usage else 0

    tokens = await asyncio.gather(*(one(b) for b in bodies))
    await client.close()
    return len(tokens), sum(tokens)


def run_bare(
    base_url: str,
    teacher: OpenAITeacher,
    problems: list[Problem],
    sampling: SamplingConfig,
    concurrency: int,
) -> dict:
    # The very requests the teacher would send: same prompts, seeds and options.
    requests = teacher.build_requests(problems, sampling, 0)
    bodies = [teacher.build_body(r.messages, 1, r.seed, sampling) for r in requests]
    started, cpu = time.perf_counter(), time.process_time()
    samples, tokens = asyncio.run(bare_loop(base_url, bodies, concurrency))
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "samples": samples,
        "tokens": tokens,
    }


def run_teacher(
    cfg: OpenAITeacherConfig, cache_path: Path, problems: list[Problem], sampling: SamplingConfig
) -> dict:
    teacher = OpenAITeacher(cfg, RequestCache(cache_path))
    started, cpu = time.perf_counter(), time.process_time()
    samples = teacher.generate(problems, sampling, 0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = [s for s in samples if s.error is None]
    sent = teacher.requests_sent
    teacher.close()
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "samples": len(done),
        "tokens": sum(s.completion_tokens for s in done),
        "requests_sent": sent,
    }


def rates(runs: list[dict]) -> dict:
    """Throughput over the median round (robust to a round that other processes slowed)."""
    median = statistics.median(r["seconds"] for r in runs)
    samples, tokens = runs[0]["samples"], runs[0]["tokens"]  # the same in every round
    return {
        "round_seconds": [round(r["seconds"], 2) for r in runs],
        "median_round_seconds": round(median, 3),
        "samples_per_s": round(samples / median, 3),
        "tokens_per_s": round(tokens / median, 2),
        "samples_per_round": samples,
        "tokens_per_round": tokens,
        "client_cpu_ms_per_sample": round(
            1000 * sum(r["cpu_s"] for r in runs) / sum(r["samples"] for r in runs), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds of each client")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    args = parser.parse_args()

    problems = make_problems(args.prompts)
    sampling = SamplingConfig(n=1, temperature=0.8, max_tokens=args.max_tokens)
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-teacher-"))
    with LlamaServer(n_threads=args.threads) as server:
        cfg = OpenAITeacherConfig(
            model="smollm2",
            base_url=server.base_url,
            api_key_env=None,
            concurrency=args.concurrency,
        )
        helper = OpenAITeacher(cfg, None)  # builds the baseline's request bodies
        conc = args.concurrency
        run_bare(server.base_url, helper, problems[:2], sampling, args.concurrency)  # warm-up
        bare, ours = [], []
        # Alternate, and swap who goes first each round, so load from other
        # processes and any drift hit both clients alike.
        for r in range(args.rounds):
            order = ("bare", "teacher") if r % 2 == 0 else ("teacher", "bare")
            for who in order:
                if who == "bare":
                    bare.append(run_bare(server.base_url, helper, problems, sampling, conc))
                else:
                    ours.append(run_teacher(cfg, tmp / f"cache-{r}.sqlite", problems, sampling))
        helper.close()
        cached = run_teacher(cfg, tmp / "cache-0.sqlite", problems, sampling)
    shutil.rmtree(tmp, ignore_errors=True)

    b, t = rates(bare), rates(ours)
    first_run = ours[0]["seconds"]
    print(
        json.dumps(
            {
                "benchmark": "api_teacher_vs_bare_asyncopenai",
                "server": "llama-cpp-python server, SmolLM2-135M-Instruct Q4_1, 127.0.0.1",
                "machine": f"{platform.machine()}, {args.threads} llama.cpp thread(s)",
                "prompts": args.prompts,
                "max_tokens": args.max_tokens,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "bare_asyncopenai": b,
                "api_teacher": t,
                "ratio_samples_per_s": round(t["samples_per_s"] / b["samples_per_s"], 3),
                "ratio_tokens_per_s": round(t["tokens_per_s"] / b["tokens_per_s"], 3),
                "ratio_all_rounds_summed": round(
                    sum(r["seconds"] for r in bare) / sum(r["seconds"] for r in ours), 3
                ),
                "cached_rerun": {
                    "seconds": round(cached["seconds"], 4),
                    "requests_sent": cached["requests_sent"],
                    "ratio_to_first_run": round(cached["seconds"] / first_run, 5),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
