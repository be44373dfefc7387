"""+pipeline=general end to end: the real local teacher answers, a reward model ranks.

The teacher is the embedded SmolLM2-135M (transformers engine). No reward-model weights can
be downloaded on these machines, so the reward model is the tiny randomly
initialised one that ``test_reward.build_tiny_reward_model`` writes to a temp
folder, named with ``verifier.model=<folder>`` exactly as a user names a real one.
Its scores are noise; what is tested is the path from prompts without references
to SFT and pair datasets, with the pipeline's default rule (best of each prompt).
"""

from __future__ import annotations

import json

import pytest

from datagen.__main__ import run
from datagen.compose import resolve_config
from datagen.config import ConfigError
from datagen.output.publish import load_output
from datagen.records import Sample
from datagen.summary import format_summary
from datagen.views import open_part

from .conftest import assert_funnel_adds_up, compose
from .test_reward import build_tiny_reward_model

N = 3


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    model = build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))
    run_dir = tmp_path_factory.mktemp("general_run")
    cfg = compose(
        "+pipeline=general",
        f"verifier.model={model}",
        "verifier.device=cpu",
        "run.limit=3",
        f"generation.n={N}",
        "generation.max_tokens=64",
        # One line per answer: short, rarely cut off at max_tokens (the filter stage sets
        # cut-off samples aside), so every prompt keeps several samples to rank.
        'generation.stop=["\n"]',  # a real newline: Hydra does not unescape "\n"
        "run.progress=false",
    )
    return run_dir, run(cfg, run_dir)


def test_general_pipeline_emits_sft_and_pair_datasets(finished_run):
    run_dir, summary = finished_run
    assert_funnel_adds_up(summary, samples_per_prompt=N)
    assert summary["sft_positive"] >= 1 and summary["redi_pairs"] >= 1
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        assert (run_dir / "outputs" / name / "README.md").exists()
    assert "verify_groups" in summary["stages"]
    assert summary["stages"]["verify_groups"]["stats"]["passed"] == summary["positives"]


def test_every_kept_sample_is_scored_and_the_best_of_its_prompt_passes(finished_run):
    run_dir, _ = finished_run
    final = sorted((run_dir / "stages").glob("*_verify_groups"))[0] / "data"
    samples = [Sample.from_row(r) for r in open_part(str(final))]
    assert samples and all(s.reference is None and s.domain == "general" for s in samples)
    by_prompt: dict[str, list[Sample]] = {}
    for s in samples:
        (verdict,) = s.verdicts
        assert verdict.verifier == "reward" and isinstance(verdict.score, float)
        assert s.passed is (verdict.details["rank"] == 1)
        by_prompt.setdefault(s.problem_id, []).append(s)
    for group in by_prompt.values():
        best = max(s.verdicts[0].score for s in group)
        assert {s.passed for s in group if s.verdicts[0].score == best} == {True}
        assert all(s.verdicts[0].details["of"] == len(group) for s in group)


def test_pairs_put_the_better_scored_answer_first(finished_run):
    run_dir, _ = finished_run
    final = sorted((run_dir / "stages").glob("*_verify_groups"))[0] / "data"
    score = {s["content"]: s["verdicts"][0]["score"] for s in open_part(str(final))}
    pairs = load_output(run_dir / "outputs" / "redi_pairs")
    assert len(pairs) >= 1
    row = pairs[0]
    text = json.dumps(row)
    assert "chosen" in text and "rejected" in text
    chosen, rejected = (
        row[k][-1]["content"].split("</think>")[-1].strip() for k in ("chosen", "rejected")
    )
    assert score[chosen] > score[rejected]


def test_summary_prints(finished_run):
    _, summary = finished_run
    assert "positives" in format_summary(summary)


def test_without_a_reward_model_the_error_says_what_to_set():
    with pytest.raises(ConfigError, match=r"set verifier\.model=<local folder or Hub name"):
        resolve_config(compose("+pipeline=general"))
