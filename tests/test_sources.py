"""Sources: malformed rows are reported with file and line, never dropped."""

from __future__ import annotations

import json

import pytest

from datagen.config import ConfigError, SourceConfig
from datagen.sources import read_problems


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_rows_become_rejects_with_line_numbers(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            json.dumps({"id": "a", "problem": "What is 1+1?", "answer": "2"}),
            '{"id": "b", "problem": "broken',  # bad JSON
            json.dumps({"id": "c", "answer": "3"}),  # missing problem
            json.dumps({"id": "d", "problem": 42, "answer": "3"}),  # wrong type
            json.dumps({"id": "e", "problem": "What is 2+2?"}),  # missing answer
            json.dumps(["not", "an", "object"]),
            json.dumps({"id": "f", "problem": "What is 3+3?", "answer": 6}),  # number ok
        ],
    )
    problems, rejects = read_problems(SourceConfig(path=str(path)), "sys")
    assert [p.metadata["source_id"] for p in problems] == ["a", "f"]
    assert problems[1].reference == "6"
    assert problems[0].messages[0] == {"role": "system", "content": "sys"}
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6]
    assert all(r["file"] == str(path) for r in rejects)
    assert "bad JSON" in rejects[0]["reason"] and rejects[0]["row"].startswith('{"id": "b"')
    assert "'problem'" in rejects[1]["reason"]
    assert "'answer'" in rejects[3]["reason"]
    assert len(problems) + len(rejects) == 7


def test_ids_are_content_hashes_stable_across_reads(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [json.dumps({"problem": "x", "answer": "1"})])
    cfg = SourceConfig(path=str(path), id_field=None)
    assert read_problems(cfg, None)[0][0].id == read_problems(cfg, None)[0][0].id


def test_parquet_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"q": f"problem {i}", "a": str(i)} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    cfg = SourceConfig(
        path=str(tmp_path / "p.parquet"), prompt_field="q", reference_field="a", id_field=None
    )
    problems, rejects = read_problems(cfg, None, limit=4)
    assert [p.reference for p in problems] == ["0", "1", "2", "3"] and not rejects


def test_missing_local_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"source\.path"):
        read_problems(SourceConfig(path=str(tmp_path / "nope.jsonl")), None)
