"""API teacher: retries, response parsing, request bodies (one against a stub server), config."""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from datagen.config import ConfigError, SamplingConfig
from datagen.records import Problem
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig, read_api_key, request_json
from datagen.teachers.base import Completion, PriceConfig, split_reasoning
from datagen.teachers.responses import parse_completion
from datagen.teachers.retry import MalformedResponse, backoff_delay, classify, parse_retry_after

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.stub_openai import StubOpenAI

REQUEST = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    body = {"error": {"message": f"boom {status}"}}
    response = httpx2.Response(status, headers=headers, json=body, request=REQUEST)
    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1/v1")
    return client._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (408, "retry"),
        (400, "fail"),
        (413, "fail"),
        (422, "fail"),
        (401, "fatal"),
        (403, "fatal"),
        (404, "fatal"),
    ],
)
def test_status_codes_map_to_actions(status, action):
    verdict = classify(status_error(status))
    assert verdict.action == action
    if action != "fatal":
        assert verdict.reason == f"HTTP {status}: boom {status}"


def test_network_and_parsing_errors_are_retried():
    assert classify(openai.APITimeoutError(REQUEST)).reason == "timeout"
    assert classify(TimeoutError()).action == "retry"
    assert classify(openai.APIConnectionError(request=REQUEST)).action == "retry"
    assert classify(json.JSONDecodeError("x", "{", 0)).reason.startswith("malformed response")
    assert classify(MalformedResponse("no choices")).action == "retry"


def test_retry_after_is_read_from_the_response():
    assert classify(status_error(429, {"retry-after": "7"})).retry_after == 7.0
    assert classify(status_error(503, {"retry-after-ms": "1500"})).retry_after == 1.5
    assert classify(status_error(429)).retry_after is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert parse_retry_after({"retry-after": "soon"}) is None


def test_backoff_grows_caps_and_jitters():
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(6)]
    for attempt, d in enumerate(delays):
        cap = min(8.0, 2.0**attempt)
        assert cap / 2 <= d <= cap
    assert len({round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 1


def completion(choices, usage=(30, 20)) -> dict:
    """A chat-completion body as a server sends it (checked against the SDK's schema)."""
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": i, "finish_reason": f, "message": {"role": "assistant", **msg}}
            for i, (msg, f) in enumerate(choices)
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }
    ChatCompletion.model_validate(body)  # the shape real servers send
    return body


def test_parse_keeps_reasoning_fields_and_think_blocks():
    deepseek = completion([({"content": "42", "reasoning_content": "6*7"}, "stop")])
    [c] = parse_completion(deepseek, 1)
    assert (c.text, c.reasoning, c.finish_reason, c.prompt_tokens, c.completion_tokens) == (
        "42",
        "6*7",
        "stop",
        30,
        20,
    )
    [c] = parse_completion(completion([({"content": "x", "reasoning": "think"}, "length")]), 1)
    assert c.reasoning == "think" and c.finish_reason == "length"
    [c] = parse_completion(completion([({"content": "<think>a</think>b"}, "stop")]), 1)
    assert split_reasoning(c.text, c.reasoning) == ("a", "b")


def test_parse_splits_usage_of_an_n_request():
    resp = completion([({"content": "aaa"}, "stop"), ({"content": "a"}, "length")], (40, 8))
    first, second = parse_completion(resp, 2)
    assert first.completion_tokens + second.completion_tokens == 8
    assert first.completion_tokens > second.completion_tokens
    assert first.prompt_share == second.prompt_share == 0.5
    price = PriceConfig(prompt_per_million=1e6, completion_per_million=0)
    assert price.cost(first) + price.cost(second) == pytest.approx(40)  # the prompt paid once


def test_parse_rejects_broken_answers():
    with pytest.raises(MalformedResponse):
        parse_completion(completion([]), 1)
    with pytest.raises(MalformedResponse):
        parse_completion("<html>gateway</html>", 1)
    with pytest.raises(MalformedResponse):
        parse_completion({"choices": [{"index": 0, "message": None}]}, 1)
    with pytest.raises(MalformedResponse):
        parse_completion({"choices": [{"message": {"content": ["not", "text"]}}]}, 1)
    ok = {"index": 0, "message": {"content": "4"}, "finish_reason": "stop"}
    for usage in ({"prompt_tokens": "12"}, {"completion_tokens": 3.5}, {"prompt_tokens": -1}):
        with pytest.raises(MalformedResponse, match="usage"):
            parse_completion({"choices": [ok], "usage": usage}, 1)
    with pytest.raises(MalformedResponse, match="finish_reason"):
        parse_completion({"choices": [{**ok, "finish_reason": {"type": "stop"}}]}, 1)
    with pytest.raises(MalformedResponse, match="index"):
        parse_completion({"choices": [{**ok, "index": "0"}, {**ok, "index": 1}]}, 2)
    good = {"choices": [ok], "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
    assert parse_completion(good, 1)[0].completion_tokens == 1


def test_the_teacher_sends_what_the_sdk_create_sends(monkeypatch):
    """``_call`` posts the JSON itself (no SDK transforms): a server must see the same body
    as from ``chat.completions.create(**build_body(...))``, ``extra_body`` included."""
    from openai import OpenAI

    with StubOpenAI() as server:
        teacher = OpenAITeacher(
            OpenAITeacherConfig(
                model="m", base_url=server.base_url, api_key_env=None, extra_body={"top_k": 20}
            ),
            None,
        )
        sampling = SamplingConfig(n=1, temperature=0.6, top_p=0.9, max_tokens=99, stop=["</s>"])
        problem = Problem(
            id="p",
            source="s",
            domain="math",
            messages=[{"role": "user", "content": "What is 2+3?"}],
        )
        [sample] = teacher.generate([problem], sampling, base_seed=1)
        body = teacher.build_body(
            problem.messages, 1, teacher.build_requests([problem], sampling, 1)[0].seed, sampling
        )
        teacher.close()
        with OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0) as sdk:
            sdk.chat.completions.create(**body)
    ours, theirs = server.bodies
    assert ours == theirs and ours["top_k"] == 20 and "extra_body" not in ours
    assert sample.content.endswith("\\boxed{5}.") and sample.completion_tokens == 12


def test_failed_completions_cost_nothing_and_cached_ones_load_leniently():
    assert Completion.from_dict({"text": "t", "future_field": 1}).text == "t"
    assert PriceConfig(1, 1).cost(Completion("", prompt_tokens=10)) == pytest.approx(1e-5)


def make_teacher(monkeypatch, **kw) -> OpenAITeacher:
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-secret-123")
    cfg = OpenAITeacherConfig(
        model="m", base_url="http://127.0.0.1:9/v1", api_key_env="TEST_TEACHER_KEY", **kw
    )
    return OpenAITeacher(cfg, None)


def test_request_body(monkeypatch):
    teacher = make_teacher(monkeypatch, extra_body={"top_k": 20})
    sampling = SamplingConfig(temperature=0.6, top_p=0.9, max_tokens=99, stop=["</s>"])
    body = teacher.build_body([{"role": "user", "content": "q"}], 1, 5, sampling)
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 99,
        "stop": ["</s>"],
        "seed": 5,
        "extra_body": {"top_k": 20},
    }
    assert request_json(body) == {
        **{k: v for k, v in body.items() if k != "extra_body"},
        "top_k": 20,
    }
    assert teacher.build_body([], 4, 5, SamplingConfig())["n"] == 4
    assert teacher.key_extra() == {"extra_body": {"top_k": 20}}
    teacher.close()
    plain = make_teacher(monkeypatch, send_seed=False)
    assert "seed" not in plain.build_body([], 1, 5, SamplingConfig())
    assert plain.key_extra() is None
    plain.close()


def test_the_key_stays_out_of_config_and_messages(monkeypatch):
    teacher = make_teacher(monkeypatch)
    assert "sk-secret-123" not in json.dumps(asdict(teacher.cfg))
    assert teacher._redact("Incorrect API key provided: sk-secret-123") == (
        "Incorrect API key provided: ***"
    )
    teacher.close()


def test_missing_key_and_bad_values_fail_naming_the_key(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR is not set"):
        read_api_key(OpenAITeacherConfig(model="m", api_key_env="NO_SUCH_KEY_VAR"))
    assert read_api_key(OpenAITeacherConfig(model="m", api_key_env=None)) == "EMPTY"
    for kwargs, match in [
        ({}, "teacher.model is required"),
        ({"model": "m", "concurrency": 0}, "teacher.concurrency"),
        ({"model": "m", "timeout": 0}, "teacher.timeout"),
        ({"model": "m", "base_url": "127.0.0.1:8000"}, "teacher.base_url"),
    ]:
        with pytest.raises(ConfigError, match=match):
            OpenAITeacherConfig(**kwargs)
