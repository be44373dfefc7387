"""An OpenAI-compatible chat server on 127.0.0.1 with heavy-tailed, reproducible latency.

It stands in for a reasoning model's server where only *when* answers arrive
matters: each request waits a time drawn from a lognormal (plus a share of
requests at ``tail_factor`` times the median, like traces that run to
``max_tokens``), then answers with canned text, or with ``--traces`` one of the
real responses to the problem the prompt names. The delay is a function of the
request's prompt and seed, so two clients sending the same requests meet the
same latencies. It counts requests per (prompt, seed), which is how tests
prove that a resumed run sent nothing twice.

Plain asyncio streams (HTTP/1.1 keep-alive, no framework), run either in a
thread of the test process (:class:`LatencyServer`) or as its own process
(``python tests/helpers/latency_server.py --median 0.2``: prints the port,
serves until killed), so a benchmark's client CPU is not mixed with the server's.
``GET /stats`` returns the counters as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import statistics
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

_NORMAL = statistics.NormalDist()


@dataclass(frozen=True)
class Latency:
    """Seconds a request waits: ``median * exp(sigma * z)``, or ``median * tail_factor``."""

    median: float = 0.2
    sigma: float = 1.0
    tail_share: float = 0.05
    tail_factor: float = 20.0

    def of(self, key: str) -> float:
        if self.median <= 0:
            return 0.0
        digest = hashlib.sha256(key.encode()).digest()
        u_tail = int.from_bytes(digest[:4], "big") / 2**32
        if u_tail < self.tail_share:
            return self.median * self.tail_factor
        u = (int.from_bytes(digest[4:8], "big") + 0.5) / 2**32
        return self.median * math.exp(self.sigma * _NORMAL.inv_cdf(u))


def request_id(body: dict[str, Any]) -> str:
    """What identifies one sample's request: its last user message and its seed."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return f"{users[-1] if users else ''}|{body.get('seed')}"


class Counts:
    def __init__(self) -> None:
        self.by_request: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_request.values()),
            "distinct": len(self.by_request),
            "sent_twice": sorted(k for k, v in self.by_request.items() if v > 1),
        }


COPY_MARK = re.compile(r"\(copy \d+ of problem (\d+)\)")
"""How a benchmark's prompt names the real problem whose traces answer it."""


def load_traces(path: str) -> dict[int, list[str]]:
    """Real responses by problem, from a JSONL file of ``problem_idx`` / ``response`` rows."""
    by_problem: dict[int, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            by_problem.setdefault(int(row["problem_idx"]), []).append(row["response"])
    return by_problem


def answer_text(body: dict[str, Any], key: str, traces: dict[int, list[str]] | None) -> str:
    """A canned ``\\boxed{42}``, or, with ``traces``, one of the real responses to the
    problem the prompt names (:data:`COPY_MARK`), picked by the request's hash."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    if traces:
        found = COPY_MARK.search(key)
        if found and int(found.group(1)) in traces:
            options = traces[int(found.group(1))]
            return options[int(digest[:8], 16) % len(options)]
    return f"<think>Working it out ({digest[:12]}).</think>The answer is \\boxed{{42}}."


def completion(
    body: dict[str, Any], key: str, traces: dict[int, list[str]] | None = None
) -> dict[str, Any]:
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    text = answer_text(body, key, traces)
    return {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "latency-stub"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28},
    }


async def _handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    latency: Latency,
    counts: Counts,
    traces: dict[int, list[str]] | None = None,
) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(length) if length else b""
            if method == "GET" and path.startswith("/stats"):
                payload: dict[str, Any] = counts.as_dict()
            else:
                body = json.loads(raw or b"{}")
                key = request_id(body)
                counts.by_request[key] += 1
                delay = latency.of(key)
                if delay:
                    await asyncio.sleep(delay)
                payload = completion(body, key, traces)
            data = json.dumps(payload).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


async def _serve(
    latency: Latency,
    counts: Counts,
    port: int = 0,
    traces: dict[int, list[str]] | None = None,
) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _handle(r, w, latency, counts, traces), "127.0.0.1", port, backlog=4096
    )


class LatencyServer:
    """The server in a background thread with its own event loop (for tests)."""

    def __init__(self, latency: Latency | None = None) -> None:
        self.latency = latency or Latency()
        self.counts = Counts()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    def __enter__(self) -> LatencyServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(_serve(self.latency, self.counts), self._loop)
        self._server = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:  # requests still waiting (a hung one) end here
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--median", type=float, default=0.2, help="seconds; 0: answer at once")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--tail-share", type=float, default=0.05)
    parser.add_argument("--tail-factor", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--traces", help="JSONL of real responses (problem_idx, response) to answer with"
    )
    args = parser.parse_args(argv)
    latency = Latency(args.median, args.sigma, args.tail_share, args.tail_factor)
    traces = load_traces(args.traces) if args.traces else None

    async def run() -> None:
        server = await _serve(latency, Counts(), args.port, traces)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
