"""Teacher ``openai``: any OpenAI-compatible chat endpoint (hosted API, ``vllm serve``, llama.cpp).

Requests run concurrently on an asyncio loop in a background thread (so the
teacher also works inside Jupyter, whose own loop is already running), at most
``teacher.concurrency`` at a time. Each completion is handed back to
:meth:`Teacher.generate` the moment it arrives, which writes it to the request
cache before anything else happens: a ``kill -9`` loses only what was still in
flight. Failures are classified by :mod:`datagen.teachers.retry`: transient
ones are retried with backoff (honouring ``Retry-After``), a bad request is
recorded on its sample, and a refused key stops the stage at once.

The API key is read from the environment variable that ``teacher.api_key_env``
names; it is never part of the config, the cache, the outputs or the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from datagen.config import ConfigError, SamplingConfig, reject_non_finite
from datagen.safetext import redact_url, safe_message
from datagen.teachers.aio import Outbox, Window, http_limits, within
from datagen.teachers.base import (
    Completion,
    PriceConfig,
    Request,
    Teacher,
    TeacherFatalError,
    TeacherSpec,
    group_by_prompt,
    register_teacher,
)
from datagen.teachers.cache import RequestCache
from datagen.teachers.responses import parse_completion
from datagen.teachers.retry import backoff_delay, classify

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAITeacherConfig:
    """An OpenAI-compatible endpoint; see docs/teachers.md for DeepSeek, vLLM and llama.cpp."""

    name: str = "openai"
    model: str = ""
    """Model name the server serves (``deepseek-reasoner``, ``Qwen/QwQ-32B``); required."""
    base_url: str = "https://api.openai.com/v1"
    """Endpoint root, usually ending in ``/v1`` (``http://127.0.0.1:8000/v1`` for vllm serve)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the key (never the key itself).
    None: send no key (local servers started without ``--api-key``)."""
    concurrency: int = 16
    """Requests in flight at once."""
    timeout: float = 600.0
    """Seconds one request may take, from sending to the last byte (a deadline on the whole
    call, so a server that trickles bytes cannot hold it either); then it is retried like
    any transient failure, and after ``max_retries`` its samples are recorded as failed
    with the reason. Reasoning models can think for minutes: keep it above the longest answer."""
    max_retries: int = 8
    """Retries of one request after a transient failure (429, 5xx, timeout, dropped
    connection, malformed body) before its samples are recorded as failed."""
    backoff_initial: float = 1.0
    """Seconds before the first retry; doubles each time, with jitter."""
    backoff_max: float = 60.0
    """Cap, in seconds, on one backoff wait."""
    retry_after_max: float = 600.0
    """Cap, in seconds, on a wait the server asks for with ``Retry-After``."""
    stall_timeout: float | None = None
    """Stop the stage when no response has arrived for this many seconds while requests
    are in flight (a server that accepts connections but never answers): a guard over
    the whole stream, beside ``timeout`` on each request. None: ``timeout`` + 60; 0: never."""
    unreachable_after: float = 20.0
    """Stop the stage when every attempt for this many seconds ended in a refused or
    failed connection (the server is down); 0: retry as for any transient failure.
    A host name that does not resolve stops the stage at once."""
    max_consecutive_failures: int = 50
    """Stop the stage when this many requests in a row failed after all retries
    (the endpoint is down, not flaky); 0: never stop."""
    server_supports_n: bool = False
    """Ask for all of a prompt's samples in one request with ``n`` (vLLM, OpenAI). If the
    server returns fewer choices, the rest are requested one by one. False: one
    request per sample, each with its own seed (llama.cpp ignores ``n``)."""
    send_seed: bool = True
    """Send each sample's seed (set False for servers that reject ``seed``)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields sent with every request, e.g. ``{chat_template_kwargs:
    {enable_thinking: true}}`` or ``{top_k: 20}``; part of the cache key."""
    price: PriceConfig = field(default_factory=PriceConfig)
    """USD per million prompt and completion tokens, for cost reports."""
    cache_path: str | None = None
    """Request cache file (None: RUN_DIR/cache/requests.sqlite). Share it to share work."""
    cache_namespace: str | None = None
    """Replaces this backend and its base_url in the request cache key. Teachers that share
    a cache file and a namespace reuse each other's responses (same model name, prompt
    and sampling); None: only responses this backend and base_url produced are reused."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "teacher")
        self._check_required()
        self._check_url()
        self._check_ranges()
        self._check_waits()

    def _check_required(self) -> None:
        if not self.model:
            raise ConfigError(
                "teacher.model is required for teacher=openai: the name the server "
                "serves, e.g. teacher.model=deepseek-reasoner"
            )

    def _check_url(self) -> None:
        shown = redact_url(self.base_url)
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"teacher.base_url must start with http:// or https://, got {shown!r}"
            )
        try:
            parts = urlsplit(self.base_url)
            host, _ = parts.hostname, parts.port  # .port raises on a bad port
        except ValueError as exc:
            raise ConfigError(f"teacher.base_url is not a valid URL ({exc}): {shown!r}") from None
        if not host:
            raise ConfigError(
                f"teacher.base_url has no host name: {shown!r}; e.g. http://127.0.0.1:8000/v1"
            )

    def _check_ranges(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"teacher.concurrency must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ConfigError(f"teacher.timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0 or self.max_consecutive_failures < 0:
            raise ConfigError(
                "teacher.max_retries and teacher.max_consecutive_failures must be >= 0"
            )
        if self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise ConfigError("teacher.backoff_initial must be >= 0 and <= teacher.backoff_max")

    def _check_waits(self) -> None:
        if self.retry_after_max < 0:
            raise ConfigError(
                f"teacher.retry_after_max must be >= 0 seconds, got {self.retry_after_max}"
            )
        if self.stall_timeout is not None and self.stall_timeout < 0:
            raise ConfigError(
                "teacher.stall_timeout must be >= 0 seconds (0: never) or null, "
                f"got {self.stall_timeout}"
            )
        if self.unreachable_after < 0:
            raise ConfigError(
                "teacher.unreachable_after must be >= 0 seconds (0: never), "
                f"got {self.unreachable_after}"
            )

    @property
    def stall_seconds(self) -> float:
        """The stall limit in effect (``stall_timeout``, or ``timeout`` + 60 when None)."""
        return self.timeout + 60.0 if self.stall_timeout is None else self.stall_timeout


def request_json(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON that ``chat.completions.create(**body)`` would send: ``extra_body`` merged in."""
    payload = {k: v for k, v in body.items() if k != "extra_body"}
    payload.update(body.get("extra_body") or {})
    return payload


def read_api_key(cfg: OpenAITeacherConfig) -> str:
    """The key from the environment variable ``cfg.api_key_env`` names ("EMPTY" if None)."""
    if cfg.api_key_env is None:
        return "EMPTY"
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ConfigError(
            f"teacher.api_key_env: the environment variable {cfg.api_key_env} is not set; "
            f"export it, or set teacher.api_key_env=null for a server without a key"
        )
    return key


@dataclass
class _RetryLog:
    """INFO lines that summarise retries while they happen (at most one per ``every`` s)."""

    every: float = 10.0
    last: str = ""
    _since: int = 0
    _logged_at: float = -1e9

    def note(self, reason: str, teacher: OpenAITeacher) -> None:
        self.last = reason
        self._since += 1
        now = time.monotonic()
        if now - self._logged_at < self.every:
            return
        logger.info(
            "openai teacher: %d retr%s since the last report (%d in all, %d HTTP requests, "
            "%d failed for good); last: %s",
            self._since,
            "y" if self._since == 1 else "ies",
            teacher.retries,
            teacher.http_requests,
            teacher.failed,
            reason,
        )
        self._since, self._logged_at = 0, now


@dataclass
class _RunState:
    fatal: TeacherFatalError | None = None
    """Set by the first fatal error: no request starts after it."""


class OpenAITeacher(Teacher):
    """Async client for an OpenAI-compatible ``/chat/completions`` endpoint."""

    name = "openai"
    continuous = True  # one sliding window over the whole stage (generate_stream)

    def __init__(self, cfg: OpenAITeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.model, cache, cfg.price)
        self.cfg = cfg
        self.cache_namespace = cfg.cache_namespace
        self._api_key = read_api_key(cfg)
        self._rng = random.Random()
        self.http_requests = 0
        """HTTP calls sent by this process (retries and n-requests included)."""
        self.retries = 0
        self.failed = 0
        self._consecutive_failures = 0
        """Requests in a row that failed after all retries, across batches."""
        self._warned_n = False
        self._last_answer = time.monotonic()
        """When the last response arrived (or the current batch started): the stall clock."""
        self._connect_failing_since: float | None = None
        """Start of the current run of attempts that could not even connect."""
        self._retry_log = _RetryLog()
        self.window = Window(cfg.concurrency)
        """How full the request window was (touched only on the loop thread)."""
        self._url = redact_url(cfg.base_url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="datagen-openai-teacher", daemon=True
        )
        self._thread.start()
        self._client = asyncio.run_coroutine_threadsafe(self._make_client(), self._loop).result()

    async def _make_client(self) -> Any:
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        # Our own retry loop replaces the SDK's, which would retry a 401 and
        # not record why a request failed.
        return AsyncOpenAI(
            base_url=self.cfg.base_url,
            api_key=self._api_key,
            max_retries=0,
            timeout=self.cfg.timeout,
            http_client=DefaultAsyncHttpxClient(limits=http_limits(self.cfg.concurrency)),
        )

    def key_extra(self) -> dict[str, Any] | None:
        return {"extra_body": dict(self.cfg.extra_body)} if self.cfg.extra_body else None

    def backend_identity(self) -> dict[str, Any]:
        return {"backend": self.name, "base_url": self.cfg.base_url.rstrip("/")}

    def build_body(
        self, messages: list[dict[str, str]], n: int, seed: int, sampling: SamplingConfig
    ) -> dict[str, Any]:
        """Keyword arguments of ``chat.completions.create`` for one request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self.cfg.send_seed:
            body["seed"] = seed
        if self.cfg.extra_body:
            body["extra_body"] = dict(self.cfg.extra_body)
        return body

    # -- the sync face: an iterator fed by the loop thread ---------------------------
    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for chunk in self.complete_chunks(requests, sampling):
            yield from chunk

    def complete_chunks(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Completion]]]:
        groups = (
            group_by_prompt(requests)
            if self.cfg.server_supports_n
            else [[i] for i in range(len(requests))]
        )
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(
            self._run(requests, groups, sampling, results), self._loop
        )
        remaining = len(requests)
        try:  # from the moment requests can go out: a Ctrl-C anywhere below cancels them
            self._last_answer = time.monotonic()
            while remaining:
                try:
                    item = results.get(timeout=1.0)
                except queue.Empty:
                    # Done and still empty: the loop's last put may have landed between
                    # the timeout above and this check, so emptiness is read after done.
                    if future.done() and results.empty():
                        future.result()  # re-raise a crash of the loop side
                        raise RuntimeError("openai teacher: the request loop ended early") from None
                    self._check_stall(remaining)
                    continue
                if isinstance(item, BaseException):
                    raise item
                remaining -= len(item)
                yield item
        finally:
            if not future.done():
                future.cancel()  # the consumer stopped early: stop sending
            # Wait for the cancellation to land; its outcome was raised above already.
            with contextlib.suppress(FutureCancelled, Exception):
                future.result(timeout=30)
        logger.info(
            "openai teacher: %d samples, %d HTTP requests, %d retries, %d failed so far",
            len(requests),
            self.http_requests,
            self.retries,
            self.failed,
        )

    async def _run(
        self,
        requests: Sequence[Request],
        groups: list[list[int]],
        sampling: SamplingConfig,
        results: queue.SimpleQueue[Any],
    ) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        state = _RunState()
        outbox = Outbox(asyncio.get_running_loop(), results)

        window = self.window
        window.queued(len(groups))

        async def one(group: list[int]) -> None:
            async with sem:
                window.started()
                try:
                    if state.fatal is not None:
                        raise state.fatal
                    await self._complete_group(
                        [(i, requests[i]) for i in group], sampling, outbox, state
                    )
                finally:
                    window.finished()

        tasks = [asyncio.create_task(one(g)) for g in groups]
        try:
            await asyncio.gather(*tasks)  # the first error comes out at once
            outbox.flush()
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            window.dropped(len(groups))
            if not isinstance(exc, asyncio.CancelledError):
                outbox.flush()  # what arrived before the error is still handed on (cached)
                results.put(state.fatal or exc)
            raise

    async def _complete_group(
        self,
        items: list[tuple[int, Request]],
        sampling: SamplingConfig,
        outbox: Outbox,
        state: _RunState,
    ) -> None:
        first = items[0][1]
        outcome = await self._call(first.messages, len(items), first.seed, sampling, state)
        if isinstance(outcome, str):
            self.failed += len(items)
            for i, _ in items:
                outbox.add((i, Completion("", error=outcome)))
            return
        for (i, _), completion in zip(items, outcome, strict=False):
            outbox.add((i, completion))
        rest = items[len(outcome) :]
        if rest and not self._warned_n:
            self._warned_n = True
            logger.warning(
                "the server returned %d choice(s) for n=%d; asking for the rest one by one "
                "(set teacher.server_supports_n=false for this server)",
                len(outcome),
                len(items),
            )
        for item in rest:
            await self._complete_group([item], sampling, outbox, state)

    async def _call(
        self,
        messages: list[dict[str, str]],
        n: int,
        seed: int,
        sampling: SamplingConfig,
        state: _RunState,
    ) -> list[Completion] | str:
        """One request with retries: its completions, or why it failed for good."""
        body = self.build_body(messages, n, seed, sampling)
        payload = request_json(body)
        reason = ""
        for attempt in range(self.cfg.max_retries + 1):
            if state.fatal is not None:  # another request found the endpoint unusable
                raise state.fatal
            self.http_requests += 1
            sent = time.monotonic()
            try:
                # The SDK's generic ``post``, with the body as JSON and the answer as the
                # decoded JSON: ``chat.completions.create`` would walk the body through its
                # type transforms and build pydantic models of the answer, a third of the
                # client's CPU per request (benchmarks/bench_generate_stream.py, instant
                # server), which caps what one process drives against a fast server.
                response = await within(
                    self._client.post("/chat/completions", body=payload, cast_to=object),
                    self.cfg.timeout,
                )
                completions = parse_completion(response, n)
                self.window.answer(time.monotonic() - sent)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                verdict = classify(exc)
            else:
                self._consecutive_failures = 0
                self._connect_failing_since = None
                self._last_answer = time.monotonic()
                return completions
            reason = safe_message(self._redact(verdict.reason))
            if verdict.action == "fatal":
                state.fatal = TeacherFatalError(f"teacher=openai at {self._url}: {reason}")
                raise state.fatal
            self._check_unreachable(verdict.kind, reason, state)
            if verdict.action == "fail":
                return reason
            if attempt == self.cfg.max_retries:
                break
            if verdict.retry_after is not None:
                delay = min(verdict.retry_after, self.cfg.retry_after_max)
            else:
                delay = backoff_delay(
                    attempt, self.cfg.backoff_initial, self.cfg.backoff_max, self._rng
                )
            self.retries += 1
            logger.debug("retry %d in %.2fs after %s", attempt + 1, delay, reason)
            self._retry_log.note(reason, self)
            await asyncio.sleep(delay)
        self._consecutive_failures += 1
        limit = self.cfg.max_consecutive_failures
        if limit and self._consecutive_failures >= limit:
            state.fatal = TeacherFatalError(
                f"teacher=openai at {self._url}: {limit} requests in a row failed after "
                f"{self.cfg.max_retries} retries each (last: {reason}); is the server up? "
                f"Finished samples are cached: rerun to resume."
            )
            raise state.fatal
        return f"gave up after {self.cfg.max_retries + 1} attempts: {reason}"

    def _check_stall(self, remaining: int) -> None:
        """Stop when no response has arrived for ``teacher.stall_timeout`` seconds."""
        limit = self.cfg.stall_seconds
        quiet = time.monotonic() - self._last_answer
        if limit and quiet > limit:
            raise TeacherFatalError(
                f"teacher=openai at {self._url}: no response for {quiet:.0f}s with {remaining} "
                f"sample(s) outstanding ({self.retries} retries, last: "
                f"{self._retry_log.last or 'none'}): the server accepts connections but does not "
                "answer. Check it, or raise teacher.stall_timeout if answers take longer. "
                "Finished samples are cached: rerun to resume."
            )

    def _check_unreachable(self, kind: str, reason: str, state: _RunState) -> None:
        """Stop when attempts have failed to connect for ``teacher.unreachable_after`` seconds."""
        if kind != "connect":
            self._connect_failing_since = None
            return
        now = time.monotonic()
        if self._connect_failing_since is None:
            self._connect_failing_since = now
        limit = self.cfg.unreachable_after
        if limit and now - self._connect_failing_since >= limit:
            state.fatal = TeacherFatalError(
                f"teacher=openai at {self._url}: no connection could be opened for "
                f"{now - self._connect_failing_since:.0f}s ({reason}): is the server running? "
                "Finished samples are cached: rerun to resume."
            )
            raise state.fatal

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != "EMPTY":
            text = text.replace(self._api_key, "***")
        return text

    @property
    def in_flight(self) -> int:
        """Requests in flight right now (the progress bar's gauge)."""
        return self.window.in_flight

    def window_totals(self) -> dict[str, float]:
        """The window's sums so far (:meth:`Window.totals`), read on the loop thread."""
        return asyncio.run_coroutine_threadsafe(self._totals(), self._loop).result(10)

    async def _totals(self) -> dict[str, float]:
        return self.window.totals()

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "http_requests": self.http_requests,
            "retries": self.retries,
            "failed": self.failed,
        }

    def close(self) -> None:
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(10)
            except Exception:  # closing is best effort
                logger.debug("closing the HTTP client failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
        super().close()


register_teacher(TeacherSpec("openai", OpenAITeacherConfig, OpenAITeacher, default_batch_size=64))
