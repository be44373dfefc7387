"""+pipeline=mix end to end: the bundled math, code and general samples in one run.

The teacher is the real embedded SmolLM2-135M on llama.cpp (``teacher.engine=llama_cpp``,
in the dev extra; about 1.8x faster than the default transformers engine, which
tests/test_e2e_math.py's subprocess runs cover). Every row goes to its
domain's verifier: math-verify, the code sandbox, and for general prompts a reward
model. No reward-model weights can be downloaded on these machines, so that one is
the tiny randomly initialised model ``test_reward.build_tiny_reward_model`` writes (its
scores are noise; the path is what is tested), named as a user names a real one.
One run for the module, with one row per source (the pipeline's own limits are two:
the first row of each gives every domain rows in the outputs, and the general one a
pair) and two samples per prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from datagen.__main__ import run
from datagen.output.publish import load_output
from datagen.views import open_part

from .conftest import compose
from .test_reward import build_tiny_reward_model

N = 2
LIMIT = 1
"""Rows per source."""
OUTPUTS = ("sft_positive", "sft_negative", "redi_pairs")
VERIFIER_OF = {"math": "math", "code": "code", "general": "reward"}


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory) -> tuple[Path, dict]:
    model = build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))
    run_dir = tmp_path_factory.mktemp("mix_run")
    cfg = compose(
        "+pipeline=mix",
        f"verify.routes.general.model={model}",
        "verify.routes.general.device=cpu",
        f"generation.n={N}",
        *(f"sources.{i}.limit={LIMIT}" for i in range(3)),
        "run.progress=false",
        # One llama.cpp thread: on this shared, oversubscribed 2-core machine two spinning
        # threads took 10 min for the first problem, one thread 2 min for three.
        "teacher.n_threads=1",
        "teacher.engine=llama_cpp",
    )
    return run_dir, run(cfg, run_dir)


def load(run_dir: Path, name: str) -> datasets.Dataset:
    return load_output(run_dir / "outputs" / name)


def final_samples(run_dir: Path) -> datasets.Dataset:
    (stage,) = sorted((run_dir / "stages").glob("*_verify_groups"))
    return open_part(str(stage / "data"))


def test_rows_of_all_three_domains_reach_the_outputs(mix_run):
    run_dir, _ = mix_run
    sft = {d for name in ("sft_positive", "sft_negative") for d in load(run_dir, name)["domain"]}
    assert sft == {"math", "code", "general"}
    for name in OUTPUTS:
        ds = load(run_dir, name)
        assert {(s, d) for s, d in zip(ds["source"], ds["domain"], strict=True)} <= {
            ("math_sample", "math"),
            ("code_sample", "code"),
            ("general_sample", "general"),
        }


def test_each_row_is_graded_by_its_domains_verifier(mix_run):
    run_dir, _ = mix_run
    final = final_samples(run_dir)
    assert set(final["domain"]) == {"math", "code", "general"}
    for domain, verdicts, passed in zip(
        final["domain"], final["verdicts"], final["passed"], strict=True
    ):
        assert [v["verifier"] for v in verdicts] == [VERIFIER_OF[domain]]
        assert verdicts[0]["passed"] == passed
        if domain == "general":
            assert verdicts[0]["score"] is not None
        if domain == "code":
            details = json.loads(verdicts[0]["details"])
            assert details.get("failure") == "no_answer" or "isolation" in details
    for name in ("sft_positive", "sft_negative"):
        for row in load(run_dir, name):
            assert [v["name"] for v in row["verifiers"]] == [VERIFIER_OF[row["domain"]]]


def test_the_per_source_funnel_adds_up_to_the_rows_on_disk(mix_run):
    run_dir, summary = mix_run
    funnel = summary["funnel"]["by_source"]
    assert set(funnel) == {"math_sample", "code_sample", "general_sample"}
    loaded = [funnel[s]["loaded"] for s in ("math_sample", "code_sample", "general_sample")]
    assert loaded == [LIMIT] * 3
    for name in OUTPUTS:
        on_disk = load(run_dir, name)
        assert sum(f["emitted"][name] for f in funnel.values()) == len(on_disk) == summary[name]
        for src, counts in funnel.items():
            assert counts["emitted"][name] == sum(s == src for s in on_disk["source"])
    final = final_samples(run_dir)
    for src, counts in funnel.items():
        rows = [p for s, p in zip(final["source"], final["passed"], strict=True) if s == src]
        assert counts["positive"] == sum(p is True for p in rows)
        assert counts["negative"] == sum(p is False for p in rows)
        assert counts["samples"] == counts["generated"] * N
    for key, total in (("loaded", "problems_loaded"), ("samples", "samples")):
        assert sum(f[key] for f in funnel.values()) == summary[total]
    by_domain = summary["funnel"]["by_domain"]
    assert {d: c["loaded"] for d, c in by_domain.items()} == dict.fromkeys(
        ("math", "code", "general"), LIMIT
    )


def test_the_card_has_the_funnel_licences_and_a_config_per_domain(mix_run):
    run_dir, _ = mix_run
    folder = run_dir / "outputs" / "sft_negative"
    card = (folder / "README.md").read_text()
    assert "## Funnel by source and domain" in card
    for line in ("| math_sample | mit |", "| code_sample | cc-by-4.0 |", "| general_sample |"):
        assert line in card
    ds = load(run_dir, "sft_negative")
    if len(set(ds["domain"])) > 1:  # per-domain configs exist for a mixed output
        for domain in set(ds["domain"]):
            part = datasets.load_dataset(
                "parquet", data_files=str(folder / "domains" / f"{domain}.parquet"), split="train"
            )
            assert set(part["domain"]) == {domain}
