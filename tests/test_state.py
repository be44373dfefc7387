"""State that checks itself: stage hashes chain the data they read, and damaged pieces of
a run directory are recomputed or named in one line, never a traceback or a silent
re-payment. Runs go through a real HTTP server on 127.0.0.1 (helpers/stub_openai.py,
behind helpers/fault_proxy.py for the failures) and real damaged files."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers, under any pytest import mode
from helpers.fault_proxy import FaultProxy
from helpers.stub_openai import StubOpenAI

from datagen.__main__ import run
from datagen.config import ConfigError
from datagen.output.publish import load_output
from datagen.runner import Runner
from datagen.stages import STAGES
from datagen.teachers.cache import RequestCache
from datagen.teachers.cache import main as cache_main
from datagen.teachers.cache_repair import CacheDamaged
from datagen.views import open_part

from .conftest import compose
from .test_runner import counting_stage, make_source

OUTPUTS = ("sft_positive", "sft_negative", "redi_pairs")


def source(tmp_path: Path) -> Path:
    path = tmp_path / "p.jsonl"
    rows = [{"id": str(i), "problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(4)]
    rows[1]["problem"] = "[flaky] " + rows[1]["problem"]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def cfg_for(tmp_path: Path, url: str):
    return compose(
        "+pipeline=math",
        "pipeline.stages=[load,generate,verify,filter,emit]",
        f"source.path={source(tmp_path)}",
        "teacher=openai",
        "teacher.model=m",
        f"teacher.base_url={url}",
        "teacher.api_key_env=null",
        "run.progress=false",
    )


def outputs(run_dir: Path) -> dict[str, list]:
    return {name: load_output(run_dir / "outputs" / name).to_list() for name in OUTPUTS}


@pytest.fixture
def server():
    with StubOpenAI() as stub:
        proxy = FaultProxy(stub.port).start()
        yield proxy
        proxy.stop()


def test_a_rerun_stage_invalidates_every_stage_after_it(tmp_path, server):
    proxy = server
    proxy.reset({"[flaky]": ["400"]})  # the first attempt of each [flaky] request fails
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    first = run(cfg, run_dir)
    assert first["generation_failed"] == 4  # the 4 samples of the [flaky] prompt
    shutil.rmtree(run_dir / "stages" / "01_generate" / "data")
    second = run(cfg, run_dir)
    assert second["generation_failed"] == 0
    assert not any(s["resumed"] for name, s in second["stages"].items() if name != "load")
    clean_dir = tmp_path / "clean"
    clean = run(cfg, clean_dir)  # the proxy forwards every request now
    assert outputs(run_dir) == outputs(clean_dir)
    for key in ("samples", "samples_kept", "positives", "negatives", *OUTPUTS):
        assert second[key] == clean[key], key
    third = run(cfg, run_dir)
    assert all(s["resumed"] for s in third["stages"].values())  # nothing changed: all skipped


@pytest.mark.parametrize("garbage", ["not json {", "{}", "[]", '{"stages": {"load": 1}}'])
def test_a_damaged_manifest_is_set_aside_and_the_run_recomputed_from_the_cache(
    tmp_path, server, garbage, caplog
):
    proxy = server
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    before = run(cfg, run_dir)
    sent = len(proxy.received())
    (run_dir / "manifest.json").write_text(garbage)
    after = run(cfg, run_dir)
    assert len(proxy.received()) == sent  # recomputed from the cache: nothing paid twice
    assert after["samples_kept"] == before["samples_kept"]
    assert any("damaged" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_missing_arrow_file_of_a_finished_stage_is_recomputed(tmp_path, server):
    proxy = server
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    before = run(cfg, run_dir)
    sent = len(proxy.received())
    for arrow in (run_dir / "stages" / "01_generate" / "data").glob("*.arrow"):
        arrow.unlink()
    after = run(cfg, run_dir)
    assert len(proxy.received()) == sent
    assert after["stages"]["generate"]["resumed"] is False
    assert after["samples_kept"] == before["samples_kept"]


def test_a_half_written_shard_is_recomputed(tmp_path, make_config):
    cfg = make_config(
        "+pipeline=math",
        f"source.path={make_source(tmp_path)}",
        "run.batch_size=3",
        "decontam=none",
        "run.progress=false",
    )
    run_dir = tmp_path / "run"
    calls: list[int] = []
    stages = [STAGES["load"], STAGES["dedup"], counting_stage(calls, fail_on_batch=2)]
    with pytest.raises(RuntimeError):
        Runner(cfg, run_dir, stages).run()
    (shard,) = (run_dir / "stages" / "02_mark").glob(".partial-*/shard-000000.parquet")
    shard.write_bytes(shard.read_bytes()[:40])  # cut short, as a full disk would leave it
    again: list[int] = []
    Runner(cfg, run_dir, [*stages[:2], counting_stage(again, None)]).run()
    assert again == [3, 3, 1]  # the damaged batch and the two never written
    out = open_part(str(run_dir / "stages" / "02_mark" / "data"))
    assert len(out) == 10


def damage_a_page(path: Path, entries: int = 3000) -> None:
    """A real cache of ``entries`` responses with one page in the middle overwritten."""
    cache = RequestCache(path)
    for i in range(entries):
        cache.put(f"key-{i:05d}", {"text": "x" * 200, "i": i})
    cache.close()
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\xff" * page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["garbage", "page"])
def test_a_corrupt_cache_is_one_line_with_the_salvage_command(tmp_path, server, damage):
    proxy = server
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    (run_dir / "cache").mkdir(parents=True)
    path = run_dir / "cache" / "requests.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not a database " * 200)
    else:
        damage_a_page(path)
    with pytest.raises(ConfigError, match="salvage") as info:
        run(cfg, run_dir)
    assert "\n" not in str(info.value) and "requests.sqlite" in str(info.value)
    assert proxy.received() == []  # nothing sent


def test_salvage_copies_every_readable_entry_out_of_a_damaged_cache(tmp_path, capsys):
    path = tmp_path / "c.sqlite"
    damage_a_page(path)
    with pytest.raises(CacheDamaged, match="salvage"):
        RequestCache(path, check=True)
    assert cache_main(["salvage", str(path), str(tmp_path / "new.sqlite")]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = RequestCache(tmp_path / "new.sqlite")
    assert 2500 < len(saved) < 3000 and report["copied"] == len(saved)
    assert saved.get("key-00000") == {"text": "x" * 200, "i": 0}
    saved.close()


def test_an_emptied_cache_is_a_warning_before_anything_is_paid_again(tmp_path, server, caplog):
    proxy = server
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    run(cfg, run_dir)
    sent = len(proxy.received())
    cache = run_dir / "cache" / "requests.sqlite"
    for extra in cache.parent.glob("requests.sqlite-*"):
        extra.unlink()
    cache.write_bytes(b"")  # truncated to zero bytes
    shutil.rmtree(run_dir / "stages" / "01_generate")
    at_warning: list[int] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "stored" in record.getMessage() and record.levelno == logging.WARNING:
                at_warning.append(len(proxy.received()))

    spy = Spy()
    logging.getLogger("datagen").addHandler(spy)
    try:
        run(cfg, run_dir)
    finally:
        logging.getLogger("datagen").removeHandler(spy)
    assert at_warning == [sent]  # warned once, before any request was sent again
    assert len(proxy.received()) > sent  # (then it did pay again, as warned)


def test_emit_swaps_outputs_in_whole(tmp_path, server):
    proxy = server
    run_dir = tmp_path / "run"
    cfg = cfg_for(tmp_path, proxy.base_url)
    run(cfg, run_dir)
    stale = run_dir / ".outputs.incoming"
    stale.mkdir()
    (stale / "half-written").write_text("left by a killed emit")
    shutil.rmtree(run_dir / "stages" / "04_emit")
    run(cfg, run_dir)
    assert not stale.exists() and not (run_dir / ".outputs.old").exists()
    assert sorted(p.name for p in (run_dir / "outputs").iterdir()) == sorted(OUTPUTS)
