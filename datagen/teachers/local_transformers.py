"""The local teacher's default engine: transformers' GGUF loader, batched, on CPU.

Pure Python wheels only (torch, transformers, gguf), so the first README line
installs without a compiler. Two things make it fit the teacher contract:

- **One seeded RNG per request.** transformers' own sampling draws from the
  global torch RNG, so a sample would depend on its batch neighbours. Here a
  logits processor draws each row's token from that request's own
  ``torch.Generator`` and hands generate a one-hot score, which greedy decoding
  then takes; a request's tokens follow from its seed alone, up to float rounding
  of the batched forward pass (which can, rarely, flip a near-tie).
- **Converted once.** Reading the GGUF (metadata, dequantising, tokenizer) takes
  about 40 s on 2 cores; the converted fp32 model and tokenizer are saved once
  under ``teacher.convert_dir`` and later loads take about 2 s. The saved weights
  are exactly the dequantised ones, so a cached load samples the same tokens.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.logits_process import (
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.stopping_criteria import StoppingCriteria

from datagen.config import SamplingConfig
from datagen.teachers.base import Completion, Request

logger = logging.getLogger(__name__)


def default_convert_dir() -> Path:
    """``$XDG_CACHE_HOME/datagen/gguf`` (``~/.cache/datagen/gguf`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "datagen" / "gguf"


def converted(gguf: Path, convert_dir: Path) -> Path:
    """Folder of ``gguf`` converted to a transformers checkpoint, made on first use.

    Written to a temporary sibling and renamed into place, so a killed conversion
    or two processes converting at once never leave a half-written folder.
    """
    target = convert_dir / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    logger.info("converting %s for transformers (once, into %s)", gguf.name, target)
    convert_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=convert_dir))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The loader dequantised every tensor to fp32: what is left is a plain model,
        # but it still carries the GGUF quantizer, which refuses save_pretrained.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process got there first; its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class TransformersEngine:
    """Runs a GGUF model with transformers: left-padded batches, per-request seeds."""

    def __init__(
        self, gguf: Path, *, n_ctx: int, n_threads: int | None, batch_size: int, convert_dir: Path
    ) -> None:
        if n_threads:
            torch.set_num_threads(n_threads)
        folder = converted(gguf, convert_dir)
        self.tok = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        self.model.eval()
        self.n_ctx = n_ctx
        self.batch_size = batch_size
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {self.tok.eos_token_id}

    def complete(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        """Yield each request's completion, one batch of ``batch_size`` at a time, shortest
        prompts first."""
        prompts: list[tuple[int, list[int]]] = []
        for i, req in enumerate(requests):
            text = self.tok.apply_chat_template(
                req.messages, add_generation_prompt=True, tokenize=False
            )
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= self.n_ctx:
                error = f"ValueError: prompt has {len(ids)} tokens, teacher.n_ctx is {self.n_ctx}"
                yield i, Completion("", error=error)
            else:
                prompts.append((i, ids))
        # Similar lengths share a batch: less left padding computed for nothing.
        prompts.sort(key=lambda p: len(p[1]))
        for lo in range(0, len(prompts), self.batch_size):
            chunk = prompts[lo : lo + self.batch_size]
            seeds = [requests[i].seed for i, _ in chunk]
            outs = self._generate([ids for _, ids in chunk], seeds, sampling)
            for (i, _), completion in zip(chunk, outs, strict=True):
                yield i, completion

    def _generate(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingConfig
    ) -> list[Completion]:
        batch = self.tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        width = batch["input_ids"].shape[1]
        lengths = [len(p) for p in prompts]
        max_new = max(1, min(sampling.max_tokens, self.n_ctx - min(lengths)))
        kwargs: dict[str, Any] = {}
        if sampling.stop:
            kwargs = {"stop_strings": list(sampling.stop), "tokenizer": self.tok}
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new,
                do_sample=False,  # the choice is made by the per-request sampler below
                logits_processor=[_SeededSampler(seeds, sampling)],
                stopping_criteria=[_ContextLimit(lengths, width, self.n_ctx)],
                pad_token_id=self.tok.pad_token_id,
                eos_token_id=sorted(self.eos),
                temperature=None,
                top_p=None,
                top_k=None,
                **kwargs,
            )
        return [
            self._completion(row[width:].tolist(), n, sampling)
            for row, n in zip(out, lengths, strict=True)
        ]

    def _completion(self, new: list[int], prompt_len: int, sampling: SamplingConfig) -> Completion:
        ended = next((k for k, t in enumerate(new) if t in self.eos), None)
        tokens = new if ended is None else new[:ended]
        text = self.tok.decode(tokens, skip_special_tokens=True)
        cut = [text.find(s) for s in sampling.stop if s and s in text]
        if cut:
            text = text[: min(cut)]
        budget = min(sampling.max_tokens, self.n_ctx - prompt_len)
        hit_stop = ended is not None or bool(cut)
        finish = "stop" if hit_stop or len(tokens) < budget else "length"
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_len,
            completion_tokens=len(tokens),
        )


class _SeededSampler(LogitsProcessor):
    """Temperature and top-p, then one draw per row from that row's own generator.

    Returns scores that are 0 at the drawn token and -inf elsewhere, so generate's
    greedy step picks exactly the draw (transformers' samplers share one RNG).
    """

    def __init__(self, seeds: list[int], sampling: SamplingConfig) -> None:
        self.greedy = sampling.temperature == 0.0
        self.warpers: list[LogitsProcessor] = []
        if not self.greedy:
            self.warpers.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(sampling.top_p))
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        scores = scores.float()
        if self.greedy:
            picks = scores.argmax(dim=-1)
        else:
            for warp in self.warpers:
                scores = warp(input_ids, scores)
            probs = torch.softmax(scores, dim=-1)
            draws = zip(probs, self.gens, strict=True)
            picks = torch.stack([torch.multinomial(p, 1, generator=g)[0] for p, g in draws])
        onehot = torch.full_like(scores, float("-inf"))
        onehot.scatter_(1, picks[:, None], 0.0)
        return onehot


class _ContextLimit(StoppingCriteria):
    """Stops a row once its own prompt plus generation fills ``n_ctx`` (as llama.cpp does)."""

    def __init__(self, lengths: list[int], width: int, n_ctx: int) -> None:
        self.room = torch.tensor([n_ctx - n for n in lengths])
        self.width = width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kw: Any) -> Any:
        return (input_ids.shape[1] - self.width) >= self.room
