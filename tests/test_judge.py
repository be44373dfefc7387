"""LLM-judge verifier: score parsing, and the judge path against a real local server.

The server is llama.cpp's OpenAI-compatible server on 127.0.0.1 with the
bundled SmolLM2-135M (``helpers/llama_server.py``; the suite's one, conftest.py's
``llama_server``, which takes a key), behind the fault-injecting
proxy (``helpers/fault_proxy.py``) that counts requests and injects errors.
SmolLM2-135M is a poor judge: greedy decoding of the rubric below gives
"Your rating is 1." for most answers and sometimes a reply with no score at all,
which is the unparseable case this verifier must record, not crash on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.fault_proxy import FaultProxy

from datagen.config import VerifierChoice
from datagen.records import Sample
from datagen.stages.base import StageContext
from datagen.stages.verify import verify
from verifiers.judge import (
    JudgeConfig,
    JudgeReply,
    OpenAIJudgeClient,
    judge_batch,
    judge_messages,
    parse_score,
)

from .conftest import LLAMA_KEY_ENV

RUBRIC = """Please rate the following answer on a scale of 1 to 10.
Question: {prompt}
Answer: {response}
Write your rating as: Rating: [[number]]"""


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Rating: [[8]]", 8.0),
        ("The answer is fine.\n\nRating: [[7.5]]", 7.5),
        ("First I thought [[3]], but on reflection: [[6]]", 6.0),  # the last one wins
        ("Rating: **9**", 9.0),
        ("Your rating is 1.", 1.0),
        ("I would give it a score of 7/10.", 7.0),
        ("Score: 8 out of 10", 8.0),
        ("Overall, 6/10.", 6.0),
        ("7", 7.0),
        ("**8**", 8.0),
        ("<think>maybe [[2]]</think>Rating: [[9]]", 9.0),  # reasoning is ignored
        # unparseable: no number, a placeholder, out of range, wrong denominator
        ("Rating: **[number]**", None),
        ("Rating: [[N]]", None),
        ("The answer is good.", None),
        ("Rating: [[11]]", None),
        ("Rating: 0", None),
        ("4/5", None),
        ("1. The answer is 10 points better than the original.", None),
        ("", None),
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply, 1, 10) == expected


def cfg(**kw) -> JudgeConfig:
    return JudgeConfig(**{"model": "judge", "api_key_env": None, "rubric": RUBRIC, **kw})


class FakeTransport:
    """Answers from a script and records what was sent."""

    def __init__(self, replies: list[JudgeReply]) -> None:
        self.replies = list(replies)
        self.sent: list[list[dict[str, str]]] = []

    def __call__(self, batch):
        self.sent.extend(batch)
        out, self.replies = self.replies[: len(batch)], self.replies[len(batch) :]
        return out


def test_verdicts_from_replies_and_what_is_sent():
    transport = FakeTransport(
        [JudgeReply("Rating: [[8]]"), JudgeReply("no idea"), JudgeReply(None, "HTTP 400: bad")]
    )
    prompts = [[{"role": "system", "content": "sys"}, {"role": "user", "content": "Q1?"}]] * 4
    answers = ["<think>hidden</think>A1", "", "A3", "A4"]
    verdicts = judge_batch(prompts, answers, cfg(threshold=7), transport=transport)
    assert [(v.passed, v.score) for v in verdicts] == [(True, 8.0), (False, None)] + [
        (None, None)
    ] * 2
    assert verdicts[1].details["error"] == "no_answer"  # empty: nothing sent
    assert verdicts[2].details == {"error": "unparseable_judge_reply", "reply": "no idea"}
    assert verdicts[3].details["error"] == "judge_request_failed"
    assert len(transport.sent) == 3
    first = transport.sent[0][-1]["content"]
    assert "Question: Q1?" in first and "Answer: A1" in first and "hidden" not in first


def test_cache_hook_answers_repeated_requests():
    store: dict[str, str] = {}
    transport = FakeTransport([JudgeReply("[[5]]"), JudgeReply("[[9]]")])
    first = judge_batch(["q", "q"], ["a", "b"], cfg(), transport=transport, cache=store)
    again = judge_batch(["q", "q"], ["a", "b"], cfg(), transport=transport, cache=store)
    assert [v.score for v in first] == [v.score for v in again] == [5.0, 9.0]
    assert len(transport.sent) == 2 and len(store) == 2
    other = FakeTransport([JudgeReply("1")])
    judge_batch(["q"], ["a"], cfg(temperature=0.5), transport=other, cache=store)
    assert len(store) == 3  # another sampling setting is another request


def test_long_answers_are_cut_and_unparseable_replies_truncated():
    messages = judge_messages("q", "x" * 50, cfg(max_response_chars=10))
    assert "x" * 10 + "\n[... answer cut" in messages[-1]["content"]
    long_reply = FakeTransport([JudgeReply("abcdefghij")])
    verdict = judge_batch(["q"], ["a"], cfg(reply_chars=5), transport=long_reply)[0]
    assert verdict.details["reply"] == "abcde"


def test_config_errors_say_what_to_set():
    with pytest.raises(ValueError, match="model="):
        JudgeConfig()
    with pytest.raises(ValueError, match=r"\{response\}"):
        JudgeConfig(model="m", rubric="Rate {prompt}")
    with pytest.raises(ValueError, match="threshold"):
        JudgeConfig(model="m", threshold=11)


def test_the_client_sends_the_named_key_or_none(monkeypatch):
    """The server tests below send a key; a keyless server gets a placeholder, and a key
    variable that is not set is named."""
    assert OpenAIJudgeClient(cfg(api_key_env=None))._client.api_key == "EMPTY"
    monkeypatch.setenv("DATAGEN_TEST_JUDGE_KEY", "k-123")
    assert OpenAIJudgeClient(cfg(api_key_env="DATAGEN_TEST_JUDGE_KEY"))._client.api_key == "k-123"
    monkeypatch.delenv("DATAGEN_TEST_JUDGE_KEY")
    with pytest.raises(ValueError, match="DATAGEN_TEST_JUDGE_KEY is not set"):
        OpenAIJudgeClient(cfg(api_key_env="DATAGEN_TEST_JUDGE_KEY"))


# ---------------------------------------------------------------------------
# Against the real local server


@pytest.fixture(scope="module")
def proxy(llama_server):
    p = FaultProxy(llama_server.port).start()
    yield p
    p.stop()


QUESTIONS = ["What is the capital of France?", "What is 2+2?", "Name a colour."]
ANSWERS = ["Paris is the capital of France.", "Bananas are yellow.", "Blue."]


def server_cfg(proxy: FaultProxy, **kw) -> JudgeConfig:
    opts = {
        "base_url": proxy.base_url,
        "api_key_env": LLAMA_KEY_ENV,
        "max_tokens": 24,
        "concurrency": 1,
        "max_retries": 2,
    }
    return cfg(**{**opts, **kw})


def test_standalone_client_against_the_server(proxy):
    proxy.reset()
    verdicts = judge_batch(QUESTIONS, ANSWERS, server_cfg(proxy), transport=None)
    assert len(proxy.received()) == 3
    for v in verdicts:  # every reply gives a score on the scale, or is recorded as unparseable
        if v.score is None:
            assert v.passed is None and v.details["error"] == "unparseable_judge_reply"
            assert isinstance(v.details["reply"], str)
        else:
            assert 1 <= v.score <= 10 and v.passed is (v.score >= 7)
    assert any(v.score is not None for v in verdicts)
    # Two tokens cannot hold a score: the reply ("Your rating" or "Rating:") is recorded.
    two_tokens = server_cfg(proxy, max_tokens=2)
    cut = judge_batch(
        QUESTIONS[:1], ANSWERS[:1], two_tokens, transport=OpenAIJudgeClient(two_tokens)
    )
    assert cut[0].passed is None and cut[0].details["error"] == "unparseable_judge_reply"
    assert cut[0].details["reply"]


def samples(answers: list[str]) -> list[Sample]:
    return [
        Sample(
            id=f"s{i}",
            problem_id=f"p{i}",
            domain="general",
            messages=[{"role": "user", "content": q}],
            reference=None,
            teacher="t",
            model="m",
            sample_index=0,
            content=a,
        )
        for i, (q, a) in enumerate(zip(QUESTIONS, answers, strict=True))
    ]


def test_verify_stage_uses_the_api_teacher_client_and_its_cache(proxy, tmp_path):
    """verifier=judge in the pipeline: one request per answer, then the reply cache."""
    proxy.reset()
    choice = VerifierChoice("judge", server_cfg(proxy))
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    first = verify(samples(ANSWERS), ctx, cfg={"verifier": choice})
    ctx.close()
    assert len(proxy.received()) == 3 and (tmp_path / "cache" / "judge.sqlite").exists()
    assert sum(ctx.stats["verify"].values()) == 3
    assert all(s.verdicts[0].verifier == "judge" for s in first)

    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    again = verify(samples(ANSWERS), ctx, cfg={"verifier": choice})
    ctx.close()
    assert len(proxy.received()) == 3  # nothing sent: every reply came from the cache
    assert [s.verdicts[0].to_row() for s in again] == [s.verdicts[0].to_row() for s in first]


def test_transient_errors_are_retried_and_bad_requests_recorded(proxy, tmp_path):
    proxy.reset({"[flaky]": ["503"], "[bad]": ["400"]})
    answers = ["Paris. [flaky]", "Four. [bad]", "Blue."]
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    out = verify(
        samples(answers), ctx, cfg={"verifier": VerifierChoice("judge", server_cfg(proxy))}
    )
    ctx.close()
    assert len(proxy.received("[flaky]")) == 2  # a 503, then the answer
    assert out[0].verdicts[0].details.get("error") != "judge_request_failed"
    assert out[1].passed is None
    assert out[1].verdicts[0].details["error"] == "judge_request_failed"
    assert "400" in out[1].verdicts[0].details["reason"]
