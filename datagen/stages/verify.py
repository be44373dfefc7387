"""Stages ``verify`` and ``verify_groups``: judge every sample, one verdict per verifier.

Adapter only: the configured verifier (or each member of an ensemble) gets the
batch's fields through :mod:`datagen.verify_registry`, and every result is
stored as a :class:`~datagen.records.Verdict` on its sample. ``Sample.passed``
is the single verifier's verdict, or the ensemble's combined one.

An ensemble keeps each member's verdict under the member's label (its own
"column" of ``Sample.verdicts``), then appends one ``ensemble`` verdict holding
the combined result, its rule and the vote. Samples on which the members that
decided do not all agree are counted as ``disagreements``.

Rank rules (``rule: top_k`` or ``top_fraction``) compare the samples of one
prompt with each other, so they need every sample of a prompt in one batch:
``verify_groups`` is the same stage run over batches of whole prompts. ``verify``
refuses a rank rule rather than rank within arbitrary batch slices.
"""

from __future__ import annotations

from typing import Any

from datagen import progress
from datagen.config import ANY_ROUTE, ConfigError, DatagenConfig, VerifierChoice, VerifyConfig
from datagen.outcomes import UNROUTED
from datagen.records import Sample, Verdict
from datagen.stages.base import Stage, StageContext, columns_through, register_stage
from datagen.verify_registry import ENSEMBLE, VERIFIERS, VerifyInputs, choice_wants_gpu
from verifiers.precomputed import RANK_RULES
from verifiers.types import Verdict as Result

CONSUMES = ("messages", "reasoning", "content", "reference", "problem_id", "verdicts")
PRODUCES = ("verdicts", "passed")
READS = (*CONSUMES, "id", "domain", "verifier", "options", "teacher", "model", "sample_index")
"""Every field the verifiers and routes read (:class:`~datagen.verify_registry.VerifyInputs`,
:func:`route_of`): the columnar path builds records from these alone."""

OUTCOMES = {True: "passed", False: "failed", None: "unverifiable"}


def verify(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Attach the verifiers' verdicts to each sample and set ``passed`` (None: unverifiable).

    Raises:
        ConfigError: A verifier ranks samples within a prompt (use ``verify_groups``).
    """
    routes: VerifyConfig = cfg.get("verify") or VerifyConfig()
    ranked = rank_rule_users(cfg["verifier"], routes)
    if ranked:
        raise ConfigError(
            f"{', '.join(ranked)} rank(s) the samples of each prompt against each other, "
            "which needs all of a prompt's samples in one batch: list the stage "
            "verify_groups instead of verify in pipeline.stages (or use rule=threshold)"
        )
    return run_routes(batch, ctx, cfg["verifier"], routes, stage="verify")


def verify_groups(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """``verify`` over batches of whole prompts, so that rank rules see every sample of one."""
    routes: VerifyConfig = cfg.get("verify") or VerifyConfig()
    return run_routes(batch, ctx, cfg["verifier"], routes, stage="verify_groups")


def rank_rule_users(choice: VerifierChoice, routes: VerifyConfig | None = None) -> list[str]:
    """Config keys of the verifiers in ``choice`` (and ``routes``) that use a rank rule."""
    idle = routes is not None and routes.default_route is None  # ``verifier`` grades nothing
    groups = [] if idle else [("verifier", choice)]
    groups += [(f"verify.routes.{k}", c) for k, c in (routes.routes if routes else {}).items()]
    found = []
    for key, group in groups:
        if group.name == ENSEMBLE:
            found += [
                f"{key}.members.{m.label}.rule"
                for m in group.options.members
                if getattr(m.options, "rule", None) in RANK_RULES
            ]
        elif getattr(group.options, "rule", None) in RANK_RULES:
            found.append(f"{key}.rule")
    return found


def route_of(sample: Sample) -> tuple[str, bool]:
    """A sample's route key and whether the row named it (its ``verifier`` override)."""
    return (sample.verifier, True) if sample.verifier else (sample.domain, False)


def run_routes(
    batch: list[Sample],
    ctx: StageContext,
    default: VerifierChoice,
    routes: VerifyConfig,
    *,
    stage: str,
) -> list[Sample]:
    """Verify each sample with its route's verifier: one call per route, not per row.

    Rows whose route has no verifier get an ``unrouted`` verdict (unverifiable,
    ``no verifier for domain X``) and are counted as ``no_verifier``. With routes
    configured, every verdict's details name the route that graded it.
    """
    if not batch:
        return batch
    routed = bool(routes.routes) or routes.default_route != ANY_ROUTE
    groups: dict[tuple[str, bool], tuple[VerifierChoice | None, list[Sample]]] = {}
    for sample in batch:
        key, overridden = route_of(sample)
        choice = routes.choice(key, overridden, default)
        # A row naming a configured route shares the call of that route's other rows.
        group = groups.setdefault((key, overridden and choice is None), (choice, []))
        group[1].append(sample)
    for (key, overridden), (choice, part) in groups.items():
        if choice is None:
            unrouted(part, ctx, key, overridden, stage=stage)
        else:
            run_verification(part, ctx, choice, stage=stage, route=key if routed else None)
    return batch


def unrouted(
    batch: list[Sample], ctx: StageContext, key: str, overridden: bool, *, stage: str
) -> None:
    """Mark ``batch`` unverifiable: no verifier is configured for its route ``key``."""
    what = "route" if overridden else "domain"
    for sample in batch:
        reason = f"no verifier for {what} {key}"
        sample.verdicts.append(Verdict(UNROUTED, "1", None, None, {"error": reason, "route": key}))
        sample.passed = None
        ctx.count(stage, "unverifiable")
        ctx.count(stage, "no_verifier")
    progress.record(ctx, samples=len(batch), graded=0, passed=0)


def run_verification(
    batch: list[Sample],
    ctx: StageContext,
    choice: VerifierChoice,
    *,
    stage: str,
    route: str | None = None,
) -> list[Sample]:
    """Verify ``batch`` with ``choice``, store the verdicts, count outcomes under ``stage``.

    ``route``: the route key to record in each verdict's details (None: none recorded).
    """
    if not batch:
        return batch
    inputs = VerifyInputs.from_samples(batch)
    if choice.name != ENSEMBLE:
        results = VERIFIERS[choice.name].verify_batch(inputs, choice.options, ctx)
        for sample, res in zip(batch, results, strict=True):
            sample.verdicts.append(to_record(res, route=route))
            sample.passed = res.passed
            ctx.count(stage, OUTCOMES[res.passed])
        _record_progress(batch, ctx)
        return batch

    rule = choice.options
    columns = [
        [
            to_record(r, m.label, route=route)
            for r in VERIFIERS[m.name].verify_batch(inputs, m.options, ctx)
        ]
        for m in rule.members
    ]
    weights = [m.weight for m in rule.members]
    ctx.count(stage, "disagreements", 0)  # present (as 0) for every ensemble run
    for i, sample in enumerate(batch):
        votes = [column[i] for column in columns]
        combined = combine([v.passed for v in votes], rule.combine, weights, rule.threshold)
        if route is not None:
            combined.details["route"] = route
        sample.verdicts.extend(votes)
        sample.verdicts.append(combined)
        sample.passed = combined.passed
        ctx.count(stage, OUTCOMES[combined.passed])
        for vote in votes:
            ctx.count(stage, f"{vote.verifier}_{OUTCOMES[vote.passed]}")
        if combined.details["disagree"]:
            ctx.count(stage, "disagreements")
    _record_progress(batch, ctx)
    return batch


def _record_progress(batch: list[Sample], ctx: StageContext) -> None:
    graded = [s.passed for s in batch if s.passed is not None]
    progress.record(ctx, samples=len(batch), graded=len(graded), passed=sum(graded))


def to_record(res: Result, label: str | None = None, *, route: str | None = None) -> Verdict:
    """A verifier's result as a record verdict, named ``label`` when given.

    ``route``: the route key that chose the verifier, added to the details.
    """
    details = res.details if label is None else {"kind": res.verifier, **res.details}
    if route is not None:
        details = {**details, "route": route}
    return Verdict(
        verifier=label or res.verifier,
        verifier_version=res.version,
        passed=res.passed,
        score=res.score,
        details=details,
    )


def combine(
    votes: list[bool | None], rule: str, weights: list[float], threshold: float = 0.5
) -> Verdict:
    """Combine member verdicts into one (see :class:`~datagen.verify_registry.EnsembleConfig`).

    Args:
        votes: Each member's ``passed`` (None: unverifiable, no vote).
        rule: ``all``, ``any``, ``majority`` or ``weighted``.
        weights: One weight per member (``weighted`` only).
        threshold: Share of weight that must pass under ``weighted``.

    Returns:
        The ``ensemble`` verdict: ``passed``; ``score`` is the (weighted) share of passing
        votes among members that decided (None if none did); details hold the rule,
        the vote counts and ``disagree`` (the deciding members did not all agree).

    Example:
        >>> combine([True, False, None], "any", [1, 1, 1]).passed
        True
        >>> combine([True, False], "majority", [1, 1]).passed is None
        True
    """
    decided = [(v, w) for v, w in zip(votes, weights, strict=True) if v is not None]
    yes = sum(1 for v, _ in decided if v)
    no = len(decided) - yes
    weight = sum(w for _, w in decided)
    share = sum(w for v, w in decided if v) / weight if weight else None
    passed: bool | None
    if rule == "all":
        passed = False if no else (True if yes == len(votes) else None)
    elif rule == "any":
        passed = True if yes else (False if no == len(votes) else None)
    elif rule == "majority":
        passed = None if yes == no else yes > no
    elif rule == "weighted":
        passed = None if share is None else share >= threshold - 1e-12
    else:
        raise ValueError(f"unknown combine rule {rule!r}")
    version = f"{rule}@{threshold}" if rule == "weighted" else rule
    details = {
        "yes": yes,
        "no": no,
        "abstain": len(votes) - len(decided),
        "disagree": yes > 0 and no > 0,
    }
    return Verdict(ENSEMBLE, version, passed, share, details)


def verifier_wants_gpu(config: DatagenConfig) -> bool:
    """True when a configured verifier (a route's, an ensemble member) runs a model on a GPU."""
    return any(choice_wants_gpu(c) for c in (config.verifier, *config.verify.routes.values()))


register_stage(
    Stage(
        "verify",
        verify,
        "sample",
        "sample",
        ("verifier", "verify"),
        writes=PRODUCES,
        wants_gpu=verifier_wants_gpu,
        columnar=columns_through(verify, Sample, READS, PRODUCES),
    )
)
# Rank rules (best k per prompt) need every sample of a prompt in one batch.
register_stage(
    Stage(
        "verify_groups",
        verify_groups,
        "sample",
        "sample",
        ("verifier", "verify"),
        needs_all_rows=True,
        per_prompt=True,
        writes=PRODUCES,
        wants_gpu=verifier_wants_gpu,
        columnar=columns_through(verify_groups, Sample, READS, PRODUCES),
    )
)
