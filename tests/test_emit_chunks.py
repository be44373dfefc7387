"""Emit prompt by prompt: the same outputs as building from every sample at once.

``emit_dataset`` (the runner's path) reads the stage's memory-mapped input in
chunks of whole prompts and writes each output's rows as they come;
:func:`build_outputs` over the full list is the reference. Chunks here are tiny
(3 rows), so prompts straddle every batch boundary.
"""

from __future__ import annotations

import random

import datasets
import pytest

from datagen.config import OutputConfig
from datagen.output.builders import build_outputs, build_outputs_by_prompt, prompt_chunks
from datagen.output.difficulty import PassRateTally, pass_rate_summary
from datagen.records import Sample

from .test_output_builders import trace_samples


def as_dataset(samples: list[Sample]) -> datasets.Dataset:
    return datasets.Dataset.from_list([s.to_row() for s in samples], features=Sample.FEATURES)


@pytest.mark.parametrize("policy", ["random", "all", "length_matched"])
def test_chunked_outputs_equal_one_pass_over_everything(tmp_path, policy):
    samples = trace_samples()
    cfg = OutputConfig(pair_policy=policy, sft_weighting="failure_rate")
    whole = build_outputs(samples, cfg, seed=3)
    tally = PassRateTally(cfg.difficulty_edges)
    chunked = build_outputs_by_prompt(
        prompt_chunks(as_dataset(samples), rows=3), cfg, 3, None, tmp_path, tally
    )
    assert list(chunked) == list(whole)
    for name, out in whole.items():
        assert chunked[name].dataset.to_list() == out.dataset.to_list(), name
        assert chunked[name].dataset.features == out.dataset.features
        assert chunked[name].stats == out.stats, name
    assert tally.summary() == pass_rate_summary(samples, cfg.difficulty_edges)
    assert len(whole["redi_pairs"].dataset) > 0


def test_chunks_hold_whole_prompts_even_when_the_rows_interleave():
    samples = trace_samples()
    random.Random(0).shuffle(samples)
    chunks = list(prompt_chunks(as_dataset(samples), rows=2))
    seen: list[str] = []
    for chunk in chunks:
        pids = list(dict.fromkeys(s.problem_id for s in chunk))
        assert not set(pids) & set(seen)  # no prompt comes back in a later chunk
        seen.extend(pids)
    first = list(dict.fromkeys(s.problem_id for s in samples))
    assert seen == first  # prompts in order of their first row
    flat = [s.id for c in chunks for s in c]
    assert sorted(flat) == sorted(s.id for s in samples)
    for pid in first:  # within a prompt, rows keep their order
        assert [i for i in flat if i in {s.id for s in samples if s.problem_id == pid}] == [
            s.id for s in samples if s.problem_id == pid
        ]
