"""Reward-model verifier: score final answers with a sequence-classification model.

:func:`score_batch` turns (prompt, response) pairs into one float each, with a
Hugging Face ``*ForSequenceClassification`` model through transformers (CPU or
GPU, batched, truncated to ``max_length``) or with vLLM's pooling runner on GPU.
The conversation is rendered with the reward model's own chat template, as the
model was trained on it; a tokenizer without a template (BERT-style cross
encoders) gets the prompt and the response as a text pair.

:func:`verify_batch` then decides ``passed`` by a rule, and stores the score
either way:

- ``threshold``: passed when ``score >= threshold``.
- ``top_k``: the ``k`` best-scored samples of each prompt pass.
- ``top_fraction``: the best ``ceil(fraction * m)`` of a prompt's ``m`` scored samples pass.

Rank rules need to know which samples answer the same prompt: pass ``group_ids``.
Samples tied with the last one selected all pass, so equal answers are never
split by input order. An empty final answer is not scored: it fails with error
``"no_answer"`` and takes no place in its group's ranking. Scores are rounded to
6 decimals, so equal answers tie however the batch was padded.

:func:`verifiers.precomputed.select` holds the rules alone; the precomputed verifier
applies them to scores that come with the data.

Nothing here imports torch, transformers or vLLM until a model is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verifiers.precomputed import select, validate_rule
from verifiers.types import NO_ANSWER, Verdict, answer_part

logger = logging.getLogger(__name__)

VERSION = "1"
"""Version of the scoring and selection logic; bump it when a verdict can change."""

BACKENDS: tuple[str, ...] = ("transformers", "vllm")

Prompt = str | Sequence[dict[str, str]]
"""A prompt as plain text (one user turn) or as chat messages."""


@dataclass(frozen=True)
class RewardConfig:
    """Options of the reward-model verifier.

    Example:
        >>> RewardConfig(model="Skywork/Skywork-Reward-V2-Qwen3-0.6B", rule="threshold").threshold
        0.0
    """

    model: str | None = None
    """A local folder or a Hugging Face Hub name of a sequence-classification reward model,
    e.g. ``Skywork/Skywork-Reward-V2-Qwen3-0.6B`` (see docs/verifiers.md). Required."""
    backend: str = "transformers"
    """``transformers`` (CPU or GPU) or ``vllm`` (GPU; vLLM's pooling runner, ``LLM.classify``)."""
    max_length: int = 4096
    """Tokens per conversation; longer ones are cut from the left (the start of the prompt
    goes first, the answer is kept) and flagged ``truncated`` in the verdict's details."""
    batch_size: int = 8
    """Conversations per forward pass (transformers); sorted by length to pad little."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = "auto"
    """``auto`` (bfloat16 on GPU, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``."""
    trust_remote_code: bool = False
    """Allow model code from the Hub (some reward models ship their own head)."""
    score_index: int = 0
    """Which output of the classifier is the reward: 0 for one-output reward models; the
    "good" label's index for classifiers with several labels."""
    strip_reasoning: bool = True
    """Score only the final answer: drop ``<think>...</think>``, everything before a lone
    ``</think>`` and everything after an unclosed ``<think>``. False: score the whole trace."""
    rule: str = "top_k"
    """How a score becomes passed: ``threshold``, ``top_k`` or ``top_fraction`` (per prompt).
    Reward scales differ between models, so ranking is the default."""
    threshold: float = 0.0
    """``rule=threshold``: passed when ``score >= threshold`` (on the model's own scale)."""
    k: int = 1
    """``rule=top_k``: samples per prompt that pass (ties with the k-th all pass)."""
    fraction: float = 0.5
    """``rule=top_fraction``: share of a prompt's scored samples that pass (rounded up)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError(
                "model is required for the reward verifier (no weights ship with datagen): set "
                "model=<local folder or Hub name of a sequence-classification reward model>, "
                "e.g. model=Skywork/Skywork-Reward-V2-Qwen3-0.6B (docs/verifiers.md lists "
                "models that fit)"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.max_length < 8 or self.batch_size < 1:
            raise ValueError("max_length must be >= 8 tokens and batch_size >= 1")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(
                f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}"
            )
        validate_rule(self.rule, self.k, self.fraction)


# ---------------------------------------------------------------------------
# Text preparation


def final_answer(text: str) -> str:
    """The answer part of a trace: what is left without its ``<think>`` reasoning.

    Example:
        >>> final_answer("<think>hmm</think> Paris.")
        'Paris.'
        >>> final_answer("cut off here </think>Paris.")
        'Paris.'
    """
    return answer_part(text).strip()


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Chat messages of a prompt (a string becomes one user turn)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _last_user_turn(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else ""


# ---------------------------------------------------------------------------
# Models


class RewardModel:
    """A loaded reward model; :meth:`score` maps conversations to floats.

    Args:
        cfg: Which model and how to run it.
    """

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        self.closed = False
        self._llm: Any = None
        self._model: Any = None
        if cfg.backend == "vllm":
            self._load_vllm()
        else:
            self._load_transformers()
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token is None:  # decoder-only models often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self._model is not None and self._model.config.pad_token_id is None:
            # The classification head reads the last non-pad token; it must know the pad id.
            self._model.config.pad_token_id = self.tokenizer.pad_token_id
        self._templated = bool(getattr(self.tokenizer, "chat_template", None))
        if not self._templated:
            logger.info("%s has no chat template: scoring (prompt, answer) text pairs", cfg.model)

    def _load_transformers(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device = self.cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = self.cfg.dtype
        if dtype_name == "auto":
            dtype_name = "float32" if device == "cpu" else "bfloat16"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.cfg.model, trust_remote_code=self.cfg.trust_remote_code
        )
        self._model = AutoModelForSequenceClassification.from_pretrained(
            self.cfg.model,
            dtype=getattr(torch, dtype_name),
            trust_remote_code=self.cfg.trust_remote_code,
        ).to(device)
        self._model.eval()

    def _load_vllm(self) -> None:
        from vllm import LLM  # the optional GPU dependency (pip install datagen[gpu])

        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "runner": "pooling",
            "max_model_len": self.cfg.max_length,
            "trust_remote_code": self.cfg.trust_remote_code,
        }
        if self.cfg.dtype != "auto":
            kwargs["dtype"] = self.cfg.dtype
        self.device = "cuda"
        self._llm = LLM(**kwargs)
        self.tokenizer = self._llm.get_tokenizer()

    def encode(self, prompt: Prompt, response: str, limit: int) -> tuple[list[int], bool]:
        """Token ids of one conversation, cut to ``limit`` tokens, and whether it was cut."""
        messages = to_messages(prompt)
        if self._templated:
            text = self.tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": response}], tokenize=False
            )
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return (ids[-limit:], True) if len(ids) > limit else (ids, False)
        question = _last_user_turn(messages)
        full = self.tokenizer(question, response)["input_ids"]
        if len(full) <= limit:
            return full, False
        cut = self.tokenizer(question, response, truncation="longest_first", max_length=limit)
        return cut["input_ids"], True

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        cfg: RewardConfig | None = None,
    ) -> list[tuple[float, bool]]:
        """``(score, truncated)`` per conversation, in input order.

        ``cfg`` (default: the loading one) sets ``max_length``, ``batch_size`` and
        ``score_index`` of this call.
        """
        if self.closed:
            raise RuntimeError(f"the reward model {self.cfg.model} was closed; load it again")
        cfg = cfg or self.cfg
        encoded = [
            self.encode(p, r, cfg.max_length) for p, r in zip(prompts, responses, strict=True)
        ]
        if not encoded:
            return []
        ids = [e[0] for e in encoded]
        if self._llm is not None:
            raw = self._score_vllm(ids, cfg.score_index)
        else:
            raw = self._score_torch(ids, cfg.batch_size, cfg.score_index)
        return [(round(s, 6), e[1]) for s, e in zip(raw, encoded, strict=True)]

    def _score_torch(self, ids: list[list[int]], size: int, index: int) -> list[float]:
        import torch

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores: list[float] = [0.0] * len(ids)
        with torch.inference_mode():
            for lo in range(0, len(order), size):
                chunk = order[lo : lo + size]
                self.tokenizer.padding_side = "right"
                batch = self.tokenizer.pad(
                    {"input_ids": [ids[i] for i in chunk]}, padding=True, return_tensors="pt"
                ).to(self.device)
                logits = self._model(**batch).logits.float()
                for i, row in zip(chunk, logits[:, index].tolist(), strict=True):
                    scores[i] = float(row)
        return scores

    def _score_vllm(self, ids: list[list[int]], index: int) -> list[float]:
        # vLLM applies the classifier's activation (a sigmoid for one-output heads): the
        # scores lie in (0, 1). Ranks are unchanged; thresholds must use that scale.
        outputs = self._llm.classify([{"prompt_token_ids": x} for x in ids], use_tqdm=False)
        return [float(o.outputs.probs[index]) for o in outputs]

    def close(self) -> None:
        """Free the model (and GPU memory); later calls to :meth:`score` fail."""
        self.closed = True
        self._model = None
        self._llm = None


_LOADED: dict[tuple[Any, ...], RewardModel] = {}


def load_key(cfg: RewardConfig) -> tuple[Any, ...]:
    """The fields of ``cfg`` that decide which model is loaded, and how."""
    return (cfg.model, cfg.backend, cfg.device, cfg.dtype, cfg.trust_remote_code, cfg.max_length)


def load_reward_model(cfg: RewardConfig) -> RewardModel:
    """The model for ``cfg``, loaded on first use and kept for later calls in this process."""
    key = load_key(cfg)
    if key not in _LOADED or _LOADED[key].closed:
        logger.info("loading reward model %s (%s)", cfg.model, cfg.backend)
        _LOADED.clear()  # one model at a time: a second would double the memory
        _LOADED[key] = RewardModel(cfg)
    return _LOADED[key]


def unload_reward_models() -> None:
    """Drop the models :func:`load_reward_model` keeps."""
    for model in _LOADED.values():
        model.close()
    _LOADED.clear()


# ---------------------------------------------------------------------------
# Scoring and selection


def score_batch(
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    cfg: RewardConfig,
    *,
    model: RewardModel | None = None,
) -> list[float | None]:
    """Score each response to its prompt; ``None`` for an empty final answer.

    Args:
        prompts: Prompt text or chat messages, one per response.
        responses: Whole model responses; reasoning is dropped when ``cfg.strip_reasoning``.
        cfg: Verifier options.
        model: An already loaded model (default: :func:`load_reward_model`).

    Returns:
        One score per response, in input order.
    """
    return [s for s, _ in _score_with_flags(prompts, responses, cfg, model)]


def _score_with_flags(
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    cfg: RewardConfig,
    model: RewardModel | None,
) -> list[tuple[float | None, bool]]:
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    answers = [final_answer(r) if cfg.strip_reasoning else r.strip() for r in responses]
    todo = [i for i, a in enumerate(answers) if a]
    out: list[tuple[float | None, bool]] = [(None, False)] * len(answers)
    if todo:
        model = model or load_reward_model(cfg)
        scored = model.score([prompts[i] for i in todo], [answers[i] for i in todo], cfg)
        for i, pair in zip(todo, scored, strict=True):
            out[i] = pair
    return out


def verify_batch(
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    cfg: RewardConfig,
    *,
    group_ids: Sequence[Any] | None = None,
    model: RewardModel | None = None,
) -> list[Verdict]:
    """Score every response and decide ``passed`` by ``cfg.rule``.

    Args:
        prompts: Prompt text or chat messages, one per response.
        responses: Whole model responses.
        cfg: Verifier options.
        group_ids: The prompt (problem id) of each response; needed by the rank rules.
        model: An already loaded model (default: :func:`load_reward_model`).

    Returns:
        One ``Verdict`` per response with ``score`` set. An empty answer fails with error
        ``"no_answer"`` (score None). Details hold the rule's evidence and ``truncated``.

    Example:
        >>> cfg = RewardConfig(model="my-rm", rule="top_k", k=1)
        >>> [v.details["error"] for v in verify_batch(["q"], ["<think>x</think>"], cfg,
        ...                                            group_ids=["p"])]
        ['no_answer']
    """
    scored = _score_with_flags(prompts, responses, cfg, model)
    decided = select(
        [s for s, _ in scored],
        rule=cfg.rule,
        threshold=cfg.threshold,
        k=cfg.k,
        fraction=cfg.fraction,
        group_ids=group_ids,
    )
    verdicts = []
    for (score, truncated), (passed, evidence) in zip(scored, decided, strict=True):
        if score is None:
            details: dict[str, Any] = {"error": NO_ANSWER}
            passed = False
        else:
            details = {"rule": cfg.rule, **evidence, "error": None}
            if truncated:
                details["truncated"] = True
        verdicts.append(Verdict("reward", VERSION, passed, score, details))
    return verdicts
