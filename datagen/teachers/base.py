"""The teacher interface: problems and sampling options in, samples out.

Concrete teachers implement :meth:`Teacher.complete_many`, which turns a list
of requests into completions in any order (sequentially, concurrently, or as
one engine batch). Everything else is shared: request keys, the cache lookup
before any request is sent, the cache write as each response arrives, the
split of ``<think>`` reasoning from the answer, cost, and the Sample records.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from datagen.config import ConfigError, SamplingConfig, reject_non_finite
from datagen.records import Problem, Sample, content_hash
from datagen.registry import declare
from datagen.teachers.cache import RequestCache

logger = logging.getLogger(__name__)

THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


class TeacherFatalError(ConfigError):
    """The endpoint refuses every request (bad key, no access, unknown model, unreachable).

    Raised instead of recording one failure per request: the stage stops, what
    was already generated stays in the cache, and the message says what to fix.
    """


@dataclass(frozen=True)
class Request:
    """One sample to generate: a prompt, its sample index and its derived seed."""

    key: str
    messages: list[dict[str, str]]
    sample_index: int
    seed: int


@dataclass(frozen=True)
class Completion:
    """What a teacher returns for one request, before it becomes a Sample."""

    text: str
    reasoning: str | None = None
    """A separate reasoning field when the server returns one (``reasoning_content``)."""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    """Set when the request failed for good (after retries); nothing is cached then."""
    prompt_share: float = 1.0
    """Share of the prompt's tokens billed to this sample: 1/k when k samples came
    from one request with ``n=k`` (the prompt is paid once per request)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        """Rebuild a cached completion, ignoring fields this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class PriceConfig:
    """What the teacher's provider charges, in USD per million tokens.

    Not frozen, unlike other configs: it nests inside a teacher config, and
    OmegaConf cannot merge overrides into a nested frozen dataclass (its node
    is read-only). Treat it as read-only all the same.
    """

    prompt_per_million: float = 0.0
    """USD per million prompt (input) tokens, e.g. 0.55 for DeepSeek-R1 (cache miss)."""
    completion_per_million: float = 0.0
    """USD per million completion (output) tokens, reasoning tokens included."""

    def __post_init__(self) -> None:
        reject_non_finite(self, "teacher.price")
        if self.prompt_per_million < 0 or self.completion_per_million < 0:
            raise ConfigError("teacher.price.*_per_million must be >= 0")

    def cost(self, c: Completion) -> float:
        """USD cost of one completion (0 for failures, which providers do not bill)."""
        prompt = c.prompt_tokens * c.prompt_share * self.prompt_per_million
        return (prompt + c.completion_tokens * self.completion_per_million) / 1e6


def split_reasoning(text: str, reasoning: str | None = None) -> tuple[str | None, str]:
    """Separate thinking from the final answer.

    Handles ``<think>...</think>`` blocks in the text and a lone ``</think>``
    (templates that open the block in the prompt). A reasoning field returned
    separately by the server wins.

    Args:
        text: The completion text.
        reasoning: A reasoning field returned beside the text, if any.

    Returns:
        ``(reasoning or None, final answer text)``.

    >>> split_reasoning("<think>2+2 is 4</think>The answer is 4.")
    ('2+2 is 4', 'The answer is 4.')
    """
    if reasoning:
        return reasoning, text.strip()
    match = THINK_RE.search(text)
    if match:
        return match.group(1).strip(), (text[: match.start()] + text[match.end() :]).strip()
    if "</think>" in text:
        head, _, tail = text.partition("</think>")
        return head.strip(), tail.strip()
    return None, text.strip()


def request_key(
    model: str,
    messages: list[dict[str, str]],
    sampling: SamplingConfig,
    sample_index: int,
    seed: int,
    extra: dict[str, Any] | None = None,
    scope: dict[str, Any] | None = None,
) -> str:
    """Cache key: everything that shapes one response, and nothing that does not.

    ``n`` is left out on purpose: raising the samples per prompt from 4 to 8
    reuses the first four. ``extra`` holds teacher-specific options that change
    the response (an API's ``extra_body``, a chat template's kwargs); it enters
    the key only when non-empty. ``scope`` says who answers (the backend and its
    endpoint or weights, or a ``teacher.cache_namespace`` chosen to share a cache
    on purpose; :meth:`Teacher.cache_scope`): two servers that both call their
    model ``smollm2`` do not answer for each other.

    Args:
        model: The model name recorded on samples.
        messages: The prompt.
        sampling: Sampling options (``n`` and ``seed`` excluded).
        sample_index: Which of the prompt's samples this is.
        seed: The sample's own derived seed.
        extra: Teacher-specific options that shape the response.
        scope: Who answers (None: left out of the key, as before key format 2).

    Returns:
        A 32-hex-digit content hash.
    """
    return _key(model, messages, sampling_params(sampling), sample_index, seed, extra, scope)


def sampling_params(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling options that enter a cache key (``n`` and ``seed`` left out)."""
    return {k: v for k, v in asdict(sampling).items() if k not in ("n", "seed")}


def _key(
    model: str,
    messages: list[dict[str, str]],
    params: dict[str, Any],
    sample_index: int,
    seed: int,
    extra: dict[str, Any] | None,
    scope: dict[str, Any] | None,
) -> str:
    parts: list[Any] = [model, messages, params, sample_index, seed]
    if extra:
        parts.append(extra)
    if scope:
        parts.append({"scope": scope})
    return content_hash(*parts, length=32)


def sample_seed(base_seed: int, problem_id: str, sample_index: int) -> int:
    """The seed of one sample: stable per (run seed, problem, index)."""
    return int(content_hash(base_seed, problem_id, sample_index, length=8), 16) % (2**31)


def group_by_prompt(requests: Sequence[Request]) -> list[list[int]]:
    """Indices of requests that share one prompt, in first-seen order.

    Teachers that can ask for ``n`` samples in one call (vLLM, servers that
    support ``n``) send one call per group.
    """
    groups: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        groups.setdefault(content_hash(req.messages), []).append(i)
    return list(groups.values())


class Teacher(ABC):
    """Base class: cache-first generation over a batch of problems."""

    name: str = "teacher"
    continuous: bool = False
    """True when :meth:`generate_stream` keeps the endpoint saturated over any number of
    problems (requests sent as others finish); the runner then streams the stage
    instead of cutting it into batches. False keeps the batch-by-batch behaviour."""

    def __init__(
        self, model: str, cache: RequestCache | None = None, price: PriceConfig | None = None
    ) -> None:
        self.model = model
        self.cache = cache
        self.price = price or PriceConfig()
        self.requests_sent = 0
        """Samples asked of the model by this process (cache misses), failures included."""
        self.cache_hits = 0
        """Samples answered from the request cache by this process."""
        self.cost_spent = 0.0
        """USD spent by this process (new responses only; cached ones were paid before)."""
        self.cache_namespace: str | None = None
        """``teacher.cache_namespace``: replaces :meth:`backend_identity` in cache keys."""
        self.label: str | None = None
        """A ``teachers:`` entry's label (or the student's): recorded as ``Sample.teacher``
        and hashed into sample ids, so two teachers of one backend never share an id. It
        stays out of request keys: the cache is keyed on what shapes a response."""

    @abstractmethod
    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as each one finishes.

        Every index must be yielded exactly once; a failed request yields a
        :class:`Completion` with ``error`` set. Raise :class:`TeacherFatalError`
        only when no request can succeed (bad key, unknown model).
        """

    def complete_chunks(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Completion]]]:
        """Like :meth:`complete_many`, but what finished together comes as one list.

        The cache stores each list in one transaction. The default hands over one
        completion at a time; a teacher that finishes many at once (an event-loop
        tick, an engine step) overrides this to save a commit per response.
        """
        for item in self.complete_many(requests, sampling):
            yield [item]

    def key_extra(self) -> dict[str, Any] | None:
        """Teacher-specific options that shape responses and so enter the cache key."""
        return None

    def backend_identity(self) -> dict[str, Any]:
        """Which backend and endpoint (or weights) answers; subclasses add where."""
        return {"backend": self.name}

    def cache_scope(self) -> dict[str, Any]:
        """The ``scope`` of this teacher's cache keys: its namespace if set, else its backend.

        A shared ``teacher.cache_namespace`` is how a user says on purpose that two
        backends give interchangeable answers (``vllm serve`` and ``teacher=vllm`` of
        the same weights); without one, a response is reused only by the backend and
        endpoint that produced it.
        """
        if self.cache_namespace:
            return {"namespace": self.cache_namespace}
        return self.backend_identity()

    def build_requests(
        self,
        problems: Sequence[Problem],
        sampling: SamplingConfig,
        base_seed: int,
        start_index: int = 0,
    ) -> list[Request]:
        """One request per (problem, sample index), in problem order."""
        extra, scope = self.key_extra(), self.cache_scope()
        params = sampling_params(sampling)  # once, not per request (request_key's work)
        requests = []
        for problem in problems:
            for i in range(start_index, start_index + sampling.n):
                seed = sample_seed(base_seed, problem.id, i)
                key = _key(self.model, problem.messages, params, i, seed, extra, scope)
                requests.append(Request(key, problem.messages, i, seed))
        return requests

    def generate(
        self,
        problems: Sequence[Problem],
        sampling: SamplingConfig,
        base_seed: int,
        start_index: int = 0,
    ) -> list[Sample]:
        """Return ``sampling.n`` samples per problem, in problem order.

        Cached responses are reused; every new response is written to the cache
        as soon as the teacher yields it, so a killed run loses nothing it
        already received.

        Args:
            problems: The prompts.
            sampling: Sampling options shared by all samples.
            base_seed: The run's seed; each sample derives its own from it.
            start_index: Index of the first sample of each problem; later rounds of
                adaptive sampling ask for indices past the ones they already have.

        Returns:
            ``len(problems) * sampling.n`` samples; failed ones carry ``error``
            and ``keep=False``.

        Raises:
            TeacherFatalError: The endpoint refuses every request.
        """
        requests = self.build_requests(problems, sampling, base_seed, start_index)
        owners = [p for p in problems for _ in range(sampling.n)]
        completions: list[Completion | None] = [None] * len(requests)
        pending = self._from_cache(requests, completions)
        for _ in self._receive(requests, pending, completions, sampling):
            pass  # each response is cached as it arrives
        return [
            self._to_sample(problem, req, completion or Completion("", error="no response"))
            for problem, req, completion in zip(owners, requests, completions, strict=True)
        ]

    def generate_stream(
        self, problems: Sequence[Problem], sampling: SamplingConfig, base_seed: int
    ) -> Iterator[list[Sample]]:
        """Yield each problem's ``sampling.n`` samples as soon as all of them are in.

        Groups come in completion order, not input order; cached ones first.
        All requests go to :meth:`complete_many` at once, so a teacher with a
        sliding window keeps it full until the last request, and every response
        reaches the cache as it arrives (a kill loses only what was in flight).

        Raises:
            TeacherFatalError: The endpoint refuses every request.
        """
        n = sampling.n
        requests = self.build_requests(problems, sampling, base_seed)
        completions: list[Completion | None] = [None] * len(requests)
        pending = self._from_cache(requests, completions)
        waiting = [0] * len(problems)  # requests of each problem still to come
        for idx in pending:
            waiting[idx // n] += 1
        for p in range(len(problems)):
            if not waiting[p]:
                yield self._group(problems[p], requests, completions, p * n, n)
        for idx in self._receive(requests, pending, completions, sampling):
            p = idx // n
            waiting[p] -= 1
            if not waiting[p]:
                yield self._group(problems[p], requests, completions, p * n, n)

    def _group(
        self,
        problem: Problem,
        requests: list[Request],
        completions: list[Completion | None],
        lo: int,
        n: int,
    ) -> list[Sample]:
        out = []
        for idx in range(lo, lo + n):
            c = completions[idx] or Completion("", error="no response")
            completions[idx] = None  # handed on: the stream holds only what is in flight
            out.append(self._to_sample(problem, requests[idx], c))
        return out

    def _from_cache(
        self, requests: list[Request], completions: list[Completion | None]
    ) -> list[int]:
        """Fill ``completions`` from the cache; return the indices still to send."""
        cached = self.cache.get_many([r.key for r in requests]) if self.cache is not None else {}
        pending: list[int] = []
        for idx, req in enumerate(requests):
            if req.key in cached:
                completions[idx] = Completion.from_dict(cached[req.key])
            else:
                pending.append(idx)
        self.cache_hits += len(requests) - len(pending)
        return pending

    def _receive(
        self,
        requests: list[Request],
        pending: list[int],
        completions: list[Completion | None],
        sampling: SamplingConfig,
    ) -> Iterator[int]:
        """Send ``pending``; cache each response as it arrives and yield its index."""
        if not pending:
            return
        todo = [requests[i] for i in pending]
        for chunk in self.complete_chunks(todo, sampling):
            store = []
            for j, completion in chunk:
                idx = pending[j]
                self.requests_sent += 1
                completions[idx] = completion
                if completion.error is None:
                    self.cost_spent += self.price.cost(completion)
                    # Its fields are all plain values: a shallow copy is asdict's result.
                    store.append((requests[idx].key, dict(vars(completion))))
            if self.cache is not None:
                self.cache.put_many(store)  # committed before any of them is handed on
            for j, _ in chunk:
                yield pending[j]

    def _to_sample(self, problem: Problem, req: Request, c: Completion) -> Sample:
        reasoning, content = split_reasoning(c.text, c.reasoning)
        failed = c.error is not None
        sample_id = (
            content_hash(problem.id, req.key, self.label)
            if self.label
            else content_hash(problem.id, req.key)
        )
        return Sample(
            id=sample_id,
            problem_id=problem.id,
            domain=problem.domain,
            messages=problem.messages,
            reference=problem.reference,
            teacher=self.label or self.name,
            model=self.model,
            sample_index=req.sample_index,
            verifier=problem.verifier,
            options=problem.options,
            reasoning=reasoning,
            content=content,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            finish_reason=c.finish_reason,
            truncated=c.finish_reason == "length",
            cost=0.0 if failed else self.price.cost(c),
            request_key=req.key,
            error=c.error,
            keep=not failed,
            reject_reason=f"generation failed: {c.error}" if failed else None,
            source=problem.source,
        )

    def stats(self) -> dict[str, Any]:
        """Counters of this process: samples requested, cache hits, USD spent."""
        return {
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "cost_spent_usd": round(self.cost_spent, 6),
        }

    def close(self) -> None:
        """Release the engine or client and the cache."""
        if self.cache is not None:
            self.cache.close()


@dataclass(frozen=True)
class TeacherSpec:
    """Declaration of one teacher: what ``teacher.name`` selects.

    A teacher module builds its spec and passes it to :func:`register_teacher`;
    the composer, the runner and the generation stages read only these.
    """

    name: str
    """The ``teacher.name`` that selects it."""
    config_cls: type
    """Its config dataclass (the ``teacher`` group)."""
    teacher_cls: type[Teacher]
    """Built as ``teacher_cls(cfg, cache)``; its module must not import heavy engines."""
    default_batch_size: int = 1
    """Problems per generation batch when ``run.generate_batch_size`` is null: small for a
    sequential CPU model (fine-grained resume), large enough to fill an API's concurrency
    or an engine's batch."""
    wants_gpu: bool = False
    """True when the teacher runs a model on a GPU in the stage's own process (vLLM)."""
    uses_cache: bool = True
    """False for teachers that send nothing (replay): no request cache is opened."""


TEACHERS: dict[str, TeacherSpec] = {}
"""Every declared teacher, by name (filled by :func:`register_teacher`)."""


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    """Declare a teacher; a second one of the same name is refused."""
    return declare(TEACHERS, "teacher", spec)
