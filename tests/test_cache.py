"""Request cache: keys, persistence across processes, statistics and the inspection CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from datagen.config import SamplingConfig
from datagen.records import Problem
from datagen.teachers.base import Completion, Request, Teacher, request_key
from datagen.teachers.cache import RequestCache, main

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


def test_same_input_same_key_changed_input_new_key():
    base = request_key("m", MESSAGES, SamplingConfig(), 0, 7)
    assert base == request_key("m", MESSAGES, SamplingConfig(), 0, 7)
    assert base == request_key("m", MESSAGES, SamplingConfig(n=16), 0, 7)  # n is not in the key
    changed = [
        request_key("other", MESSAGES, SamplingConfig(), 0, 7),
        request_key("m", [{"role": "user", "content": "What is 2+3?"}], SamplingConfig(), 0, 7),
        request_key("m", MESSAGES, SamplingConfig(temperature=0.1), 0, 7),
        request_key("m", MESSAGES, SamplingConfig(max_tokens=4), 0, 7),
        request_key("m", MESSAGES, SamplingConfig(stop=["x"]), 0, 7),
        request_key("m", MESSAGES, SamplingConfig(), 1, 7),
        request_key("m", MESSAGES, SamplingConfig(), 0, 8),
        request_key("m", MESSAGES, SamplingConfig(), 0, 7, {"extra_body": {"top_k": 20}}),
    ]
    assert len({base, *changed}) == len(changed) + 1
    assert request_key("m", MESSAGES, SamplingConfig(), 0, 7, {}) == base


class CountingTeacher(Teacher):
    """A fake that honours the interface and counts what it is asked."""

    name = "fake"

    def __init__(self, cache: RequestCache | None) -> None:
        super().__init__("fake-model", cache)
        self.asked: list[str] = []

    def complete_many(
        self, requests: Sequence[Request], sampling: SamplingConfig
    ) -> Iterator[tuple[int, Completion]]:
        for i, req in reversed(list(enumerate(requests))):  # any order is allowed
            self.asked.append(req.key)
            if "fail" in req.messages[-1]["content"]:
                yield i, Completion("", error="HTTP 400: nope")
            else:
                yield (
                    i,
                    Completion(
                        f"answer {req.sample_index}",
                        finish_reason="stop",
                        prompt_tokens=5,
                        completion_tokens=3,
                    ),
                )


def problem(text: str) -> Problem:
    return Problem(
        id=text,
        source="t",
        domain="math",
        messages=[{"role": "user", "content": text}],
        reference="4",
    )


def test_one_entry_per_response_and_failures_are_not_stored(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    teacher = CountingTeacher(cache)
    out = teacher.generate([problem("a"), problem("fail b")], SamplingConfig(n=2), 0)
    assert [s.content for s in out[:2]] == ["answer 0", "answer 1"]
    assert [s.error for s in out[2:]] == ["HTTP 400: nope"] * 2
    assert len(cache) == 2 and teacher.requests_sent == 4

    teacher.asked.clear()
    again = teacher.generate([problem("a"), problem("fail b")], SamplingConfig(n=4), 0)
    assert len(teacher.asked) == 6  # samples 2-3 of "a" and all of "fail b"; 0-1 were cached
    assert [s.to_row() for s in again[:2]] == [s.to_row() for s in out[:2]]
    assert len(cache) == 4 and teacher.cache_hits == 2
    teacher.close()


def test_writes_are_visible_to_another_process_at_once(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("k1", {"text": "x"})
    code = (
        "import sys; from datagen.teachers.cache import RequestCache;"
        f"c = RequestCache({str(tmp_path / 'c.sqlite')!r}); print(c.get('k1')['text'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "x"
    cache.close()


def test_get_many_and_lifetime_counters(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    for i in range(1200):  # more than one IN (...) chunk
        cache.put(f"k{i}", {"i": i})
    found = cache.get_many([f"k{i}" for i in range(0, 1300, 2)])
    assert len(found) == 600 and found["k10"] == {"i": 10}
    assert (cache.hits, cache.misses) == (600, 50)
    cache.close()

    again = RequestCache(path)
    assert again.get("k1") == {"i": 1} and again.get("nope") is None
    stats = again.stats()
    assert (stats["lifetime_hits"], stats["lifetime_misses"]) == (601, 51)
    assert stats["entries"] == 1200 and stats["bytes"] > 0
    again.close()


def test_cli_prints_json_stats(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    cache = RequestCache(path)
    cache.put("k", {"text": "x"})
    cache.get("k")
    cache.close()
    assert main([str(path)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 1 and stats["lifetime_hits"] == 1 and "hits" not in stats
    assert main([str(tmp_path / "missing.sqlite")]) == 2


@pytest.mark.parametrize("n", [1, 3])
def test_shapes_do_not_depend_on_the_cache(tmp_path, n):
    fresh = CountingTeacher(None).generate([problem("a")], SamplingConfig(n=n), 0)
    cache = RequestCache(tmp_path / "c.sqlite")
    CountingTeacher(cache).generate([problem("a")], SamplingConfig(n=n), 0)
    cached = CountingTeacher(cache).generate([problem("a")], SamplingConfig(n=n), 0)
    assert [s.to_row() for s in cached] == [s.to_row() for s in fresh]
    cache.close()


def test_the_key_names_who_answered_unless_a_namespace_is_shared():
    local = {"backend": "local", "gguf": "smollm2.gguf", "bytes": 1}
    server = {"backend": "openai", "base_url": "http://127.0.0.1:8080/v1"}
    keys = [request_key("m", MESSAGES, SamplingConfig(), 0, 7, scope=s) for s in (local, server)]
    assert len({*keys, request_key("m", MESSAGES, SamplingConfig(), 0, 7)}) == 3
    shared = {"namespace": "smol"}
    assert request_key("m", MESSAGES, SamplingConfig(), 0, 7, scope=shared) == request_key(
        "m", MESSAGES, SamplingConfig(), 0, 7, scope=dict(shared)
    )

    class OtherBackend(CountingTeacher):
        name = "other"

    a, b = CountingTeacher(None), OtherBackend(None)
    assert a.cache_scope() == {"backend": "fake"} and b.cache_scope() == {"backend": "other"}
    key_of = lambda t: t.build_requests([problem("a")], SamplingConfig(n=1), 0)[0].key  # noqa: E731
    assert key_of(a) != key_of(b)
    a.cache_namespace = b.cache_namespace = "shared on purpose"
    assert key_of(a) == key_of(b)


def test_a_cache_from_before_key_format_2_is_reported_and_not_matched(tmp_path, caplog):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema an older datagen wrote, with one entry
        db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT, created REAL)")
        db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        old_key = request_key("fake-model", problem("a").messages, SamplingConfig(n=1), 0, 0)
        db.execute("INSERT INTO responses VALUES (?, ?, 0)", (old_key, '{"text": "old"}'))
    with caplog.at_level("WARNING", logger="datagen.teachers.cache"):
        cache = RequestCache(path)
    assert cache.legacy_entries == 1 and "1 responses stored by an older datagen" in caplog.text
    teacher = CountingTeacher(cache)
    [sample] = teacher.generate([problem("a")], SamplingConfig(n=1), 0)
    assert sample.content == "answer 0" and teacher.requests_sent == 1  # not the old answer
    stats = cache.stats()
    assert (stats["key_format"], stats["legacy_entries"], stats["entries"]) == (2, 1, 2)
    teacher.close()

    fresh = RequestCache(tmp_path / "new.sqlite")
    assert fresh.legacy_entries == 0 and fresh.stats()["key_format"] == 2
    fresh.close()
