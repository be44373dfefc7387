"""A new stage, teacher, verifier and output, each declared only here, run in a pipeline.

Nothing in ``datagen/`` names ``arith``, ``last_number``, ``min_length`` or
``sft_shortest``: each is registered by its declaration below, composed from
command-line overrides like a built-in one, and run by the real runner, summary
and emit stage. The teacher is a real :class:`~datagen.teachers.base.Teacher`
(request keys, cache, samples) whose "model" is Python arithmetic, so the test
needs no model weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from datagen.__main__ import run
from datagen.config import ConfigError, SamplingConfig
from datagen.context import StageContext
from datagen.output import OUTPUTS, OutputSpec, register_output
from datagen.output.formats import sft_features
from datagen.output.publish import load_output
from datagen.output.sft import build_sft
from datagen.records import Sample
from datagen.stages import STAGES, Stage, register_stage
from datagen.summary import format_summary
from datagen.teachers import TEACHERS, Teacher, TeacherSpec, register_teacher
from datagen.teachers.base import Completion, Request
from datagen.teachers.cache import RequestCache
from datagen.verify_registry import VERIFIERS, VerifierSpec, VerifyInputs, register_verifier
from datagen.views import open_part
from verifiers.types import Verdict

from .conftest import ROOT, compose

CORE = [p for p in (ROOT / "datagen").rglob("*.py")]
NAMES = ("arith", "last_number", "min_length", "sft_shortest")


# -- a teacher -------------------------------------------------------------------------
@dataclass(frozen=True)
class ArithTeacherConfig:
    name: str = "arith"
    model: str = "arith-1"
    wrong_every: int = 2
    """Every ``wrong_every``-th sample of a prompt is off by one."""


class ArithTeacher(Teacher):
    """Answers "What is A + B?" by adding; some samples are wrong on purpose."""

    name = "arith"

    def __init__(self, cfg: ArithTeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.model, cache)
        self.wrong_every = cfg.wrong_every

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for i, req in enumerate(requests):
            a, b = map(int, re.findall(r"\d+", req.messages[-1]["content"])[:2])
            answer = a + b + (1 if req.sample_index % self.wrong_every else 0)
            padding = " surely" * req.sample_index  # samples differ in length
            text = f"<think>I add {a} and {b}.</think>The sum is{padding} {answer}."
            yield i, Completion(text, finish_reason="stop", completion_tokens=len(text.split()))


ARITH = TeacherSpec("arith", ArithTeacherConfig, ArithTeacher, default_batch_size=2)


# -- a verifier ------------------------------------------------------------------------
@dataclass(frozen=True)
class LastNumberConfig:
    strict: bool = True


def verify_last_number(inputs: VerifyInputs, cfg: Any, ctx: StageContext) -> list[Verdict]:
    """Passed when the answer's last integer equals the reference."""
    out = []
    for answer, ref in zip(inputs.answers, inputs.references, strict=True):
        found = re.findall(r"-?\d+", answer)
        if not found:
            out.append(Verdict("last_number", "1", False, None, {"error": "no_answer"}))
            continue
        out.append(Verdict("last_number", "1", found[-1] == ref, None, {"got": found[-1]}))
    return out


LAST_NUMBER = VerifierSpec("last_number", LastNumberConfig, verify_last_number)


# -- a stage with its own config section and report --------------------------------------
@dataclass(frozen=True)
class MinLengthConfig:
    chars: int = 10

    def __post_init__(self) -> None:
        if self.chars < 1:
            raise ConfigError(f"min_length.chars must be >= 1, got {self.chars}")


def min_length(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Set aside answers shorter than ``min_length.chars``."""
    for sample in batch:
        if len(sample.content) < cfg["min_length"].chars:
            sample.keep, sample.reject_reason = False, "short"
            ctx.count("min_length", "short")
    return batch


def min_length_report(stage_dir: Path, config: Any) -> dict[str, Any]:
    aside = open_part(str(stage_dir / "set_aside"))
    return {"short": len(aside), "chars": config.min_length.chars}


MIN_LENGTH = Stage(
    "min_length",
    min_length,
    "sample",
    "sample",
    ("min_length",),
    report=min_length_report,
    sections={"min_length": MinLengthConfig},
)


# -- an output -------------------------------------------------------------------------
def build_shortest(samples, cfg, seed, counter):
    """The shortest verified-correct sample of each prompt (an SFT set)."""
    best: dict[str, Sample] = {}
    for s in samples:
        if s.passed is True and (
            s.problem_id not in best or len(s.content) < len(best[s.problem_id].content)
        ):
            best[s.problem_id] = s
    return build_sft(list(best.values()), True, cfg, counter)


SFT_SHORTEST = OutputSpec(
    "sft_shortest",
    "sft",
    "The shortest verified-correct trace of each prompt.",
    build_shortest,
    sft_features,
    summary_label="shortest positives",
)


@pytest.fixture(scope="module", autouse=True)
def _declared():
    """Register the four declarations for this module's tests only: registering at import
    would show them to every test module collected in the same session."""
    register_teacher(ARITH)
    register_verifier(LAST_NUMBER)
    register_stage(MIN_LENGTH)
    register_output(SFT_SHORTEST)
    yield
    TEACHERS.pop("arith"), VERIFIERS.pop("last_number")
    STAGES.pop("min_length"), OUTPUTS.pop("sft_shortest")


def test_no_core_file_names_the_plugins():
    for path in CORE:
        text = path.read_text()
        assert not [n for n in NAMES if n in text], path


def plugin_overrides(src: Path, *more: str) -> list[str]:
    return [
        "+pipeline=math",
        f"source.path={src}",
        "~teacher",
        "+teacher.name=arith",
        "~verifier",
        "+verifier.name=last_number",
        "+min_length.chars=16",
        "pipeline.stages=[load,generate,verify,min_length,filter,emit]",
        "generation.n=4",
        "run.progress=false",
        *more,
    ]


def test_plugins_run_in_a_pipeline(tmp_path):
    src = tmp_path / "sums.jsonl"
    rows = [
        {"id": f"p{a}", "problem": f"What is {a} + {a * 3}?", "answer": str(4 * a)} for a in (2, 5)
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # output.dir moved: the summary reads the outputs where emit wrote them
    summary = run(compose(*plugin_overrides(src, "output.dir=built")), tmp_path / "run")

    # the teacher: 2 problems x 4 samples
    assert summary["samples"] == 8 and summary["stages"]["generate"]["in"] == 2
    # the verifier: samples 0 and 2 add up, 1 and 3 are off by one
    verified = open_part(str(tmp_path / "run" / "stages" / "02_verify" / "data"))
    assert [s["sample_index"] for s in verified if s["passed"]] == [0, 2, 0, 2]
    assert {v["verifier"] for row in verified["verdicts"] for v in row} == {"last_number"}
    # the stage: answers under 16 characters (sample 0: "The sum is 8.") are set aside
    assert summary["set_aside"] == {"min_length": 2}
    assert summary["min_length_report"] == {"short": 2, "chars": 16}
    # the output: one shortest positive per prompt, beside the built-in outputs
    shortest = load_output(tmp_path / "run" / "built" / "sft_shortest")
    assert summary["sft_shortest"] == len(shortest) == 2
    assert sorted(shortest["sample_index"]) == [2, 2]  # sample 0's answer was set aside as short
    assert summary["redi_pairs"] >= 1 and summary["sft_positive"] == 2  # read from built/
    assert not (tmp_path / "run" / "outputs").exists()
    assert re.search(r"shortest positives +2", format_summary(summary))
    card = (tmp_path / "run" / "built" / "sft_shortest" / "README.md").read_text()
    assert "The shortest verified-correct trace of each prompt." in card


def test_plugin_config_is_checked_like_a_builtin(tmp_path, make_config):
    with pytest.raises(ConfigError, match=r"min_length\.chars must be >= 1"):
        make_config(*plugin_overrides(tmp_path / "x.jsonl", "min_length.chars=0"))
    with pytest.raises(ConfigError, match=r"teacher\.bogus"):
        make_config(*plugin_overrides(tmp_path / "x.jsonl", "+teacher.bogus=1"))
    with pytest.raises(ConfigError, match=r"output\.subset_sizes: unknown output 'nope'"):
        make_config(*plugin_overrides(tmp_path / "x.jsonl", "output.subset_sizes={nope: 1}"))
    cfg = make_config(
        *plugin_overrides(tmp_path / "x.jsonl", "output.subset_sizes={sft_shortest: 1}")
    )
    assert cfg.min_length == MinLengthConfig(chars=16)
    assert STAGES["generate"].default_batch_size(cfg) == 2  # the teacher's declared size
    assert cfg.as_dict()["min_length"] == {"chars": 16}
