"""Verifiers routed by domain: each row goes to its route's verifier, in one pass.

One batch holds math, code and general problems, a multiple-choice problem, a row
whose source overrides its route, and a domain with no verifier. The teacher is a
scripted double of the real interface (no model can answer on cue); the verifiers
are the real ones: math-verify, the code sandbox, the choice verifier, and the
precomputed verifier on a label that came with the data (what a general source
imported with its own judgement carries).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence

import datasets
import pytest

from datagen import outcomes
from datagen.compose import build_verify, resolve_config
from datagen.config import ConfigError, SamplingConfig, VerifierChoice
from datagen.records import Problem, Sample
from datagen.records import Verdict as RecordVerdict
from datagen.stages.base import StageContext
from datagen.stages.verify import verifier_wants_gpu, verify, verify_groups
from datagen.teachers.base import Completion, Request, Teacher
from datagen.verify_registry import VERIFIERS, verifier_config_classes
from verifiers.math import MathVerifyConfig

from .conftest import compose

CODE_TESTS = json.dumps({"kind": "assert", "setup": "", "test_code": "assert add(2, 2) == 4"})
OPTIONS = ["oxygen", "nitrogen", "argon", "carbon dioxide"]
ROUTED = (
    "+pipeline=math",
    "verify.default_route=math",
    "+verifier@verify.routes.code=code",
    "+verifier@verify.routes.general=precomputed",
    "verify.routes.general.source=imported",
    "verify.routes.general.use=label",
    "+verifier@verify.routes.science=choice",
)


def problem(pid: str, domain: str, text: str, reference: str | None, **kw) -> Problem:
    return Problem(pid, "test", domain, [{"role": "user", "content": text}], reference, **kw)


PROBLEMS = [
    problem("m1", "math", "What is 2 + 2?", "4"),
    problem("c1", "code", "Write add(a, b).", CODE_TESTS),
    problem("g1", "general", "Say hello.", None),
    problem(
        "q1", "math", "Most of the air is?", "B", metadata={"options": OPTIONS}
    ),  # multiple choice in the math route
    problem("s1", "general", "Which gas? (science)", "B", verifier="science"),
    problem("x1", "math", "What is 3 + 3?", "6", verifier="chemistry"),  # no such route
]
ANSWERS = {
    "m1": r"So the answer is \boxed{4}.",
    "c1": "```python\ndef add(a, b):\n    return a + b\n```",
    "g1": "Hello!",
    "q1": "The answer is (B).",
    "s1": "Answer: C",
    "x1": r"\boxed{6}",
}


class ScriptedTeacher(Teacher):
    """Answers each problem with its scripted text (the real Teacher base does the rest)."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted-model", None)

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        by_prompt = {p.messages[-1]["content"]: ANSWERS[p.id] for p in PROBLEMS}
        for i, req in enumerate(requests):
            text = by_prompt[req.messages[-1]["content"]]
            yield i, Completion(text, finish_reason="stop", prompt_tokens=5, completion_tokens=5)


def generated() -> list[Sample]:
    samples = ScriptedTeacher().generate(PROBLEMS, SamplingConfig(n=1), 0)
    for s in samples:  # the general row came with a label (as the replay teacher imports it)
        if s.problem_id == "g1":
            s.verdicts.append(RecordVerdict("imported", "1", True, 0.9))
    # Through Arrow and back, as the stage datasets store them.
    table = datasets.Dataset.from_list([s.to_row() for s in samples], features=Sample.FEATURES)
    return [Sample.from_row(row) for row in table]


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.problem_id: s for s in samples}


def run(cfg, tmp_path, samples=None) -> tuple[dict[str, Sample], StageContext]:
    ctx = StageContext(config=cfg, run_dir=tmp_path)
    out = verify(samples or generated(), ctx, cfg={"verifier": cfg.verifier, "verify": cfg.verify})
    ctx.close()
    return by_id(out), ctx


def test_the_override_and_options_travel_from_problem_to_sample():
    rows = by_id(generated())
    assert rows["s1"].verifier == "science" and rows["m1"].verifier is None
    assert rows["q1"].options == OPTIONS and rows["m1"].options is None


def test_each_row_is_graded_by_its_domains_verifier(tmp_path):
    rows, ctx = run(resolve_config(compose(*ROUTED)), tmp_path)
    graded_by = {pid: s.verdicts[-1].verifier for pid, s in rows.items()}
    assert graded_by == {
        "m1": "math",
        "c1": "code",
        "g1": "precomputed",
        "q1": "choice",  # the math route grades rows with options as multiple choice
        "s1": "choice",  # its override, not its domain (general)
        "x1": "unrouted",
    }
    routes = {pid: s.verdicts[-1].details.get("route") for pid, s in rows.items()}
    assert routes == {
        "m1": "math",
        "c1": "code",
        "g1": "general",
        "q1": "math",
        "s1": "science",
        "x1": "chemistry",
    }
    passed = {pid: s.passed for pid, s in rows.items()}
    assert passed == {"m1": True, "c1": True, "g1": True, "q1": True, "s1": False, "x1": None}
    assert rows["x1"].verdicts[-1].details["error"] == "no verifier for route chemistry"
    assert ctx.stats["verify"] == {
        "passed": 4,
        "failed": 1,
        "unverifiable": 1,
        "no_verifier": 1,
    }


def test_a_domain_without_a_verifier_is_unverifiable_and_counted(tmp_path):
    cfg = resolve_config(compose("+pipeline=math", "verify.default_route=math"))
    rows, ctx = run(cfg, tmp_path)
    for pid, domain in (("c1", "code"), ("g1", "general")):
        verdict = rows[pid].verdicts[-1]
        assert rows[pid].passed is None and verdict.verifier == "unrouted"
        assert verdict.details["error"] == f"no verifier for domain {domain}"
    assert rows["s1"].passed is None  # its override names no configured route either
    assert rows["m1"].passed is True
    assert ctx.stats["verify"]["no_verifier"] == 4  # c1, g1, s1, x1
    final = datasets.Dataset.from_list(
        [s.to_row() for s in rows.values()], features=Sample.FEATURES
    )
    counts = outcomes.no_verifier_counts(final)
    assert counts == {"chemistry": 1, "code": 1, "general": 1, "science": 1}
    assert outcomes.unverifiable_reason(final)["count"] == 1
    summary = {"unverifiable": 4, "unverifiable_top_reason": None, "no_verifier": counts}
    assert any("no verifier for code" in line for line in outcomes.outcome_lines(summary))


def test_one_call_per_route_not_per_row(tmp_path, monkeypatch):
    calls: list[tuple[str, int]] = []
    for name in ("math", "code", "choice", "precomputed"):
        spec = VERIFIERS[name]

        def counted(inputs, options, ctx, _spec=spec):
            calls.append((_spec.name, len(inputs.answers)))
            return _spec.verify_batch(inputs, options, ctx)

        monkeypatch.setitem(VERIFIERS, name, dataclasses.replace(spec, verify_batch=counted))
    samples = generated() + generated()  # two rows of every problem
    moved = [s for s in samples if s.problem_id == "s1"][1]
    moved.verifier = "math"  # a row naming the default route joins that route's call
    run(resolve_config(compose(*ROUTED)), tmp_path, samples)
    assert sorted(calls) == [("choice", 1), ("code", 2), ("math", 5), ("precomputed", 2)]
    assert moved.verdicts[-1].verifier == "math" and moved.verdicts[-1].details["route"] == "math"


def test_without_routes_the_one_verifier_grades_every_row_as_before(tmp_path):
    cfg = resolve_config(compose("+pipeline=math"))
    assert cfg.verify.routes == {} and cfg.verify.default_route == "*"
    rows, _ = run(cfg, tmp_path)
    assert {pid: s.verdicts[-1].verifier for pid, s in rows.items() if pid != "x1"} == {
        "m1": "math",
        "c1": "math",
        "g1": "math",
        "q1": "choice",
        "s1": "unrouted",  # an override must name a configured route; * does not catch it
    }
    assert rows["x1"].verdicts[-1].verifier == "unrouted"
    assert "route" not in rows["m1"].verdicts[-1].details  # single-verifier details unchanged
    plain = by_id(
        verify(
            generated(),
            StageContext(config=cfg, run_dir=tmp_path),
            cfg={"verifier": VerifierChoice("math", MathVerifyConfig())},
        )
    )  # a caller that passes no verify section gets the same
    assert {p: s.passed for p, s in plain.items()} == {p: s.passed for p, s in rows.items()}


def test_route_config_errors_name_the_key():
    registry = verifier_config_classes()
    with pytest.raises(ConfigError, match="two verifiers for one route"):
        build_verify(registry, {"default_route": "math", "routes": {"math": {"name": "math"}}})
    with pytest.raises(ConfigError, match=r"verify\.routes must map"):
        build_verify(registry, {"routes": ["math"]})
    with pytest.raises(ConfigError, match=r"verify\.routes\.code\.name must be one of"):
        build_verify(registry, {"routes": {"code": {"name": "sandbox"}}})
    with pytest.raises(ConfigError, match=r"verify\.routes\.code"):
        build_verify(registry, {"routes": {"code": {"name": "code", "nope": 1}}})


def test_rank_rules_and_gpu_needs_are_read_from_every_route(tmp_path):
    cfg = resolve_config(
        compose(
            *ROUTED,
            "verify.routes.general.use=score",
            "verify.routes.general.rule=top_k",
        )
    )
    ctx = StageContext(config=cfg, run_dir=tmp_path)
    stage_cfg = {"verifier": cfg.verifier, "verify": cfg.verify}
    with pytest.raises(ConfigError, match=r"verify\.routes\.general\.rule"):
        verify(generated(), ctx, cfg=stage_cfg)
    rows = by_id(verify_groups(generated(), ctx, cfg=stage_cfg))
    assert rows["g1"].passed is True  # best of its prompt
    assert not verifier_wants_gpu(cfg)
    reward = (
        "+pipeline=math",
        "+verifier@verify.routes.general=reward",
        "verify.routes.general.model=x",
    )
    assert not verifier_wants_gpu(
        resolve_config(compose(*reward, "verify.routes.general.device=cpu"))
    )
    assert verifier_wants_gpu(resolve_config(compose(*reward, "verify.routes.general.device=cuda")))
