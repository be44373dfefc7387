"""Running one program's job in the sandbox and grading it, with the timeout rules.

Split from :mod:`verifiers.code` (which holds the spec, the config and the verdict):
building the sandbox job from a :class:`~verifiers.code.TestSpec`, one graded run,
and the calibration that tells a slow program from a busy machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from verifiers import _asserts, _grading
from verifiers._asserts import Check
from verifiers.sandbox import Sandbox, SandboxError

if TYPE_CHECKING:
    from verifiers.code import CodeVerifierConfig, TestSpec
    from verifiers.sandbox import SandboxConfig

logger = logging.getLogger(__name__)


def build_job(code: str, spec: TestSpec) -> tuple[dict[str, Any], list[Check], list[Any]]:
    """Return the sandbox job, per-test checks, and per-test input descriptions."""
    job: dict[str, Any] = {"kind": spec.kind, "code": code, "setup": spec.setup}
    if spec.kind == "assert":
        test_code, refs, checks = _asserts.plan_asserts(spec.test_code, spec.setup, code)
        job.update(test_code=test_code, ref_exprs=refs)
        return job, checks, [c.source for c in checks]
    inputs = [c.input for c in spec.cases]
    calls = [Check(i, "", "call", c.output) for i, c in enumerate(spec.cases)]
    if spec.kind == "call":
        job.update(fn_name=spec.fn_name, inputs=[json.dumps(c.input) for c in spec.cases])
        return job, calls, inputs
    job["stdin"] = inputs
    return job, calls, inputs


def _has_all_reports(workers: list[dict[str, Any]], n_tests: int, kind: str) -> bool:
    if kind != "stdio":
        return any(w["kind"] == "func" for w in workers)
    cases = [w for w in workers if w["kind"] == "stdio"]
    return len(cases) == n_tests or bool(cases and cases[-1]["status"] == "timeout")


def run_graded(
    job: dict[str, Any], spec: TestSpec, checks: list[Check], box: Sandbox, timeout: float
) -> tuple[list[_grading.Outcome], float]:
    """One sandbox run, graded test by test; returns the outcomes and the wall time."""
    result = box.run(job, timeout_s=timeout)
    if not (result.complete or _has_all_reports(result.workers, len(checks), spec.kind)):
        # Reports are sent before the clean-up, so only a broken sandbox gets here.
        raise SandboxError(f"sandbox run did not finish cleanly: {result.stderr[-500:]}")
    tol, cpu = spec.float_tolerance, float(box.config.cpu_s)
    if spec.kind == "stdio":
        by_case = {w["case"]: w for w in result.workers if w["kind"] == "stdio"}
        outcomes = []
        for i, check in enumerate(checks):
            try:
                outcomes.append(_grading.grade_stdio_case(by_case.get(i), check.expected, tol, cpu))
            except (RecursionError, MemoryError, ValueError) as exc:
                outcomes.append(_grading.Outcome(False, "unverifiable", f"grading failed: {exc}"))
        return outcomes, result.wall_s
    ref = next((w for w in result.workers if w["kind"] == "ref"), None)
    func = next((w for w in result.workers if w["kind"] == "func"), None)
    return _grading.grade_function_tests(checks, func, ref, tol, cpu), result.wall_s


_CALIBRATION: dict[str, list[float] | None] = {}


def reference_cpu(spec: TestSpec, box: Sandbox) -> list[float] | None:
    """CPU seconds the spec's reference takes per test (None: no usable reference).

    Measured once per spec and process. Each test is charged its worker's CPU time
    (all function tests share one worker; each stdin/stdout case has its own).
    """
    if spec.reference is None:
        return None
    key = hashlib.sha256(repr(spec).encode()).hexdigest()
    if key not in _CALIBRATION:
        job, checks, _ = build_job(spec.reference, spec)
        outcomes, _ = run_graded(job, spec, checks, box, box.config.timeout_s * 3)
        if all(o.ok for o in outcomes):
            _CALIBRATION[key] = [o.cpu_s for o in outcomes]
        else:
            logger.warning("TestSpec.reference fails its own tests; no calibrated limit")
            _CALIBRATION[key] = None
    return _CALIBRATION[key]


def calibrate(
    outcomes: list[_grading.Outcome], limits: list[float] | None, cfg: CodeVerifierConfig
) -> list[_grading.Outcome]:
    """Wall-clock timeouts whose CPU time exceeds the calibrated limit are the program's."""
    if limits is None:
        return outcomes
    settled = []
    for o, ref in zip(outcomes, limits, strict=True):
        limit = cfg.calibration_factor * ref + 0.5
        if o.wall_timeout and o.cpu_s > limit:
            why = (
                f"{o.cpu_s:.2f}s of CPU exceeds the calibrated limit of {limit:.2f}s "
                f"({cfg.calibration_factor:g} x the reference's {ref:.2f}s + 0.5s)"
            )
            o = dataclasses.replace(o, message=why, wall_timeout=False)
        settled.append(o)
    return settled


def persisting_timeouts(outcomes: list[_grading.Outcome]) -> list[_grading.Outcome]:
    """A wall-clock timeout that persisted without a calibrated verdict is unverifiable."""
    why = "the wall-clock limit was hit with only {:.2f}s of CPU used: a busy machine, no verdict"
    return [
        _grading.Outcome(False, "unverifiable", why.format(o.cpu_s), cpu_s=o.cpu_s)
        if o.wall_timeout
        else o
        for o in outcomes
    ]


def retry_timeout(
    outcomes: list[_grading.Outcome], box: SandboxConfig, cfg: CodeVerifierConfig
) -> float:
    """The wall-clock limit of the retry: enough, at the CPU share the timed-out
    workers got, to reach the CPU limit, within the configured factors."""
    shares = [o.cpu_s / o.wall_s for o in outcomes if o.wall_timeout and o.wall_s > 0]
    share = max(min(shares, default=1.0), 0.01)
    low, high = (
        box.timeout_s * f for f in (cfg.timeout_retry_factor, cfg.timeout_retry_max_factor)
    )
    return min(max(1.25 * box.cpu_s / share, low), high)
