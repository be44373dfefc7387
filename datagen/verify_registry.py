"""The verifier declarations: ``verifier.name`` -> config class, batch adapter, GPU need.

Each verifier is declared with :func:`register_verifier` right below its adapter;
the ``verify`` stages and :mod:`datagen.compose` read only :data:`VERIFIERS`.
This is the only place where ``datagen`` touches ``verifiers``: the verifiers
stay plain functions over strings, and these adapters feed them the sample
fields each one needs (:class:`VerifyInputs`: prompt, whole response, final
answer, reference, prompt id, verdicts already attached). An adapter also gets
the stage context, for what must be built once per process (a reward model, the
judge's client and reply cache).

``name: ensemble`` (:class:`EnsembleConfig`) has no adapter of its own: the
``verify`` stage runs its members and combines their verdicts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from datagen.config import ConfigError, SamplingConfig, VerifierChoice
from datagen.context import StageContext
from datagen.records import Problem, Sample, content_hash
from datagen.records import Verdict as RecordVerdict
from datagen.registry import declare
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig
from datagen.teachers.cache import RequestCache
from verifiers import choice as choice_verifier
from verifiers import code as code_verifier
from verifiers import judge as judge_verifier
from verifiers import math as math_verifier
from verifiers import precomputed as precomputed_verifier
from verifiers import reward as reward_verifier
from verifiers.types import Verdict, render_response

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyInputs:
    """The fields of a batch of samples that verifiers read, one list entry per sample."""

    prompts: list[list[dict[str, str]]]
    """The prompt as chat messages (system prompt included)."""
    responses: list[str]
    """The whole response as the outputs write it (:func:`verifiers.types.render_response`):
    ``<think>`` reasoning (when there is any), then the answer."""
    answers: list[str]
    """The final answer text only (``Sample.content``)."""
    references: list[str | None]
    group_ids: list[str]
    """The problem id of each sample (what rank rules rank within)."""
    prior: list[list[RecordVerdict]]
    """Verdicts already on the sample (e.g. a label imported by the replay teacher)."""
    options: list[list[str] | None]
    """A multiple-choice problem's options (``A`` first), else None."""

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> VerifyInputs:
        return cls(
            prompts=[s.messages for s in samples],
            responses=[render_response(s.reasoning, s.content) for s in samples],
            answers=[s.content for s in samples],
            references=[s.reference for s in samples],
            group_ids=[s.problem_id for s in samples],
            prior=[list(s.verdicts) for s in samples],
            options=[s.options for s in samples],
        )


Adapter = Callable[[VerifyInputs, Any, StageContext], list[Verdict]]


@dataclass(frozen=True)
class VerifierSpec:
    """Declaration of one verifier: what ``verifier.name`` selects."""

    name: str
    config_cls: type
    """Its options dataclass (the other keys of the ``verifier`` group)."""
    verify_batch: Adapter
    """Feeds a batch's fields to the verifier and returns one verdict per sample."""
    wants_gpu: Callable[[Any], bool] | None = None
    """Given the options: True when the verifier runs a model on a GPU (a reward model);
    the ``verify`` stages then ask Ray for ``run.ray_gpus_per_actor``. None: never."""


VERIFIERS: dict[str, VerifierSpec] = {}
"""Every declared verifier, by name (filled by :func:`register_verifier`)."""


def register_verifier(spec: VerifierSpec) -> VerifierSpec:
    """Declare a verifier; a second one of the same name is refused."""
    return declare(VERIFIERS, "verifier", spec)


def verify_math(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Grade each final answer against its reference with math-verify.

    The problem text goes along, so an answer that only restates one of its
    expressions is ``no_answer`` and rounding it asks for is the tolerance.
    Multiple-choice rows (with ``options``, e.g. a science source) go to the
    choice verifier instead: their reference is a letter, not an expression.
    """
    results: list[Verdict | None] = [None] * len(inputs.answers)
    mcq = [i for i, options in enumerate(inputs.options) if options]
    if mcq:
        choice_cfg = choice_verifier.ChoiceConfig(strip_think=cfg.strip_think)
        for i in mcq:
            results[i] = choice_verifier.verify(
                inputs.answers[i], inputs.references[i], inputs.options[i], choice_cfg
            )
    rest = [i for i, res in enumerate(results) if res is None]
    if cfg.workers is None and ctx.cpus:  # a Ray actor: as many workers as its CPUs
        cfg = replace(cfg, workers=ctx.cpus)
    graded = (
        math_verifier.verify_batch(
            [inputs.answers[i] for i in rest],
            [inputs.references[i] for i in rest],
            cfg,
            prompts=[_problem_text(inputs.prompts[i]) for i in rest],
        )
        if rest
        else []
    )
    for i, verdict in zip(rest, graded, strict=True):
        results[i] = verdict
    return [r for r in results if r is not None]


def _problem_text(messages: list[dict[str, str]]) -> str:
    """The user turns of a chat prompt (the problem, without the system prompt)."""
    return "\n".join(m["content"] for m in messages if m.get("role") == "user")


register_verifier(VerifierSpec("math", math_verifier.MathVerifyConfig, verify_math))


def verify_choice(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Grade each final answer against its reference letter (options: ``Sample.options``)."""
    return choice_verifier.verify_batch(inputs.answers, inputs.references, inputs.options, cfg)


register_verifier(VerifierSpec("choice", choice_verifier.ChoiceConfig, verify_choice))


def verify_code(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Extract the last fenced Python block of each answer and run it on its JSON test spec."""
    texts, references = inputs.answers, inputs.references
    results: list[Verdict | None] = [None] * len(texts)
    todo = [i for i, ref in enumerate(references) if ref]
    verdicts = code_verifier.verify_batch(
        [code_verifier.extract_code(texts[i]) for i in todo],
        [json.loads(references[i]) for i in todo],  # type: ignore[arg-type]
        cfg,
    )
    for i, verdict in zip(todo, verdicts, strict=True):
        results[i] = verdict
    missing = Verdict("code", code_verifier.VERSION, None, None, {"error": "no_reference"})
    return [r if r is not None else missing for r in results]


register_verifier(VerifierSpec("code", code_verifier.CodeVerifierConfig, verify_code))


def verify_reward(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Score each response with the reward model (loaded once per process)."""
    key = f"reward_model:{reward_verifier.load_key(cfg)}"
    model = ctx.resource(key, lambda: reward_verifier.RewardModel(cfg))  # closed with ctx
    return reward_verifier.verify_batch(
        inputs.prompts, inputs.responses, cfg, group_ids=inputs.group_ids, model=model
    )


register_verifier(
    VerifierSpec(
        "reward",
        reward_verifier.RewardConfig,
        verify_reward,
        wants_gpu=lambda opts: opts.backend == "vllm" or opts.device != "cpu",
    )
)


def verify_judge(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Ask the LLM judge through the API teacher's client (retries, reply cache)."""
    transport = ctx.resource(
        f"judge:{content_hash(asdict(cfg))}", lambda: TeacherJudgeTransport(cfg, ctx.run_dir)
    )
    return judge_verifier.judge_batch(inputs.prompts, inputs.responses, cfg, transport=transport)


register_verifier(VerifierSpec("judge", judge_verifier.JudgeConfig, verify_judge))


def verify_precomputed(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Decide from the score or label stored on the verdict named ``cfg.source``."""
    found = [_last_named(prior, cfg.source) for prior in inputs.prior]
    if found and all(v is None for v in found):
        names = sorted({v.verifier for prior in inputs.prior for v in prior})
        raise ConfigError(
            f"verifier.source={cfg.source!r}: no sample carries a verdict of that name "
            f"(found: {names or 'none'}). Set it to the replay teacher's teacher.label_name; "
            "that teacher attaches the verdict only when teacher.label_field is set"
        )
    scores = [v.score if v is not None else None for v in found]
    if cfg.use == "label":
        labels = [v.passed if v is not None else None for v in found]
        return precomputed_verifier.verify_labels(labels, cfg, scores)
    return precomputed_verifier.verify_scores(scores, cfg, group_ids=inputs.group_ids)


register_verifier(
    VerifierSpec("precomputed", precomputed_verifier.PrecomputedConfig, verify_precomputed)
)


def _last_named(verdicts: list[RecordVerdict], name: str) -> RecordVerdict | None:
    named = [v for v in verdicts if v.verifier == name]
    return named[-1] if named else None


class TeacherJudgeTransport:
    """A judge transport on datagen's API teacher: its retry policy, concurrency and cache.

    Each judge prompt is sent as a one-sample generation; replies are written to a
    request cache (``cfg.cache_path``, default RUN_DIR/cache/judge.sqlite) as they
    arrive, so a rerun asks the judge nothing it has answered before.

    Args:
        cfg: The judge's options.
        run_dir: The run directory (holds the default cache file).
    """

    def __init__(self, cfg: judge_verifier.JudgeConfig, run_dir: Path) -> None:
        if cfg.api_key_env is not None and not os.environ.get(cfg.api_key_env):
            raise ConfigError(
                f"verifier.api_key_env: the environment variable {cfg.api_key_env} is not set; "
                "export it, or set verifier.api_key_env=null for a judge server without a key"
            )
        teacher_cfg = OpenAITeacherConfig(
            model=cfg.model,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            extra_body=dict(cfg.extra_body),
        )
        path = Path(cfg.cache_path) if cfg.cache_path else Path(run_dir) / "cache" / "judge.sqlite"
        self.teacher = OpenAITeacher(teacher_cfg, RequestCache(path))
        self.sampling = SamplingConfig(
            n=1, temperature=cfg.temperature, top_p=1.0, max_tokens=cfg.max_tokens
        )

    def __call__(self, batch: Sequence[list[dict[str, str]]]) -> list[judge_verifier.JudgeReply]:
        problems = [
            Problem(id=content_hash(m), source="judge", domain="general", messages=m) for m in batch
        ]
        samples = self.teacher.generate(problems, self.sampling, base_seed=0)
        return [
            judge_verifier.JudgeReply(s.content if s.error is None else None, s.error)
            for s in samples
        ]

    def close(self) -> None:
        self.teacher.close()


COMBINE_RULES: tuple[str, ...] = ("all", "any", "majority", "weighted")


@dataclass(frozen=True)
class EnsembleConfig:
    """Several verifiers on every sample; a rule turns their verdicts into ``passed``.

    Members that are unverifiable on a sample (``passed=None``) do not vote:

    - ``all``: passed when every member passed; failed when any failed; else unverifiable.
    - ``any``: passed when any member passed; failed when every member failed; else
      unverifiable.
    - ``majority``: more passes than fails among the members that decided; a tie (or no
      decision) is unverifiable.
    - ``weighted``: ``sum(weight * passed) / sum(weight)`` over the members that decided;
      passed when it reaches ``threshold``.
    """

    combine: str = "all"
    """``all``, ``any``, ``majority`` or ``weighted``."""
    threshold: float = 0.5
    """``combine=weighted``: the weighted share of passing votes needed to pass."""
    members: tuple[Any, ...] = ()
    """The member verifiers (built from ``verifier.members``; see docs/verifiers.md)."""

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {self.combine!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(
                f"threshold must be in (0, 1] for combine=weighted, got {self.threshold}"
            )


ENSEMBLE = "ensemble"
"""``verifier.name`` of an ensemble: no adapter of its own, the ``verify`` stage runs
its members (each a declared verifier) and combines their verdicts."""


def choice_wants_gpu(choice: VerifierChoice) -> bool:
    """True when the chosen verifier, or a member of the ensemble, wants a GPU."""
    members = choice.options.members if choice.name == ENSEMBLE else (choice,)
    return any(
        (want := VERIFIERS[m.name].wants_gpu) is not None and want(m.options) for m in members
    )


def verifier_config_classes() -> dict[str, type]:
    """``verifier.name`` -> options dataclass, the ensemble included (for the composer)."""
    return {**{name: spec.config_cls for name, spec in VERIFIERS.items()}, ENSEMBLE: EnsembleConfig}
