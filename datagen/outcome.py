"""Whether a finished run did its job: the exit status tells the truth.

A run whose generations all failed, or whose source rows were all rejected,
wrote empty outputs; exiting 0 would let a script carry on with them.
"""

from __future__ import annotations

from typing import Any

from datagen.config import RunConfig

EXIT_FAILED_RUN = 3


class RunFailed(RuntimeError):
    """The run finished, but too much of it failed; the summary was still written."""

    def __init__(self, reason: str, summary: dict[str, Any]) -> None:
        super().__init__(reason)
        self.summary = summary


def failure_reason(summary: dict[str, Any], run: RunConfig) -> str | None:
    """One line saying why the run counts as failed, or None.

    >>> failure_reason({"samples": 8, "generation_failed": 8}, RunConfig())
    'all 8 generations failed (run.max_failed_share=0.5); see stages/*_generate/set_aside'
    """
    rows, bad = summary.get("rows_read"), summary.get("malformed_rows", 0)
    if rows == 0:
        return "the source has no rows"
    if rows:
        share = bad / rows
        if bad == rows or share > run.max_rejected_share:
            what = "all" if bad == rows else f"{bad} of"
            return (
                f"{what} {rows} source rows were rejected (run.max_rejected_share="
                f"{run.max_rejected_share}); see rejects.jsonl"
            )
    samples, failed = summary.get("samples"), summary.get("generation_failed", 0)
    if samples and (failed == samples or failed / samples > run.max_failed_share):
        what = "all" if failed == samples else f"{failed} of"
        return (
            f"{what} {samples} generations failed (run.max_failed_share="
            f"{run.max_failed_share}); see stages/*_generate/set_aside"
        )
    return None
