"""Stage ``generate_adaptive``: sample in rounds, verify between rounds, stop each prompt early.

A prompt yields a REDI/DPO pair only if it has at least one verified-correct
and one verified-incorrect sample, so samples spent on a prompt that already
has both, or that the teacher always solves, buy little. This stage replaces
``generate`` + ``verify`` in a pipeline: round 1 asks ``adaptive.first_round``
samples per prompt, every later round ``adaptive.per_round`` more for the
prompts that still lack ``min_positives`` positives or ``min_negatives``
negatives, until each is satisfied or has had ``max_samples``.

Sample ``i`` of a prompt is the same request (same seed, same cache key) as
sample ``i`` of the fixed-N ``generate`` stage, so the two modes share the
request cache, and with ``min_positives = min_negatives = 1`` a prompt that is
pairable after ``max_samples`` fixed samples is pairable here too: adaptive
sampling gets the same pairable prompts as fixed-N at ``N = max_samples`` for
fewer samples. The stage's stats record that comparison (exact), and an
estimate for fixed-N at ``generation.n`` from the pass rates it observed.

Input columns: the problem (``id``, ``messages``, ``reference``). Output
columns: everything ``generate`` and ``verify`` write (one verdict per sample,
``passed``). Rows come out grouped by problem in input order, by sample index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datagen.config import AdaptiveConfig, DatagenConfig, FilterConfig, SamplingConfig
from datagen.output.difficulty import prob_pairable
from datagen.records import Problem, Sample
from datagen.stages.base import Stage, StageContext, merge_stats, register_stage
from datagen.stages.filter import reject_reason
from datagen.stages.generate import teacher_batch_size, teacher_wants_gpu
from datagen.stages.verify import verifier_wants_gpu, verify
from datagen.teachers import Teacher, build_teacher
from datagen.views import open_part

logger = logging.getLogger(__name__)

CONSUMES = ("id", "messages", "reference")
PRODUCES = ("sample_index", "content", "reasoning", "verdicts", "passed", "keep")

STAGE = "generate_adaptive"


@dataclass
class PromptState:
    """One prompt's samples so far and what they count for."""

    problem: Problem
    samples: list[Sample] = field(default_factory=list)
    positives: int = 0
    """Usable verified-correct samples."""
    negatives: int = 0
    """Usable verified-incorrect samples."""
    stop: str | None = None
    """``"satisfied"`` or ``"budget"`` once the prompt gets no more samples."""

    @property
    def spent(self) -> int:
        return len(self.samples)


def is_satisfied(state: PromptState, cfg: AdaptiveConfig) -> bool:
    """True when the prompt has the positives and negatives it needs."""
    return state.positives >= cfg.min_positives and state.negatives >= cfg.min_negatives


def next_round_size(state: PromptState, cfg: AdaptiveConfig) -> int:
    """Samples to ask for this prompt in the next round (0: it is done)."""
    if state.stop is not None:
        return 0
    wanted = cfg.first_round if state.spent == 0 else cfg.per_round
    return min(wanted, cfg.max_samples - state.spent)


def update(
    state: PromptState,
    new: Sequence[Sample],
    cfg: AdaptiveConfig,
    usable: Callable[[Sample], bool],
) -> None:
    """Add a round's verified samples to the prompt and decide whether it stops."""
    state.samples.extend(new)
    for s in new:
        if usable(s):
            state.positives += s.passed is True
            state.negatives += s.passed is False
    if is_satisfied(state, cfg):
        state.stop = "satisfied"
    elif state.spent >= cfg.max_samples:
        state.stop = "budget"


def sample_adaptively(
    problems: Sequence[Problem],
    teacher: Teacher,
    sampling: SamplingConfig,
    base_seed: int,
    cfg: AdaptiveConfig,
    verify_batch: Callable[[list[Sample]], list[Sample]],
    usable: Callable[[Sample], bool],
) -> list[PromptState]:
    """Run rounds of generate-then-verify until every prompt has stopped.

    Args:
        problems: The prompts.
        teacher: Any teacher; asked for ``n`` samples per prompt from ``start_index`` on.
        sampling: Sampling options (``n`` is replaced by each round's size).
        base_seed: The run's seed; sample ``i`` of a prompt derives its own seed from it.
        cfg: The stopping rule and round sizes.
        verify_batch: Attaches verdicts and ``passed`` to samples (same order back).
        usable: Whether a verified sample counts (e.g. the filter stage would keep it).

    Returns:
        One state per problem, in input order, each with its samples by index.
    """
    states = [PromptState(p) for p in problems]
    rounds = 0
    while True:
        todo: dict[tuple[int, int], list[PromptState]] = {}
        for st in states:
            n = next_round_size(st, cfg)
            if n:
                todo.setdefault((n, st.spent), []).append(st)
        if not todo:
            break
        rounds += 1
        for (n, start), group in todo.items():
            samples = teacher.generate(
                [st.problem for st in group], replace(sampling, n=n), base_seed, start_index=start
            )
            _check_indices(samples, len(group), n, start)
            ok = [s for s in samples if s.error is None]
            verify_batch(ok)
            for i, st in enumerate(group):
                update(st, samples[i * n : (i + 1) * n], cfg, usable)
    logger.info("adaptive sampling: %d prompts, %d rounds", len(states), rounds)
    return states


def _check_indices(samples: Sequence[Sample], prompts: int, n: int, start: int) -> None:
    expected = list(range(start, start + n)) * prompts
    got = [s.sample_index for s in samples]
    if got != expected:
        raise RuntimeError(
            f"teacher returned sample indices {got[:8]}..., expected {expected[:8]}...: "
            "generate_adaptive needs Teacher.generate(..., start_index=) to number samples "
            "from start_index"
        )


def usable_rule(acfg: AdaptiveConfig, fcfg: FilterConfig) -> Callable[[Sample], bool]:
    """Which verified samples count toward a prompt's positives and negatives."""

    def usable(s: Sample) -> bool:
        if s.error is not None:
            return False
        return not acfg.count_usable_only or reject_reason(s, fcfg) is None

    return usable


def comparison(
    samples: Sequence[Sample],
    cfg: AdaptiveConfig,
    fixed_n: int,
    usable: Callable[[Sample], bool],
) -> dict[str, Any]:
    """Samples spent and pairable prompts, against fixed-N on the same prompts.

    Works from the samples alone (all of them: kept and set aside), so it can be
    recomputed from a finished run's stage datasets. ``fixed_n_at_max_samples`` is
    exact when ``min_positives`` and ``min_negatives`` are both at least 1 (fixed-N's
    first samples are the adaptive ones, and a prompt that stopped early already had
    a pair). ``fixed_n_at_generation_n_estimate`` is an estimate from each prompt's
    observed shares of usable positives and negatives.

    Args:
        samples: Every sample the stage produced.
        cfg: The adaptive config the samples were drawn with.
        fixed_n: The fixed-N setting to estimate (``generation.n``).
        usable: The rule the stage counted with (:func:`usable_rule`).

    Returns:
        A JSON-able dict for the stage stats and the summary.
    """
    tally: dict[str, list[int]] = {}
    for s in samples:
        spent_pos_neg = tally.setdefault(s.problem_id, [0, 0, 0])
        spent_pos_neg[0] += 1
        if usable(s):
            spent_pos_neg[1] += s.passed is True
            spent_pos_neg[2] += s.passed is False
    prompts = len(tally)
    spent = sum(t[0] for t in tally.values())
    pairable = sum(t[1] > 0 and t[2] > 0 for t in tally.values())
    satisfied = sum(t[1] >= cfg.min_positives and t[2] >= cfg.min_negatives for t in tally.values())
    expected = round(sum(prob_pairable(p / n, fixed_n, q / n) for n, p, q in tally.values()), 3)
    out: dict[str, Any] = {
        "prompts": prompts,
        "samples_spent": spent,
        "pairable_prompts": pairable,
        "samples_per_pairable_prompt": _ratio(spent, pairable),
        "stopped_satisfied": satisfied,
        "stopped_budget": prompts - satisfied,
    }
    if cfg.min_positives >= 1 and cfg.min_negatives >= 1:
        fixed = prompts * cfg.max_samples
        out["fixed_n_at_max_samples"] = {
            "n": cfg.max_samples,
            "samples": fixed,
            "pairable_prompts": pairable,
            "samples_per_pairable_prompt": _ratio(fixed, pairable),
        }
    out["fixed_n_at_generation_n_estimate"] = {
        "n": fixed_n,
        "samples": prompts * fixed_n,
        "pairable_prompts": expected,
        "samples_per_pairable_prompt": _ratio(prompts * fixed_n, expected),
    }
    return out


def stage_report(stage_dir: Path, config: DatagenConfig) -> dict[str, Any]:
    """:func:`comparison` over a finished stage's rows, kept and set aside.

    Exact for resumed runs too, unlike the stage stats, which count the batches of
    one process. For the summary: ``stage_report(RUN_DIR/"stages"/"03_generate_adaptive",
    config)``.
    """
    rows = [
        Sample.from_row(r)
        for part in ("data", "set_aside")
        if (stage_dir / part).exists()
        for r in open_part(stage_dir / part)
    ]
    usable = usable_rule(config.adaptive, config.filter)
    return comparison(rows, config.adaptive, config.generation.n, usable)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def generate_adaptive(
    batch: list[Problem], ctx: StageContext, *, cfg: dict[str, Any]
) -> list[Sample]:
    """Sample each problem in rounds until it has enough positives and negatives.

    Args:
        batch: Problems.
        ctx: Holds the teacher (built once) and the stats.
        cfg: ``teacher``, ``generation``, ``adaptive``, ``verifier``, ``verify``, ``filter``,
            ``run.seed``.

    Returns:
        All samples, verified, grouped by problem in input order; failed generations
        have ``keep=False``.
    """
    acfg: AdaptiveConfig = cfg["adaptive"]
    sampling: SamplingConfig = cfg["generation"]
    teacher = ctx.resource("teacher", lambda: build_teacher(cfg["teacher"], ctx.run_dir))
    seed = sampling.seed if sampling.seed is not None else cfg["run.seed"]
    usable = usable_rule(acfg, cfg["filter"])

    def verify_batch(samples: list[Sample]) -> list[Sample]:
        return (
            verify(samples, ctx, cfg={"verifier": cfg["verifier"], "verify": cfg.get("verify")})
            if samples
            else samples
        )

    before, hits = teacher.requests_sent, teacher.cache_hits
    states = sample_adaptively(batch, teacher, sampling, seed, acfg, verify_batch, usable)
    samples = [s for st in states for s in st.samples]
    # Additive counts of this process's batches (ratios and fixed-N settings are
    # left out, so per-actor counts of a Ray run add up); the summary's figures
    # come from stage_report() over the stage's datasets, exact after a resume.
    report = comparison(samples, acfg, sampling.n, usable)
    merge_stats(ctx.stats.setdefault(STAGE, {}), additive_counts(report))
    ctx.count(STAGE, "requests_sent", teacher.requests_sent - before)
    ctx.count(STAGE, "cache_hits", teacher.cache_hits - hits)
    ctx.count(STAGE, "failed", sum(s.error is not None for s in samples))
    return samples


def additive_counts(report: dict[str, Any]) -> dict[str, Any]:
    """The additive part of a :func:`comparison` report."""
    return {
        k: additive_counts(v) if isinstance(v, dict) else v
        for k, v in report.items()
        if k not in ("n", "samples_per_pairable_prompt")
    }


def _wants_gpu(config: DatagenConfig) -> bool:
    return teacher_wants_gpu(config) or verifier_wants_gpu(config)


register_stage(
    Stage(
        STAGE,
        generate_adaptive,
        "problem",
        "sample",
        ("teacher", "generation", "adaptive", "verifier", "verify", "filter", "run.seed"),
        batch_size_key="generate_batch_size",
        default_batch_size=teacher_batch_size,
        wants_gpu=_wants_gpu,
        report=stage_report,
        report_key="adaptive",
        card_note=lambda config: (
            "Adaptive sampling: each prompt got samples in rounds, verified between rounds, "
            "until it had the configured positives and negatives or reached its budget: "
            f"`{config.get('adaptive')}`."
        ),
    )
)
