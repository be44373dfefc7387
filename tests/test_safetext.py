"""Safe text: escape codes from a server are shown escaped, and a key typed into a URL
appears nowhere in the run directory, its cards or its logs (real runs of ``python -m
datagen`` against a stub OpenAI-compatible server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.stub_openai import StubOpenAI

from datagen.safetext import dumps_line, escape_text, redact_text, redact_url

from .conftest import ROOT

KEY = "sk-LEAK-15-0c7e"


@pytest.mark.parametrize(
    ("url", "want"),
    [
        (f"http://user:{KEY}@host:8000/v1", "http://user:***@host:8000/v1"),
        (f"https://{KEY}@host/v1", "https://***@host/v1"),
        (f"https://host/v1?api_key={KEY}&x=1", "https://host/v1?api_key=***&x=1"),
        (f"https://host/v1?Token={KEY}", "https://host/v1?Token=***"),
        ("http://127.0.0.1:8000/v1?model=a", "http://127.0.0.1:8000/v1?model=a"),
    ],
)
def test_credentials_are_redacted_from_urls(url, want):
    assert redact_url(url) == want
    assert redact_text(f"POST {url} failed: 500") == f"POST {want} failed: 500"


def test_control_characters_are_made_visible_and_json_lines_stay_one_line():
    assert escape_text("a\x1b[2Jb\x07\u2028\u202e") == "a\\x1b[2Jb\\x07\\u2028\\u202e"
    assert escape_text("two\nlines", keep_newlines=True) == "two\nlines"
    line = dumps_line({"t": "x\u2028y\ud800", "n": float("nan")})
    assert "\n" not in line and "\u2028" not in line.encode("utf-8").decode("utf-8")
    assert json.loads(line)["t"] == "x\u2028y\ud800"


def datagen(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "datagen", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def source(tmp_path: Path) -> Path:
    path = tmp_path / "p.jsonl"
    rows = [{"id": str(i), "problem": f"What is {i}+2?", "answer": str(i + 2)} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def api_run(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    """The short math pipeline on the openai teacher at ``url``, in tmp_path/run."""
    return datagen(
        tmp_path / "run",
        "+pipeline=math",
        "pipeline.stages=[load,generate,verify,filter,emit]",
        f"source.path={source(tmp_path)}",
        "teacher=openai",
        "teacher.model=m",
        f"teacher.base_url={url}",
        "teacher.api_key_env=null",
        "run.progress=false",
        *extra,
    )


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow  # a full python -m datagen run in a subprocess
def test_a_key_in_the_url_appears_nowhere_in_the_run_directory_or_cards(tmp_path):
    run_dir = tmp_path / "run"
    with StubOpenAI() as stub:
        url = f"http://user:{KEY}@127.0.0.1:{stub.port}/v1"
        proc = api_run(tmp_path, url, "output.dry_run=true", "output.repo_id=me/leak-test")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert stub.requests == 12  # the run really went through that URL
    assert (run_dir / "outputs" / "hub" / "README.md").exists()  # the card to be published
    assert list((run_dir / "outputs").rglob("README.md"))
    assert not (run_dir / ".hydra").exists()
    assert files_containing(run_dir, KEY.encode()) == []
    assert KEY not in proc.stdout + proc.stderr
    assert "user:***@127.0.0.1" in (run_dir / "config.yaml").read_text()


def test_a_key_given_as_an_option_is_refused_and_not_kept(tmp_path):
    run_dir = tmp_path / "run"
    proc = datagen(
        run_dir, "+pipeline=math", "teacher=openai", "teacher.model=m", f"+teacher.api_key={KEY}"
    )
    assert proc.returncode == 2
    assert "api_key" in proc.stdout + proc.stderr
    assert files_containing(run_dir, KEY.encode()) == [] if run_dir.exists() else True


@pytest.mark.slow  # a full python -m datagen run in a subprocess
def test_an_escape_code_error_body_is_escaped_on_the_console_and_in_the_log(tmp_path):
    run_dir = tmp_path / "run"
    hostile = "boom\x1b[2J\x1b]0;owned\x07"
    with StubOpenAI("error", error_message=hostile) as stub:
        proc = api_run(
            tmp_path, stub.base_url, "teacher.max_retries=1", "teacher.backoff_initial=0.01"
        )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 3, said[-3000:]  # every generation failed
    logs = [p.read_text() for p in run_dir.glob("*.log")]
    assert logs and all("\x1b" not in text and "\x07" not in text for text in logs)
    assert "\x1b" not in said and "\\x1b]0;owned\\x07" in said
    assert any("\\x1b[2J" in text for text in logs)
