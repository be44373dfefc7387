"""A corpus of malformed inputs: every row is a problem or a reject with file and line.

The files are real damaged files written to disk (invalid UTF-8, a BOM, deep
nesting, lone surrogates, U+2028, compressed files, a folder, a JSON array
with a syntax error, references of odd types), read through the real load
stage and runner; the summary must add up to the rows in the files.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from datagen.config import ConfigError, SourceConfig
from datagen.runner import Runner
from datagen.sources import read_source
from datagen.stages import STAGES
from datagen.summary import build_summary


def row(i: int | str, problem: str = "", answer: object = "1", **extra: object) -> str:
    return json.dumps(
        {"id": str(i), "problem": problem or f"What is {i}+1?", "answer": answer, **extra}
    )


def build_corpus(root):
    """Write the corpus; return {file name: (rows in the file, {line: reason fragment})}."""
    root.mkdir()
    expected: dict[str, tuple[int, dict[int, str]]] = {}
    deep = '{"id": "deep", "problem": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        codecs.BOM_UTF8 + row("bom").encode(),  # 1: the BOM must not cost this row
        row("ok1").encode(),  # 2
        b'{"id": "bad-utf8", "problem": "caf\xe9 au lait", "answer": "1"}',  # 3
        deep.encode(),  # 4: RecursionError
        b'{"id": "sur", "problem": "lone \\ud800 surrogate", "answer": "1"}',  # 5
        json.dumps({"id": "ls", "problem": "line\u2028sep\u2029here"}, ensure_ascii=False).encode(),
        b"",  # 7: blank, not a row
        row("t", answer=True).encode(),  # 8
        b'{"id": "nan", "problem": "What is NaN?", "answer": NaN}',  # 9
        row("lst", answer=[1, 2]).encode(),  # 10
        row("dct", answer={"a": 1}).encode(),  # 11
        row("dup", problem="First prompt with id dup").encode(),  # 12
        row("dup", problem="A different prompt, same id").encode(),  # 13
        row("flt", answer=6.0).encode(),  # 14: converted to "6"
        b"[1, 2, 3]",  # 15: not an object
        b'{"id": "esc", "problem": "\\u001b[2J\\u001b]0;owned\\u0007", "answer": {"x": 1}}',  # 16
    ]
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    expected["a.jsonl"] = (
        15,
        {
            3: "invalid UTF-8",
            4: "nested too deeply",
            5: "unpaired surrogate",
            6: "'answer' is missing",
            8: "boolean",
            9: "nan",
            10: "list",
            11: "dict",
            15: "expected an object",
            16: "dict",
        },
    )
    body = "\n".join([row("z1"), '{"id": "z2", "problem": ', row("z3")]).encode() + b"\n"
    for name, compress in [
        ("b.jsonl.gz", gzip.compress),
        ("c.jsonl.bz2", bz2.compress),
        ("d.jsonl.xz", lzma.compress),
        ("e.jsonl.zst", zstandard.ZstdCompressor().compress),
    ]:
        (root / name).write_bytes(compress(body.replace(b"z", name[0].encode())))
        expected[name] = (3, {2: "bad JSON"})
    array = (
        "[\n"
        + ",\n".join(
            [
                json.dumps({"id": "j1", "problem": "Array row one", "answer": "1"}, indent=2),
                '{"id": "j2", "problem": "broken" "answer": "2"}',
                json.dumps({"id": "j3", "problem": "Array row three", "answer": "3"}, indent=2),
            ]
        )
        + "\n]\n"
    )
    (root / "f.json").write_text(array, encoding="utf-8")
    expected["f.json"] = (3, {7: "bad JSON"})
    (root / "sub").mkdir()
    pq.write_table(
        pa.Table.from_pylist(
            [{"id": f"p{i}", "problem": f"Parquet {i}", "answer": str(i)} for i in range(3)]
        ),
        root / "sub" / "g.parquet",
    )
    expected["sub/g.parquet"] = (3, {})
    (root / "notes.txt").write_text("not a source file\n")
    return expected


def test_every_row_is_a_problem_or_a_reject_with_file_and_line(tmp_path):
    expected = build_corpus(tmp_path / "src")
    read = read_source(SourceConfig(path=str(tmp_path / "src")), None)
    got: dict[tuple[str, int], str] = {}
    for rej in read.rejects:
        rel = str(tmp_path / "src")
        got[(rej["file"][len(rel) + 1 :], rej["line"])] = rej["reason"]
    want = {(f, line): frag for f, (_, bad) in expected.items() for line, frag in bad.items()}
    assert set(got) == set(want)
    for key, frag in want.items():
        assert frag in got[key], (key, got[key])
    total = sum(n for n, _ in expected.values())
    assert len(read.problems) + len(read.rejects) == total
    by_id = {p.metadata["source_id"]: p for p in read.problems}
    assert "bom" in by_id and by_id["flt"].reference == "6"
    assert [c["id"] for c in read.id_conflicts] == ["dup"]
    assert read.id_conflicts[0]["first"].endswith("a.jsonl:12")
    # JSON array elements are reported at the line where they start
    assert {"j1", "j3"} <= set(by_id) and ("f.json", 7) in got


def test_the_runner_writes_every_reject_as_one_record_and_the_summary_adds_up(
    tmp_path, make_config
):
    expected = build_corpus(tmp_path / "src")
    cfg = make_config("+pipeline=math", f"source.path={tmp_path / 'src'}", "run.progress=false")
    run_dir = tmp_path / "run"
    results = Runner(cfg, run_dir, [STAGES["load"]]).run()
    summary = build_summary(results, run_dir, 0.0, cfg)
    total = sum(n for n, _ in expected.values())
    n_bad = sum(len(bad) for _, bad in expected.values())
    assert summary["rows_read"] == total
    assert summary["malformed_rows"] == n_bad
    assert summary["problems_loaded"] + summary["malformed_rows"] == total
    records = (run_dir / "rejects.jsonl").read_bytes().split(b"\n")[:-1]
    assert len(records) == n_bad
    parsed = [json.loads(r.decode("utf-8")) for r in records]  # valid UTF-8 JSON, each
    assert all(r["file"] and isinstance(r["line"], int) for r in parsed)
    assert any("\u2028" in json.dumps(r["row"], ensure_ascii=False) for r in parsed)
    sur = next(r["row"] for r in parsed if isinstance(r["row"], dict) and r["row"]["id"] == "sur")
    assert sur["problem"] == "lone \ud800 surrogate"  # written as an escape, read back whole
    assert summary["stages"]["load"]["stats"]["id_conflicts"] == 1


def test_a_folder_without_source_files_and_a_missing_file_are_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"holds no \.jsonl"):
        read_source(SourceConfig(path=str(tmp_path / "empty")), None)
    with pytest.raises(ConfigError, match="no such file"):
        read_source(SourceConfig(path=str(tmp_path / "nope.jsonl.gz")), None)


def test_a_truncated_compressed_file_keeps_its_rows_and_names_the_file(tmp_path):
    data = gzip.compress(("\n".join(row(i) for i in range(200)) + "\n").encode())
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    read = read_source(SourceConfig(path=str(tmp_path / "t.jsonl.gz")), None)
    assert read.problems and len(read.rejects) == 1
    assert (
        read.rejects[0]["file"].endswith("t.jsonl.gz")
        and "could not be read" in read.rejects[0]["reason"]
    )


def test_code_references_stay_json_and_odd_math_references_are_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(row("c", answer={"kind": "assert", "test_code": "assert f() == 1"}) + "\n")
    read = read_source(SourceConfig(path=str(path), domain="code"), None)
    assert json.loads(read.problems[0].reference)["kind"] == "assert"
    read = read_source(SourceConfig(path=str(path), domain="math"), None)
    assert "is a dict; a reference must be text" in read.rejects[0]["reason"]
