"""The asyncio side of the API teacher: deadlines, the connection pool, hand-over, window stats.

Kept apart from :mod:`datagen.teachers.api` (the client and its retry policy) because
each piece here is about the cost or the shape of the stream, not about the API: one
timer per request, one idle connection per slot, one hand-over per event-loop tick,
and the measures the summary reads to say when a setting held the stream back.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):

    async def within(awaitable: Any, seconds: float) -> Any:
        """``awaitable``'s result, or ``TimeoutError`` after ``seconds`` (one timer, no task)."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # asyncio.timeout is new in 3.11; wait_for wraps the call in a task of its own
    within = asyncio.wait_for


def http_limits(concurrency: int) -> Any:
    """Connection pool limits: room for ``concurrency`` connections, the SDK's 100 idle ones.

    Keeping one idle connection per request slot instead was measured to cost more than
    the reconnects it saves: against an instant server at ``teacher.concurrency=256`` the
    client spent 12.6 ms of CPU per request with 256 kept alive against 8.7 ms with 100
    (benchmarks/bench_generate_stream.py, 2026-12-01), and it made no difference to
    samples/s against the heavy-tailed server. The connection cap only rises past the
    SDK's 1,000 when the concurrency does.
    """
    try:
        import httpx2 as httpx  # what openai 3 is built on
    except ImportError:
        import httpx
    return httpx.Limits(max_connections=max(1000, concurrency), max_keepalive_connections=100)


class Outbox:
    """Completions of one event-loop tick, handed to the consuming thread as one list.

    One wake-up of the consumer (and one cache commit) per tick instead of one per
    response; the list goes out at the end of the tick that filled it, so nothing
    waits for a later response.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, results: queue.SimpleQueue[Any]) -> None:
        self.loop, self.results = loop, results
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        if not self.items:
            self.loop.call_soon(self.flush)
        self.items.append(item)

    def flush(self) -> None:
        if self.items:
            items, self.items = self.items, []
            self.results.put(items)


@dataclass
class Window:
    """How full the sliding window was, integrated over time (event-loop thread only).

    All fields are sums, so a stage can add up the differences over several calls and
    the summary can divide them: mean requests in flight, share of the time requests
    waited for a slot, mean seconds per answered request.
    """

    concurrency: int
    in_flight: int = 0
    waiting: int = 0
    busy_s: float = 0.0
    """Seconds with requests in flight or waiting."""
    in_flight_s: float = 0.0
    """Integral of the number in flight over time (divide by ``busy_s``: the mean)."""
    queued_s: float = 0.0
    """Seconds with requests waiting for a slot (the window, not the work, was the limit)."""
    latency_s: float = 0.0
    answered: int = 0
    _t: float = field(default_factory=time.monotonic)

    def _tick(self) -> None:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        if self.in_flight or self.waiting:
            self.busy_s += dt
            self.in_flight_s += self.in_flight * dt
            if self.waiting:
                self.queued_s += dt

    def queued(self, n: int) -> None:
        self._tick()
        self.waiting += n

    def started(self) -> None:
        self._tick()
        self.waiting -= 1
        self.in_flight += 1

    def finished(self) -> None:
        self._tick()
        self.in_flight -= 1

    def dropped(self, n: int) -> None:
        """Requests that will not start after all (the stream stopped)."""
        self._tick()
        self.waiting = max(0, self.waiting - n)

    def answer(self, seconds: float) -> None:
        self.latency_s += seconds
        self.answered += 1

    def totals(self) -> dict[str, float]:
        """The sums so far (``window_*`` stage stats)."""
        self._tick()
        return {
            "window_busy_s": self.busy_s,
            "window_in_flight_s": self.in_flight_s,
            "window_queued_s": self.queued_s,
            "window_latency_s": self.latency_s,
            "window_answered": self.answered,
        }
