"""LLM-judge verifier: an OpenAI-compatible model grades each answer against a rubric.

The rubric is a prompt template with ``{prompt}`` and ``{response}``; the judge's
reply is searched for a score (:func:`parse_score`: ``[[7]]``, ``Rating: 7``,
``7/10``, a bare ``7``, in that order of trust), and the sample passes when the
score reaches ``threshold``. A reply without a usable score is not a failure of
the answer: the verdict is unverifiable (``passed=None``, error
``"unparseable_judge_reply"``) and keeps the start of the reply for inspection.

The HTTP side is a *transport*: a callable from a batch of chat prompts to
:class:`JudgeReply` objects, in order. :class:`OpenAIJudgeClient` (the openai SDK,
with its own retries, threads for concurrency) is the default for standalone use;
datagen passes a transport built on its API teacher instead (same retry policy,
same request cache). An optional ``cache`` mapping stores replies by request.

Example:
    >>> parse_score("The answer is clear and correct. Rating: [[8]]", 1, 10)
    8.0
    >>> parse_score("Rating: **[number]**", 1, 10) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from verifiers.reward import Prompt, final_answer, to_messages
from verifiers.types import NO_ANSWER, Verdict

VERSION = "1"

DEFAULT_RUBRIC = """You are grading the answer an AI assistant gave to a user. Judge how helpful, \
correct, relevant and clear it is for this request. Be strict and impartial; length is not merit.

[User request]
{prompt}

[Assistant answer]
{response}

First explain your judgement in two or three sentences. Then give a score from 1 (useless or \
wrong) to 10 (excellent) on the last line, exactly in this form: Rating: [[N]]"""


@dataclass(frozen=True)
class JudgeConfig:
    """Options of the LLM-judge verifier (any OpenAI-compatible endpoint)."""

    model: str | None = None
    """Model name the endpoint serves, e.g. ``gpt-4o-mini`` or ``Qwen/Qwen2.5-72B-Instruct``.
    Required."""
    base_url: str = "https://api.openai.com/v1"
    """Endpoint root, usually ending in ``/v1`` (``http://127.0.0.1:8000/v1`` for vllm serve)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (never the key itself); None for a
    local server started without a key."""
    rubric: str = DEFAULT_RUBRIC
    """The judge's prompt: ``{prompt}`` becomes the user's last request, ``{response}`` the
    answer (plain replacement, so other braces are safe). Ask for ``Rating: [[N]]``."""
    system_prompt: str | None = None
    """System message sent before the rubric (None: none)."""
    min_score: float = 1.0
    """Lowest score of the rubric's scale; parsed scores outside the scale are ignored."""
    max_score: float = 10.0
    """Highest score of the rubric's scale (also the denominator accepted in ``N/10``)."""
    threshold: float = 7.0
    """Passed when the parsed score is >= this."""
    temperature: float = 0.0
    """Sampling temperature of the judge (0: its most likely verdict)."""
    max_tokens: int = 512
    """Upper bound on the judge's reply; leave room for its explanation before the score."""
    timeout: float = 120.0
    """Seconds one judge request may take before it is retried."""
    max_retries: int = 4
    """Retries of one request after a transient failure (429, 5xx, timeout)."""
    concurrency: int = 8
    """Judge requests in flight at once."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields sent with every judge request (e.g. ``{chat_template_kwargs:
    {enable_thinking: false}}`` for vLLM); part of the cache key."""
    strip_reasoning: bool = True
    """Show the judge only the final answer, without the ``<think>`` reasoning."""
    max_response_chars: int = 16_000
    """Longer answers are cut to this many characters (their start kept) in the rubric."""
    reply_chars: int = 300
    """Characters of an unparseable reply kept in the verdict's details."""
    cache_path: str | None = None
    """datagen only: the judge's reply cache (None: RUN_DIR/cache/judge.sqlite)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError(
                "model is required for the judge verifier: set model=<the model name the "
                "endpoint serves> and base_url=<its root, e.g. http://127.0.0.1:8000/v1> "
                "(and api_key_env=<variable holding the key>, or null for none)"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        missing = [f for f in ("{prompt}", "{response}") if f not in self.rubric]
        if missing:
            raise ValueError(f"rubric must contain {missing}: they mark where the text goes")
        if not self.min_score < self.max_score:
            raise ValueError("min_score must be below max_score")
        if not self.min_score <= self.threshold <= self.max_score:
            raise ValueError(f"threshold must lie in [{self.min_score}, {self.max_score}]")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout <= 0:
            raise ValueError("concurrency must be >= 1, max_retries >= 0 and timeout > 0")
        if self.max_tokens < 1 or self.max_response_chars < 1 or self.reply_chars < 0:
            raise ValueError("max_tokens and max_response_chars must be >= 1, reply_chars >= 0")


# ---------------------------------------------------------------------------
# Prompt and parsing


def judge_messages(prompt: Prompt, response: str, cfg: JudgeConfig) -> list[dict[str, str]]:
    """The chat prompt that asks the judge about one answer.

    ``{prompt}`` is the last user turn of a chat prompt (the request being answered).
    """
    users = [m["content"] for m in to_messages(prompt) if m["role"] == "user"]
    if len(response) > cfg.max_response_chars:
        response = response[: cfg.max_response_chars] + "\n[... answer cut for length]"
    text = cfg.rubric.replace("{prompt}", users[-1] if users else "")
    text = text.replace("{response}", response)
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return [*system, {"role": "user", "content": text}]


_NUM = r"([-+]?\d+(?:\.\d+)?)"
_OUT_OF = r"(?:\s*(?:/|out\s+of)\s*" + _NUM + r")?"
_TIERS = (
    re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]"),
    re.compile(
        r"\b(?:rating|score|grade)\b[^\d\n\[\]]{0,24}?\[?\s*" + _NUM + _OUT_OF, re.IGNORECASE
    ),
    re.compile(_NUM + r"\s*(?:/|out\s+of)\s*" + _NUM, re.IGNORECASE),
    re.compile(r"^[^\w+\-]*" + _NUM + r"\W*$"),
)


def parse_score(reply: str, min_score: float, max_score: float) -> float | None:
    """Find the judge's score in its reply, or None.

    Patterns, most trusted first: ``[[N]]``; ``rating``/``score``/``grade`` followed by a
    number (``Rating: **7**``, ``my score is 7/10``); ``N/M`` or ``N out of M``; a reply
    that is only a number. Within a pattern the last match wins (judges conclude at the
    end). A number outside ``[min_score, max_score]``, or over a denominator other than
    ``max_score``, is not a score.

    Args:
        reply: The judge's reply (``<think>`` reasoning is ignored).
        min_score: Bottom of the scale.
        max_score: Top of the scale.

    Returns:
        The score, or None when no pattern gives a usable number.

    Example:
        >>> parse_score("I'd say 7 out of 10.", 1, 10), parse_score("4/5", 1, 10)
        (7.0, None)
    """
    text = final_answer(reply) or reply
    for pattern in _TIERS:
        for match in reversed(list(pattern.finditer(text))):
            groups = match.groups()
            value = float(groups[0])
            out_of = groups[1] if len(groups) > 1 else None
            if out_of is not None and float(out_of) != max_score:
                continue
            if min_score <= value <= max_score:
                return value
    return None


# ---------------------------------------------------------------------------
# Transport


@dataclass(frozen=True)
class JudgeReply:
    """One judge request's outcome: the reply text, or why there is none."""

    text: str | None
    error: str | None = None


Transport = Callable[[Sequence[list[dict[str, str]]]], list[JudgeReply]]
"""Chat prompts in, one :class:`JudgeReply` per prompt out, in order."""


class OpenAIJudgeClient:
    """Default transport: the openai SDK (its retries and timeout), a thread per request.

    Args:
        cfg: Endpoint, model, key variable, timeout, retries and concurrency.

    Raises:
        ValueError: The key variable named by ``cfg.api_key_env`` is not set.
    """

    def __init__(self, cfg: JudgeConfig) -> None:
        from openai import OpenAI

        key = "EMPTY"
        if cfg.api_key_env is not None:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise ValueError(
                    f"api_key_env: the environment variable {cfg.api_key_env} is not set; "
                    "export it, or set api_key_env to null for a server without a key"
                )
        self.cfg = cfg
        self._client = OpenAI(
            base_url=cfg.base_url, api_key=key, max_retries=cfg.max_retries, timeout=cfg.timeout
        )

    def _one(self, messages: list[dict[str, str]]) -> JudgeReply:
        try:
            response = self._client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
                extra_body=dict(self.cfg.extra_body) or None,
            )
            return JudgeReply(response.choices[0].message.content or "")
        except Exception as exc:  # recorded on the verdict; the batch goes on
            return JudgeReply(None, f"{type(exc).__name__}: {str(exc)[:200]}")

    def __call__(self, batch: Sequence[list[dict[str, str]]]) -> list[JudgeReply]:
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(self._one, batch))


def judge_key(messages: list[dict[str, str]], cfg: JudgeConfig) -> str:
    """Cache key of one judge request: model, messages and sampling."""
    blob = json.dumps(
        [cfg.model, messages, cfg.temperature, cfg.max_tokens, cfg.extra_body],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


# ---------------------------------------------------------------------------
# Verification


def judge_batch(
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    cfg: JudgeConfig,
    *,
    transport: Transport | None = None,
    cache: MutableMapping[str, str] | None = None,
) -> list[Verdict]:
    """Ask the judge about every answer and turn its replies into verdicts.

    Args:
        prompts: Prompt text or chat messages, one per response.
        responses: Whole model responses (reasoning dropped when ``cfg.strip_reasoning``).
        cfg: Verifier options.
        transport: Sends the judge prompts (default: :class:`OpenAIJudgeClient`).
        cache: Optional store of replies by :func:`judge_key`; hits are not sent again.

    Returns:
        One ``Verdict`` per response: ``score`` is the parsed score; ``passed`` is
        ``score >= threshold``. An empty answer fails (error ``"no_answer"``, nothing sent);
        an unparseable reply (``"unparseable_judge_reply"``, with ``reply``) or a failed
        request (``"judge_request_failed"``, with ``reason``) is unverifiable.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    answers = [final_answer(r) if cfg.strip_reasoning else r.strip() for r in responses]
    todo = [i for i, a in enumerate(answers) if a]
    requests = {i: judge_messages(prompts[i], answers[i], cfg) for i in todo}
    replies: dict[int, JudgeReply] = {}
    keys = {i: judge_key(m, cfg) for i, m in requests.items()} if cache is not None else {}
    if cache is not None:
        replies = {i: JudgeReply(cache[k]) for i, k in keys.items() if k in cache}
    missing = [i for i in todo if i not in replies]
    if missing:
        send = transport or OpenAIJudgeClient(cfg)
        for i, reply in zip(missing, send([requests[i] for i in missing]), strict=True):
            replies[i] = reply
            if cache is not None and reply.text is not None:
                cache[keys[i]] = reply.text
    return [_verdict(replies.get(i), cfg) for i in range(len(answers))]


def _verdict(reply: JudgeReply | None, cfg: JudgeConfig) -> Verdict:
    scale = [cfg.min_score, cfg.max_score]
    details: dict[str, Any]
    if reply is None:
        return Verdict("judge", VERSION, False, None, {"error": NO_ANSWER})
    if reply.text is None:
        details = {"error": "judge_request_failed", "reason": (reply.error or "")[:300]}
        return Verdict("judge", VERSION, None, None, details)
    score = parse_score(reply.text, cfg.min_score, cfg.max_score)
    if score is None:
        details = {"error": "unparseable_judge_reply", "reply": reply.text[: cfg.reply_chars]}
        return Verdict("judge", VERSION, None, None, details)
    details = {"scale": scale, "threshold": cfg.threshold, "error": None}
    return Verdict("judge", VERSION, score >= cfg.threshold, score, details)
