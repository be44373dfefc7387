"""Several sources in one run: pooled reading, one dedup over all of them, the source on
every row, per-source sampling, and a Hub-style source read through ``datasets``.

The two real sources that share problems are a MATH-train slice (``fixtures/dedup``,
copied from ``../shared/data/math/math_train.jsonl``) and ``fixtures/pool/math_reworded.jsonl``,
written for these tests: five of the slice's first 30 problems reworded by hand (cosine
0.95-0.98 to their originals with all-MiniLM-L6-v2, against at most 0.53 to any other
problem of the slice) and three new problems, with other field names.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from datagen.config import ConfigError, SourceConfig
from datagen.records import Problem
from datagen.runner import Runner
from datagen.sources import read_source, read_sources
from datagen.stages import STAGES
from datagen.views import open_part

from .conftest import ROOT

MATH_TRAIN = ROOT / "tests" / "fixtures" / "dedup" / "math_train_slice.jsonl"
REWORDED = ROOT / "tests" / "fixtures" / "pool" / "math_reworded.jsonl"
SHARED = {  # reworded id -> the MATH-train id it rewords
    "reworded-tim": "math-train-9",
    "reworded-faucets": "math-train-19",
    "reworded-xy": "math-train-82",
    "reworded-shenille": "math-train-154",
    "reworded-george": "math-train-126",
}

MATH_ENTRY = f"{{path: {MATH_TRAIN}, name: math_train, limit: 30, license: mit}}"
REWORDED_ENTRY = (
    f"{{path: {REWORDED}, name: reworded, prompt_field: question, reference_field: final, "
    "license: cc0}"
)


@pytest.fixture(scope="module")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the module: the model loads for the first run only."""
    return tmp_path_factory.mktemp("embeddings")


def pooled_run(tmp_path: Path, make_config, cache: Path, entries: list[str], *extra: str) -> Path:
    """``load`` and ``dedup`` (semantic, 0.9) over ``entries``; returns the dedup stage folder."""
    cfg = make_config(
        "+pipeline=math",
        f"+sources=[{', '.join(entries)}]",
        "dedup=semantic",
        "dedup.threshold=0.9",
        "run.progress=false",
        f"dedup.embedding.cache_dir={cache}",
        *extra,
    )
    run_dir = tmp_path / "run"
    Runner(cfg, run_dir, [STAGES["load"], STAGES["dedup"]]).run()
    return run_dir / "stages" / "01_dedup"


def problems(folder: Path) -> list[Problem]:
    return [Problem.from_row(r) for r in open_part(str(folder))]


@pytest.mark.parametrize("reworded_first", [False, True], ids=["math-first", "reworded-first"])
def test_one_copy_of_a_shared_problem_survives_and_the_first_listed_source_wins(
    tmp_path, make_config, embedding_cache, reworded_first
):
    entries = [REWORDED_ENTRY, MATH_ENTRY] if reworded_first else [MATH_ENTRY, REWORDED_ENTRY]
    stage = pooled_run(tmp_path, make_config, embedding_cache, entries)
    kept, dups = problems(stage / "data"), problems(stage / "duplicates")
    assert len(kept) == 30 + 8 - 5 and len(dups) == 5
    winner, loser = ("reworded", "math_train") if reworded_first else ("math_train", "reworded")
    by_id = {p.id: p for p in kept}
    lost_ids = {p.metadata["source_id"] for p in dups}
    expected_losers = set(SHARED.keys() if loser == "reworded" else SHARED.values())
    assert lost_ids == expected_losers
    for dup in dups:
        assert dup.source == loser
        head = by_id[dup.metadata["duplicate_of"]]  # the kept copy, named by id and source
        assert dup.metadata["duplicate"]["of_source"] == head.source == winner
        pair = {dup.metadata["source_id"], head.metadata["source_id"]}
        assert any(pair == {a, b} for a, b in SHARED.items())
        assert dup.reject_reason == "duplicate: semantic"
    assert {p.source for p in kept} == {"math_train", "reworded"}  # every row says where from


def test_keep_longest_picks_the_longer_copy_whatever_the_order(
    tmp_path, make_config, embedding_cache
):
    entries = [MATH_ENTRY, REWORDED_ENTRY]
    stage = pooled_run(tmp_path, make_config, embedding_cache, entries, "dedup.keep=longest")
    kept = {p.id: p for p in problems(stage / "data")}
    for dup in problems(stage / "duplicates"):
        head = kept[dup.metadata["duplicate_of"]]
        assert len(head.prompt) >= len(dup.prompt)
        assert dup.metadata["duplicate"]["of_source"] == head.source


def test_a_one_source_run_reads_as_before(make_config):
    one = make_config("+pipeline=math", "source.limit=5")
    assert one.sources == [] and [s.label for s in one.source_list()] == [one.source.path]
    read = read_sources(one.source_list())
    assert [p.source for p in read.problems] == [one.source.path] * 5


def test_sources_need_a_path_and_distinct_names(make_config):
    with pytest.raises(ConfigError, match=r"sources\[0\]\.path is required"):
        make_config("+pipeline=math", "+sources=[{domain: math}]")
    with pytest.raises(ConfigError, match="two entries are named"):
        make_config("+pipeline=math", f"+sources=[{MATH_ENTRY}, {MATH_ENTRY}]")


def test_seeded_limit_and_fraction_are_reproducible_and_follow_the_rows_not_their_place(
    tmp_path,
):
    rows = MATH_TRAIN.read_text().splitlines()[:200]
    a, b = tmp_path / "a.jsonl", tmp_path / "moved" / "b.jsonl"
    b.parent.mkdir()
    a.write_text("\n".join(rows) + "\n")
    b.write_text("\n".join(reversed(rows)) + "\n")  # moved and reordered
    picks = {}
    for name, path in (("a", a), ("b", b)):
        drawn = read_source(SourceConfig(path=str(path), limit=20, seed=3), None)
        picks[name] = {p.id for p in drawn.problems}
        assert len(drawn.problems) == 20 and drawn.not_sampled == {str(path): 180}
    assert picks["a"] == picks["b"]
    first = read_source(SourceConfig(path=str(a), limit=20), None)
    assert picks["a"] != {p.id for p in first.problems}  # unseeded: the first 20
    other = read_source(SourceConfig(path=str(a), limit=20, seed=4), None)
    assert picks["a"] != {p.id for p in other.problems}
    half = read_source(SourceConfig(path=str(a), fraction=0.5, seed=3), None)
    assert 70 <= len(half.problems) <= 130
    assert len(half.problems) + half.not_sampled[str(a)] == 200


def test_options_and_verifier_override_reach_the_problem(tmp_path):
    path = tmp_path / "mcq.jsonl"
    rows = [
        {
            "id": "q1",
            "question": "Which gas do plants take in?",
            "choices": ["O2", "CO2"],
            "a": "B",
        },
        {"id": "q2", "question": "Broken options", "choices": "A or B", "a": "A"},
        {
            "id": "q3",
            "question": "Which is a noble gas?",
            "choices": {"B": "Ar", "A": "N2"},
            "a": "B",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = SourceConfig(
        path=str(path),
        name="mcq",
        prompt_field="question",
        reference_field="a",
        options_field="choices",
        verifier="math",
    )
    read = read_source(cfg, None)
    problem, lettered = read.problems
    assert problem.metadata["options"] == ["O2", "CO2"] and problem.verifier == "math"
    assert lettered.metadata["options"] == ["N2", "Ar"]  # a letter mapping, A first
    (reject,) = read.rejects
    assert reject["source"] == "mcq" and reject["line"] == 2 and "choices" in reject["reason"]


def write_hub_layout(root: Path) -> Path:
    """A script-free dataset repo as the Hub stores one: a card naming two configs."""
    repo = root / "org__pool-demo"
    for config, n in (("easy", 3), ("hard", 2)):
        (repo / config).mkdir(parents=True)
        rows = [
            {
                "uid": f"{config}-{i}",
                "problem": f"{config} problem {i}: what is {i}+{i}?",
                "answer": str(2 * i),
            }
            for i in range(n)
        ]
        datasets.Dataset.from_list(rows).to_parquet(str(repo / config / "train-00000.parquet"))
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: easy\n  data_files:\n  - split: train\n    path: easy/*.parquet\n"
        "- config_name: hard\n  data_files:\n  - split: train\n    path: hard/*.parquet\n---\n"
    )
    return repo


def test_a_hub_style_source_with_config_and_revision_is_read_through_datasets(
    tmp_path, monkeypatch
):
    # A local folder in the Hub's repo layout stands in for the Hub (no network here).
    # datasets ignores `revision` for a local folder, so the call is checked to carry it.
    repo = write_hub_layout(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    cfg = SourceConfig(path=str(repo), name="demo", config="hard", revision="v1.0", id_field="uid")
    read = read_source(cfg, None)
    assert [p.metadata["source_id"] for p in read.problems] == ["hard-0", "hard-1"]
    assert all(p.source == "demo" for p in read.problems)
    assert calls == [((str(repo), "hard"), {"split": "train", "revision": "v1.0"})]
    with pytest.raises(ConfigError, match="could not be loaded"):
        read_source(SourceConfig(path=str(repo), config="medium"), None)


def graded_samples() -> list:
    """Verified samples of two domains from two sources (what emit receives)."""
    from datagen.records import Sample, Verdict

    out = []
    for src, domain, n in (("math_train", "math", 3), ("mbpp", "code", 2)):
        for p in range(n):
            for k, passed in enumerate((True, False)):
                out.append(
                    Sample(
                        id=f"{src}-{p}-{k}",
                        problem_id=f"{src}-{p}",
                        domain=domain,
                        messages=[{"role": "user", "content": f"{domain} task {p}"}],
                        reference="1",
                        teacher="local",
                        model="m",
                        sample_index=k,
                        content=f"answer {k}",
                        completion_tokens=5,
                        finish_reason="stop",
                        verdicts=[Verdict(domain, "1", passed)],
                        passed=passed,
                        source=src,
                    )
                )
    return out


def test_each_domain_is_a_config_of_the_output_folder_that_load_dataset_reads(
    tmp_path, make_config, monkeypatch
):
    from datagen.stages.base import StageContext

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    entries = f"+sources=[{MATH_ENTRY}, {{path: {REWORDED}, name: mbpp, domain: code}}]"
    mix = "output.domain_mix={math: 0.5, code: 0.5}"
    cfg = make_config("+pipeline=math", entries, mix, "output.dry_run=true")
    STAGES["emit"].fn(
        graded_samples(), StageContext(cfg, tmp_path), cfg={"output": cfg.output, "run.seed": 0}
    )
    folder = tmp_path / "outputs" / "sft_positive"
    whole = datasets.load_dataset(str(folder), "sft_positive", split="train")
    math = datasets.load_dataset(str(folder), "math", split="train")
    code = datasets.load_dataset(str(folder), "code", split="train")
    assert sorted(whole["domain"]) == ["code", "code", "math", "math"]  # the 50/50 mix: 2 + 2
    assert set(math["domain"]) == {"math"} and set(code["domain"]) == {"code"}
    assert len(math) + len(code) == len(whole)
    assert set(math["source"]) == {"math_train"} and set(code["source"]) == {"mbpp"}
    card = (folder / "README.md").read_text()
    assert "config_name: math" in card and "| math_train | mit |" in card
    assert "| mbpp | not stated |" in card
    hub = tmp_path / "outputs" / "hub"  # the upload folder: <output>_<domain> configs
    pairs_code = datasets.load_dataset(str(hub), "redi_pairs_code", split="train")
    pairs = datasets.load_dataset(str(hub), "redi_pairs", split="train")
    assert len(pairs_code) == sum(d == "code" for d in pairs["domain"]) > 0
    assert set(pairs_code["domain"]) == {"code"}


def test_each_problem_is_checked_against_its_own_domains_benchmarks(tmp_path, make_config):
    from datagen.stages.base import StageContext

    cfg = make_config("+pipeline=math", "decontam=mix", "decontam.benchmarks=[mt_bench]")
    bench = ROOT / "data" / "benchmarks"
    leak = json.loads((bench / "math500.jsonl").read_text().splitlines()[0])["problem"]
    chat = json.loads((bench / "mt_bench.jsonl").read_text().splitlines()[0])["problem"]
    batch = [
        Problem(id=d, source=d, domain=d, messages=[{"role": "user", "content": text}])
        for d, text in (("math", leak), ("code", leak), ("general", leak))
    ]
    batch.append(Problem("c2", "c", "code", [{"role": "user", "content": chat}]))
    STAGES["decontaminate"].fn(batch, StageContext(cfg, tmp_path), cfg={"decontam": cfg.decontam})
    flagged = {p.id: p.metadata.get("contamination", {}).get("benchmark") for p in batch}
    # math500 is a math benchmark only; mt_bench (decontam.benchmarks) applies to all.
    assert flagged == {"math": "math500", "code": None, "general": None, "c2": "mt_bench"}
