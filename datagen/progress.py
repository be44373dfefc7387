"""Live progress of a stage: a tqdm bar whose postfix shows throughput, retries, cost, pass rate.

The runner makes one :class:`StageProgress` per stage and puts it in ``ctx.resources``
under :data:`KEY`; stages add what they learn with :func:`record` after each batch
(samples, tokens, cost, retries, requests in flight, graded and passed). A stage that
runs where there is no bar (a Ray actor, a test) records into nothing.

The bar is quiet when ``run.progress=false`` or when stderr is not a terminal (CI logs,
redirected output), where a redrawn bar is only noise.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

from tqdm.auto import tqdm

KEY = "progress"
"""Name of the current stage's progress in ``StageContext.resources``."""
GAUGES = ("in_flight",)
"""Values that are set, not added up (requests in flight right now)."""


def progress_enabled(progress: bool, stream: IO[str] | None = None) -> bool:
    """Whether to draw a bar: asked for, and stderr (or ``stream``) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    return bool(progress) and bool(getattr(stream, "isatty", lambda: False)())


class StageProgress:
    """A stage's bar plus the counters its postfix is computed from."""

    def __init__(
        self, total: int | None, desc: str, enabled: bool, stream: IO[str] | None = None
    ) -> None:
        self.bar = tqdm(
            total=total or None, desc=desc, unit="row", disable=not enabled, file=stream
        )
        self.counts: Counter[str] = Counter()
        self.gauges: dict[str, float] = {}
        self.started = time.monotonic()

    def update(self, rows: int) -> None:
        self.bar.update(rows)

    def record(self, **amounts: float) -> None:
        """Add counts (``samples``, ``tokens``, ``cost``, ``retries``, ``graded``, ``passed``)
        or set gauges (``in_flight``), then redraw the postfix."""
        for key, value in amounts.items():
            if key in GAUGES:
                self.gauges[key] = value
            else:
                self.counts[key] += value
        self.bar.set_postfix(self.postfix(), refresh=True)

    def postfix(self) -> dict[str, Any]:
        """What the bar shows after the count: only the measures this stage reported."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        c, out = self.counts, {}
        if "samples" in c:
            out["samples/s"] = f"{c['samples'] / elapsed:.2f}"
        if c.get("tokens"):
            out["tok/s"] = f"{c['tokens'] / elapsed:.0f}"
        if "in_flight" in self.gauges:
            out["in_flight"] = int(self.gauges["in_flight"])
        if "retries" in c:
            out["retries"] = int(c["retries"])
        if "cost" in c:
            out["cost"] = f"${c['cost']:.4f}"
        if c.get("graded"):
            out["pass"] = f"{c['passed'] / c['graded']:.0%}"
        return out

    def close(self) -> None:
        self.bar.close()


def record(ctx: Any, **amounts: float) -> None:
    """Add to the current stage's progress, if there is one in ``ctx``."""
    progress = getattr(ctx, "resources", {}).get(KEY)
    if progress is not None:
        progress.record(**amounts)
