"""Decontamination: known leaks are caught, clean rows are kept, evidence is recorded.

Real data: the bundled benchmarks in data/benchmarks/ and two fixtures copied
from ../shared/data/math/ (tests/fixtures/dedup/README.md): all 975
aime_1983_2023 problems and a 1148-row slice of MATH train that includes every
row with a MATH-500 item of character similarity >= 0.8
(math_train_vs_math500_similar.json). Stage tests call the stage function on
inline rows with a hand-built StageContext.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from datagen.config import ConfigError
from datagen.records import Problem
from datagen.similarity import Embedder, Item, LeakIndex, normalise, template_key
from datagen.stages.base import StageContext
from datagen.stages.decontaminate import (
    DecontamConfig,
    decontaminate,
    load_benchmarks,
    write_decontam_report,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "dedup"
BENCH = ROOT / "data" / "benchmarks"
MATH_BENCHMARKS = [
    "math500",
    "aime24",
    "aime25",
    "amc23",
    "minerva_math",
    "olympiadbench_en",
    "gsm8k_test",
    "hmmt_2024_2025",
]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def problem(pid: str, text: str) -> Problem:
    return Problem(
        id=pid, source="test", domain="math", messages=[{"role": "user", "content": text}]
    )


def make_ctx(run_dir: Path) -> StageContext:
    return StageContext(
        config=SimpleNamespace(run=SimpleNamespace(progress=False)), run_dir=run_dir
    )


def run_stage(rows: list[dict], tmp_path: Path, **cfg) -> list[Problem]:
    batch = [problem(r["id"], r["problem"]) for r in rows]
    config = DecontamConfig(benchmarks=cfg.pop("benchmarks", MATH_BENCHMARKS), **cfg)
    return decontaminate(batch, make_ctx(tmp_path), cfg={"decontam": config})


@pytest.fixture(scope="module")
def math_index() -> LeakIndex:
    """Default exact + 13-gram index over the bundled math benchmarks."""
    return LeakIndex(load_benchmarks(DecontamConfig(benchmarks=MATH_BENCHMARKS)))


# -- AIME problems that are in MATH-500 --------------------------------------------
# ../shared/data/README.md: 3 exact matches (case and spacing ignored), 6 if
# punctuation is ignored too; all six are MATH-500 intermediate_algebra items.
AIME_IN_MATH500 = {
    "aime-1983-1-2": "test/intermediate_algebra/1365.json",
    "aime-1994-1-13": "test/intermediate_algebra/582.json",
    "aime-2001-2-3": "test/intermediate_algebra/90.json",
    "aime-2010-1-6": "test/intermediate_algebra/2146.json",
    "aime-2015-2-6": "test/intermediate_algebra/1411.json",
    "aime-2017-2-7": "test/intermediate_algebra/1849.json",
}
# Found by 13-gram overlap: the same problem, asking for a different final quantity.
AIME_RESTATED_IN_MATH500 = {
    "aime-1995-1-9": "test/precalculus/1281.json",
    "aime-2002-1-12": "test/intermediate_algebra/1063.json",
    "aime-2006-2-5": "test/counting_and_probability/1003.json",
    "aime-2016-1-10": "test/intermediate_algebra/345.json",
}
# Old AIME problems cannot be in AIME 2024/2025 or HMMT 2024/2025, so any match
# there is a false alarm. These two share AIME's 35-word answer-format sentence
# ("... in the form m sqrt(n)/p, where m, n, and p are positive integers ...")
# with aime24-65: 22 shared 13-grams, overlap 0.29-0.30.
KNOWN_FALSE_ALARMS = {"aime-2003-2-11", "aime-2005-2-8"}


def test_aime_problems_in_math500_are_caught_with_their_item(tmp_path):
    rows = jsonl(FIXTURES / "aime_1983_2023.jsonl")
    out = {p.id: p for p in run_stage(rows, tmp_path)}
    for aime_id, item in AIME_IN_MATH500.items():
        ev = out[aime_id].metadata["contamination"]
        assert (ev["benchmark"], ev["item"], ev["method"], ev["score"]) == (
            "math500",
            item,
            "exact",
            1.0,
        )
        assert out[aime_id].reject_reason == "contaminated: math500 (exact)"
        assert not out[aime_id].keep
    for aime_id, item in AIME_RESTATED_IN_MATH500.items():
        ev = out[aime_id].metadata["contamination"]
        assert (ev["item"], ev["method"]) == (item, "ngram") and ev["score"] >= 0.2
        assert ev["shared"] >= 1 and ev["item_text"]
    flagged = {p.id for p in out.values() if not p.keep}
    expected = set(AIME_IN_MATH500) | set(AIME_RESTATED_IN_MATH500) | KNOWN_FALSE_ALARMS
    assert flagged == expected  # 12 of 975; the other 963 are kept


def test_boilerplate_ngrams_need_the_overlap_rule(math_index):
    """One shared 13-gram (the GPT-3 rule) flags 125 old AIME problems against new ones."""
    rows = jsonl(FIXTURES / "aime_1983_2023.jsonl")
    items = load_benchmarks(DecontamConfig(benchmarks=["aime24", "aime25", "hmmt_2024_2025"]))
    any_gram = LeakIndex(items, methods=["ngram"], min_overlap=0.0)
    loose = sum(m is not None for m in any_gram.match([r["problem"] for r in rows]))
    strict = LeakIndex(items, methods=["ngram"])  # the default: overlap >= 0.2
    tight = {
        r["id"] for r, m in zip(rows, strict.match([r["problem"] for r in rows]), strict=True) if m
    }
    assert loose > 100 and tight == KNOWN_FALSE_ALARMS  # 125 measured


# -- MATH-train problems that restate MATH-500 items -------------------------------
def numbers_only_change(a: str, b: str) -> bool:
    """True when two texts differ only in digits, punctuation and spacing (checked by diff)."""
    a, b = normalise(a), normalise(b)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return all(op == "equal" or not re.search(r"[a-z]", a[i:j] + b[k:m]) for op, i, j, k, m in ops)


def test_math_train_restatements_of_math500_are_caught(math_index):
    train = {r["id"]: r["problem"] for r in jsonl(FIXTURES / "math_train_slice.jsonl")}
    m500 = {r["id"]: r["problem"] for r in jsonl(BENCH / "math500.jsonl")}
    pairs = json.loads((FIXTURES / "math_train_vs_math500_similar.json").read_text())
    restated = [
        p
        for p in pairs
        if numbers_only_change(train[p["train_id"]], m500[p["math500_id"]])
        and len(template_key(m500[p["math500_id"]])) >= 40
    ]
    assert len(restated) >= 18
    for p in restated:
        hit = math_index.match_one(train[p["train_id"]])
        assert hit is not None and (hit.group, hit.item) == ("math500", p["math500_id"]), p
    # Almost all pairs with >= 0.95 character similarity are caught; the misses are
    # siblings with other expressions (sin/cos, another polynomial), not restatements.
    close = [p for p in pairs if p["char_ratio"] >= 0.95]
    caught = [p for p in close if math_index.match_one(train[p["train_id"]])]
    assert len(caught) >= len(close) - 2


def test_short_generic_statements_are_not_matched_without_digits(math_index):
    # Same letters once digits go, but far too generic to call a leak.
    assert template_key("Find the greatest common divisor of $5616$ and $11609$.") == template_key(
        "Find the greatest common divisor of $3339$, $2961$, and $1491$."
    )
    assert math_index.match_one("Find the greatest common divisor of $5616$ and $11609$.") is None


# -- clean rows stay -----------------------------------------------------------------
def test_math_train_is_clean_against_gsm8k_test(tmp_path):
    rows = jsonl(FIXTURES / "math_train_slice.jsonl")
    out = run_stage(rows, tmp_path, benchmarks=["gsm8k_test"])
    assert all(p.keep for p in out)  # 0 of 1148 (0 of all 7470 in benchmarks/bench_dedup.py)


def test_clean_prompts_keep_no_evidence(tmp_path):
    out = run_stage([{"id": "x", "problem": "Compute the 2024th prime."}], tmp_path)
    assert out[0].keep and out[0].reject_reason is None and out[0].metadata == {}


# -- config and benchmark files ------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"ngram": 2}, "decontam.ngram"),
        ({"methods": ["exact", "fuzzy"]}, "decontam.methods"),
        ({"ngram_min_overlap": 1.5}, "decontam.ngram_min_overlap"),
        ({"embedding_threshold": 0.0}, "decontam.embedding_threshold"),
        ({"ngram_max_items": 0}, "decontam.ngram_max_items"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DecontamConfig(**kwargs)


def test_unknown_benchmark_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match=r"decontam\.benchmarks.*'gpqa'.*math500"):
        load_benchmarks(DecontamConfig(benchmarks=["gpqa"]))


def test_gpqa_is_not_bundled():
    assert not list(BENCH.glob("gpqa*"))


def test_a_benchmark_can_be_a_path(tmp_path):
    path = tmp_path / "private_eval.jsonl"
    path.write_text(json.dumps({"id": "q1", "problem": "What is the airspeed of a swallow?"}))
    rows = [{"id": "a", "problem": "what is the airspeed of a swallow"}]
    out = run_stage(rows, tmp_path, benchmarks=[str(path)])
    assert out[0].metadata["contamination"]["benchmark"] == "private_eval"


def test_report_lists_every_contaminated_row(tmp_path):
    rows = jsonl(FIXTURES / "aime_1983_2023.jsonl")[:120]
    out = run_stage(rows, tmp_path)
    stage = tmp_path / "stages" / "01_decontaminate"
    for name, keep in (("data", True), ("contaminated", False)):
        table = [p.to_row() for p in out if p.keep is keep]
        datasets.Dataset.from_list(table, features=Problem.FEATURES).save_to_disk(str(stage / name))
    report = write_decontam_report(stage)
    flagged = [p.id for p in out if not p.keep]
    assert flagged and [it["id"] for it in report["items"]] == flagged
    assert report["contaminated"] == len(flagged) and sum(report["by_method"].values()) == len(
        flagged
    )
    from datagen.summary import format_summary  # the run report lists every item

    shown = format_summary({"contamination_report": report}).splitlines()
    assert [x.split()[1] for x in shown if x.split()[0] == "contaminated"] == flagged
    lines = jsonl(stage / "contaminated.jsonl")
    assert {"benchmark", "item", "method", "score", "item_text", "prompt"} <= set(lines[0])


# -- embedding similarity (real model, ~100 short texts) -----------------------------
PARAPHRASES = [
    # (paraphrase, MATH-500 item, cosine with all-MiniLM-L6-v2)
    ("How many divisors (positive, whole numbers) does the number 196 have?",
     "test/number_theory/572.json", 0.97),
    ("Five identical balls are placed into two identical boxes. In how many different ways "
     "can this be done?", "test/counting_and_probability/71.json", 0.86),
]  # fmt: skip


@pytest.fixture(scope="module")
def embedded_index(tmp_path_factory):
    """20 MATH-500 and 40 GSM8K-test items, embedded once for the module."""
    folder = tmp_path_factory.mktemp("bench")
    m500 = jsonl(BENCH / "math500.jsonl")
    wanted = {item for _, item, _ in PARAPHRASES}
    chosen = [r for r in m500 if r["id"] in wanted] + m500[:18]
    items = [Item("math500", r["id"], r["problem"]) for r in chosen]
    items += [
        Item("gsm8k_test", r["id"], r["problem"]) for r in jsonl(BENCH / "gsm8k_test.jsonl")[:40]
    ]
    embedder = Embedder(cache_dir=folder / "cache", batch_size=32)
    yield items, embedder
    embedder.close()


def test_embedding_catches_paraphrases_by_threshold(embedded_index):
    items, embedder = embedded_index
    strict = LeakIndex(items, methods=["exact", "ngram", "embedding"], embed=embedder.encode)
    loose = LeakIndex(
        items, methods=["exact", "ngram", "embedding"], embed=embedder.encode, threshold=0.8
    )
    texts = [p for p, _, _ in PARAPHRASES]
    for index, caught in ((strict, [True, False]), (loose, [True, True])):
        hits = index.match(texts)
        assert [h is not None for h in hits] == caught
        for hit, (_, item, cosine) in zip(hits, PARAPHRASES, strict=True):
            if hit:
                assert (hit.item, hit.method) == (item, "embedding")
                assert hit.score == pytest.approx(cosine, abs=0.02)


def test_embedding_keeps_clean_math_train_rows(embedded_index):
    items, embedder = embedded_index
    index = LeakIndex(items, methods=["embedding"], embed=embedder.encode)
    similar = {
        p["train_id"]
        for p in json.loads((FIXTURES / "math_train_vs_math500_similar.json").read_text())
    }
    rows = [r for r in jsonl(FIXTURES / "math_train_slice.jsonl") if r["id"] not in similar][:40]
    assert index.match([r["problem"] for r in rows]) == [None] * len(rows)
