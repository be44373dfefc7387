"""The local teacher's default engine: transformers' GGUF loader, batched, on CPU.

Pure Python wheels only (torch, transformers, gguf), so the first README line
installs without a compiler. Three things make it fit the teacher contract:

- **One seeded RNG per request.** transformers' own sampling draws from the
  global torch RNG, so a sample would depend on its batch neighbours. Here the
  decode loop draws each row's token from that request's own ``torch.Generator``;
  a request's tokens follow from its seed alone, up to float rounding of the
  batched forward pass (which can, rarely, flip a near-tie).
- **Finished rows leave the batch.** The loop is written out rather than
  ``model.generate``, which computes every row until the longest one ends.
- **Converted once.** Reading the GGUF (metadata, dequantising, tokenizer) takes
  about 40 s on 2 cores; the converted fp32 model and tokenizer are saved once
  under ``teacher.convert_dir`` and later loads take about 2 s. The saved weights
  are exactly the dequantised ones, so a cached load samples the same tokens.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

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
        # transformers 5.x renamed the forward's KV-cache argument (the old name warns).
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

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
        """Decode a left-padded batch by hand, dropping each row from it as it finishes.

        ``model.generate`` keeps finished rows in the batch until the longest one ends;
        the default run's lengths are heavy-tailed (a third of its row-steps were
        finished rows), so here a finished row leaves the batch and the KV cache.
        """
        batch = self.tok.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        mask = batch["attention_mask"]
        lengths = [len(p) for p in prompts]
        budgets = [max(1, min(sampling.max_tokens, self.n_ctx - n)) for n in lengths]
        sampler = _SeededSampler(seeds, sampling)
        new: list[list[int]] = [[] for _ in prompts]
        live = list(range(len(prompts)))  # rows still decoding, in batch order
        cache = DynamicCache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids = batch["input_ids"]
        with torch.inference_mode():
            while True:
                out = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,
                    **{self._cache_arg: cache},
                )
                picks = sampler(out.logits[:, -1, :].float(), live).tolist()
                keep = []
                for slot, (row, token) in enumerate(zip(live, picks, strict=True)):
                    new[row].append(token)
                    if not self._finished(new[row], budgets[row], sampling.stop):
                        keep.append(slot)
                if not keep:
                    break
                if len(keep) < len(live):
                    index = torch.tensor(keep)
                    cache.batch_select_indices(index)
                    mask, positions = mask[index], positions[index]
                    live = [live[k] for k in keep]
                ids = torch.tensor([[new[row][-1]] for row in live])
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)
                positions = positions[:, -1:] + 1
        return [
            self._completion(tokens, n, sampling) for tokens, n in zip(new, lengths, strict=True)
        ]

    def _finished(self, tokens: list[int], budget: int, stop: Sequence[str]) -> bool:
        """End of sequence, the row's token budget, or a stop string in its text."""
        if tokens[-1] in self.eos or len(tokens) >= budget:
            return True
        return bool(stop) and any(s and s in self.tok.decode(tokens) for s in stop)

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


class _SeededSampler:
    """Temperature and top-p, then one draw per row from that row's own generator.

    The nucleus is found among the top-k tokens (k grows until it holds ``top_p`` of
    the mass) rather than by sorting the whole vocabulary, which cost a fifth of the
    default run's decode time; the kept set is the one transformers' TopPLogitsWarper
    keeps, and the draw is ``torch.multinomial`` over the full vocabulary as before.
    """

    def __init__(self, seeds: list[int], sampling: SamplingConfig) -> None:
        self.greedy = sampling.temperature == 0.0
        self.temperature = sampling.temperature
        self.top_p = sampling.top_p
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """One token per row of ``logits``; ``rows`` names each one's request (generator)."""
        if self.greedy:
            return logits.argmax(dim=-1)
        scores = logits / self.temperature
        if self.top_p < 1.0:
            scores = _nucleus(scores, self.top_p)
        probs = torch.softmax(scores, dim=-1)
        draws = zip(probs, rows, strict=True)
        return torch.stack([torch.multinomial(p, 1, generator=self.gens[r])[0] for p, r in draws])


def _nucleus(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """``scores`` with -inf outside each row's top-p nucleus: the smallest set of most
    likely tokens whose mass reaches ``top_p`` (at least one token)."""
    probs = torch.softmax(scores, dim=-1)
    vocab = scores.shape[-1]
    k = min(64, vocab)
    while True:
        top, index = probs.topk(k, dim=-1)
        mass = top.cumsum(dim=-1)
        if k == vocab or bool((mass[:, -1] > top_p).all()):
            break
        k = min(4 * k, vocab)
    keep = (mass - top) < top_p  # the mass above a token is short of top_p
    keep[:, 0] = True
    out = torch.full_like(scores, float("-inf"))
    return out.scatter(1, index, torch.where(keep, scores.gather(1, index), float("-inf")))
