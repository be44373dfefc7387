"""Stage ``student``: the student model answers every prompt ``student.k`` times, verified.

Distillation papers measure difficulty against the model being trained, not the
teacher: PACED weights prompts by the student's pass rate, open-r1 filters by a
probe model's, Light-R1's second stage keeps what the student still fails. This
stage asks the student (any teacher backend, by default the embedded local model)
for ``k`` samples of each prompt that still has a teacher sample, grades them with
the run's verifier, and appends them to the rows with ``role="student"``. The
outputs then take pass rates from them (:mod:`datagen.output.student`) and never
use them as teacher traces. Disabled (the default), it passes rows through.

It needs every row at once (each prompt asked once); its requests go through the
request cache, so a rerun pays nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datagen.config import ConfigError, DatagenConfig, StudentConfig, VerifyConfig
from datagen.records import ROLE_STUDENT as STUDENT
from datagen.records import Problem, Sample
from datagen.stages.base import Stage, StageContext, register_stage
from datagen.stages.verify import rank_rule_users, run_routes
from datagen.teachers import TEACHERS, build_teacher
from datagen.views import open_part

CONSUMES = ("problem_id", "messages", "reference", "domain", "role")
PRODUCES = ("role",)  # new rows: the student's samples, with verdicts and passed


def problems_of(batch: list[Sample]) -> list[Problem]:
    """One problem per prompt of the teachers' rows, in first-seen order."""
    seen: dict[str, Problem] = {}
    for s in batch:
        if s.role != STUDENT and s.problem_id not in seen:
            seen[s.problem_id] = Problem(s.problem_id, "", s.domain, s.messages, s.reference, {})
    return list(seen.values())


def student(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Append ``k`` verified student samples per prompt (failed ones set aside).

    Raises:
        ConfigError: The verifier ranks samples against each other (it would rank the
            student's samples among themselves, not grade them).
    """
    scfg: StudentConfig = cfg["student"]
    if not scfg.enabled or not batch:
        return batch
    routes: VerifyConfig = cfg.get("verify") or VerifyConfig()
    if rank_rule_users(cfg["verifier"], routes):
        raise ConfigError(
            "student: the verifier uses a rank rule, which ranks samples of a prompt against "
            "each other; grade the student with rule=threshold"
        )
    model = ctx.resource(
        "student", lambda: build_teacher(scfg.backend, ctx.run_dir, label=scfg.label)
    )
    seed = cfg["generation"].seed if cfg["generation"].seed is not None else cfg["run.seed"]
    before, hits = model.requests_sent, model.cache_hits
    samples = model.generate(problems_of(batch), scfg.sampling(cfg["generation"]), seed)
    for s in samples:
        s.role = STUDENT
    ok = [s for s in samples if s.error is None]
    run_routes(ok, ctx, cfg["verifier"], routes, stage="student")
    ctx.count("student", "samples", len(samples))
    ctx.count("student", "failed", len(samples) - len(ok))
    ctx.count("student", "requests_sent", model.requests_sent - before)
    ctx.count("student", "cache_hits", model.cache_hits - hits)
    return [*batch, *samples]


def student_report(stage_dir: Path, config: DatagenConfig) -> dict[str, Any] | None:
    """The student's pass rate over the prompts it answered (exact over the stage data)."""
    if not config.student.enabled or not (stage_dir / "data").exists():
        return None
    ds = open_part(stage_dir / "data")
    if "role" not in ds.column_names:
        return None
    mine = [
        (pid, passed)
        for pid, passed, role in zip(ds["problem_id"], ds["passed"], ds["role"], strict=True)
        if role == STUDENT
    ]  # columns, not ``filter``: no cache file may land in the stage folder
    graded = [p for _, p in mine if p is not None]
    return {
        "label": config.student.label,
        "model": getattr(config.student.backend, "model", None),
        "k": config.student.k,
        "prompts": len({pid for pid, _ in mine}),
        "samples": len(mine),
        "pass_rate": round(sum(graded) / len(graded), 4) if graded else None,
    }


def student_wants_gpu(config: DatagenConfig) -> bool:
    """True when the student runs its model on a GPU (vLLM)."""
    return config.student.enabled and TEACHERS[config.student.backend.name].wants_gpu


register_stage(
    Stage(
        "student",
        student,
        "sample",
        "sample",
        ("student", "generation", "verifier", "verify", "run.seed"),
        needs_all_rows=True,
        side_name="student_failed",
        wants_gpu=student_wants_gpu,
        report=student_report,
        report_key="student",
        description="The student model in the loop: k verified samples per prompt.",
    )
)
