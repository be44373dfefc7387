"""The teacher interface: problems and sampling options in, samples out.

Concrete teachers implement :meth:`Teacher.complete_many`, which turns a list
of requests into completions in any order (sequentially, concurrently, or as
one engine batch). Everything else is shared: request keys, the cache lookup
before any request is sent, the cache write as each response arrives, the
split of ``<think>`` reasoning from the answer, and the Sample records.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from datagen.config import SamplingConfig
from datagen.records import Problem, Sample, content_hash
from datagen.teachers.cache import RequestCache

logger = logging.getLogger(__name__)

THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


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


def split_reasoning(text: str, reasoning: str | None = None) -> tuple[str | None, str]:
    """Separate thinking from the final answer.

    Handles ``<think>...</think>`` blocks in the text and a lone ``</think>``
    (templates that open the block in the prompt). A reasoning field returned
    separately by the server wins.

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
) -> str:
    """Cache key: everything that shapes one response, and nothing that does not.

    ``n`` is left out on purpose: raising the samples per prompt from 4 to 8
    reuses the first four.
    """
    params = {k: v for k, v in asdict(sampling).items() if k not in ("n", "seed")}
    return content_hash(model, messages, params, sample_index, seed, length=32)


class Teacher(ABC):
    """Base class: cache-first generation over a batch of problems."""

    name: str = "teacher"
    price_per_million: tuple[float, float] = (0.0, 0.0)
    """USD per million (prompt, completion) tokens; turns usage into cost."""

    def __init__(self, model: str, cache: RequestCache | None = None) -> None:
        self.model = model
        self.cache = cache
        self.requests_sent = 0

    @abstractmethod
    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as each one finishes."""

    def generate(
        self, problems: Sequence[Problem], sampling: SamplingConfig, base_seed: int
    ) -> list[Sample]:
        """Return ``sampling.n`` samples per problem, in problem order."""
        requests: list[Request] = []
        owners: list[Problem] = []
        for problem in problems:
            for i in range(sampling.n):
                seed = int(content_hash(base_seed, problem.id, i, length=8), 16) % (2**31)
                key = request_key(self.model, problem.messages, sampling, i, seed)
                requests.append(Request(key, problem.messages, i, seed))
                owners.append(problem)

        completions: list[Completion | None] = [None] * len(requests)
        pending: list[int] = []
        for idx, req in enumerate(requests):
            cached = self.cache.get(req.key) if self.cache is not None else None
            if cached is not None:
                completions[idx] = Completion(**cached)
            else:
                pending.append(idx)
        if pending:
            todo = [requests[i] for i in pending]
            for j, completion in self.complete_many(todo, sampling):
                idx = pending[j]
                self.requests_sent += 1
                completions[idx] = completion
                if self.cache is not None and completion.error is None:
                    self.cache.put(requests[idx].key, asdict(completion))
        return [
            self._to_sample(problem, req, completion or Completion("", error="no response"))
            for problem, req, completion in zip(owners, requests, completions, strict=True)
        ]

    def _to_sample(self, problem: Problem, req: Request, c: Completion) -> Sample:
        reasoning, content = split_reasoning(c.text, c.reasoning)
        p_in, p_out = self.price_per_million
        cost = (c.prompt_tokens * p_in + c.completion_tokens * p_out) / 1e6
        failed = c.error is not None
        return Sample(
            id=content_hash(problem.id, req.key),
            problem_id=problem.id,
            domain=problem.domain,
            messages=problem.messages,
            reference=problem.reference,
            teacher=self.name,
            model=self.model,
            sample_index=req.sample_index,
            reasoning=reasoning,
            content=content,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            finish_reason=c.finish_reason,
            truncated=c.finish_reason == "length",
            cost=cost,
            request_key=req.key,
            error=c.error,
            keep=not failed,
            reject_reason=f"generation failed: {c.error}" if failed else None,
        )

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
