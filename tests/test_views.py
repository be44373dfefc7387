"""Stages whose rows are their input rows are saved as views, not copies (issue 19).

One real run of the math pipeline on the replay teacher (``tests/helpers/replay_run``:
decontamination with a leak, dedup with a repeat, failed samples, filter setting
traces aside) is made twice: as the runner saves it, and with every stage saved
whole (the runner's view declaration switched off), which is how every stage was
saved before. Every stage part must read back the same rows, columns and order,
and the outputs must be the same; the view run's stages must hold the samples'
text about once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datagen import runner
from datagen.output.publish import load_output, output_file
from datagen.state import load_finished
from datagen.views import StaleViewError, is_view, open_part, view_spec
from tests.helpers.replay_run import build_run


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parts(run_dir: Path) -> dict[str, Path]:
    """Every stage part (``NN_stage/data``, its side output), by relative name."""
    return {
        f"{p.parent.name}/{p.name}": p
        for p in sorted((run_dir / "stages").glob("*/*"))
        if p.is_dir() and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    # The same run folder for both (the source path is in the rows): the full run is
    # moved away before the view run.
    views = tmp_path_factory.mktemp("views") / "run"
    full = tmp_path_factory.mktemp("full") / "run"
    with pytest.MonkeyPatch.context() as mp:
        # The old way: copies (emit, a sink, was a hard link then, and is a view here).
        mp.setattr(runner, "_view_columns", lambda stage: () if stage.sink else None)
        build_run(views)
    shutil.move(views, full)
    build_run(views)
    return views, full


def test_views_read_back_as_the_full_copies(runs):
    views, full = runs
    ours, theirs = parts(views), parts(full)
    assert list(ours) == list(theirs)
    viewed = [name for name, path in ours.items() if is_view(path)]
    # verify, filter, emit, decontaminate, dedup: both parts each; load and generate whole
    assert {n.split("/")[0].split("_", 1)[1] for n in viewed} == {
        "decontaminate",
        "dedup",
        "verify",
        "filter",
        "emit",
    }
    for name in ours:
        a, b = open_part(ours[name]), open_part(theirs[name])
        assert a.features == b.features, name
        assert a.column_names == b.column_names, name
        assert a.to_list() == b.to_list(), name
    assert any(len(open_part(ours[n])) for n in viewed if not n.endswith("/data")), (
        "no stage set a row aside: the side views are untested"
    )


def untimed(summary: dict) -> dict:
    """A summary without its timings (the only part two runs may differ in)."""
    summary = {k: v for k, v in summary.items() if k != "wall_seconds"}
    summary["stages"] = {
        name: {k: v for k, v in entry.items() if k != "seconds"}
        for name, entry in summary["stages"].items()
    }
    return summary


def test_outputs_summary_and_report_are_unchanged(runs):
    views, full = runs
    names = sorted(p.name for p in (full / "outputs").iterdir() if output_file(p).exists())
    assert names  # sft_positive, sft_negative, redi_pairs
    for name in names:
        a = load_output(views / "outputs" / name)
        assert a.to_list() == load_output(full / "outputs" / name).to_list(), name
    summaries = [json.loads((d / "summary.json").read_text()) for d in (views, full)]
    assert untimed(summaries[0]) == untimed(summaries[1])
    reports = [(d / "report.md").read_text().splitlines() for d in (views, full)]
    assert len(reports[0]) == len(reports[1])
    for a, b in zip(*reports, strict=True):
        if a != b:  # the stage table's seconds column
            assert a.rsplit("|", 2)[0] == b.rsplit("|", 2)[0], (a, b)


def test_stages_hold_the_sample_text_about_once(runs):
    views, full = runs
    ours, theirs = parts(views), parts(full)
    whole = sum(folder_bytes(p) for p in ours.values() if not is_view(p))  # load, generate
    viewed = sum(folder_bytes(p) for p in ours.values() if is_view(p))
    copies = sum(folder_bytes(theirs[n]) for n, p in ours.items() if is_view(p))
    # Generate's dataset holds each sample's text once; a view adds only positions and
    # the columns its stage set (verdicts, keep, reasons), ten views under a third of it.
    assert viewed < 0.35 * whole, (viewed, whole)
    assert copies > 1.8 * whole  # what saving the same stages whole cost


def test_a_view_over_another_upstream_is_never_used(runs, caplog):
    views, _ = runs
    verify = next((views / "stages").glob("*_verify"))
    spec = view_spec(verify / "data")
    manifest = json.loads((views / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["fingerprint"] == spec["upstream_fingerprint"]
    fp = manifest["stages"]["verify"]["fingerprint"]
    # The runner's check on resume: the previous stage's fingerprint must be the view's.
    assert load_finished(verify, "set_aside", fp, spec["upstream_fingerprint"]) is not None
    assert load_finished(verify, "set_aside", fp, "0123456789abcdef") is None
    assert "built over another version" in caplog.text
    # A reader's check: the upstream stage reran (a new fingerprint in the manifest).
    manifest["stages"]["generate"]["fingerprint"] = "0123456789abcdef"
    copy = views.parent / "changed"
    shutil.copytree(views, copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleViewError, match="another version"):
        open_part(copy / "stages" / verify.name / "data")
    with pytest.raises(StaleViewError):  # a view over that view is stale too
        open_part(next((copy / "stages").glob("*_filter")) / "data")
    # Another number of upstream rows than the view was built over: refused as well.
    (copy / "manifest.json").write_text((views / "manifest.json").read_text())
    open_part(copy / "stages" / verify.name / "data")
    changed = {**spec, "upstream_rows": spec["upstream_rows"] + 1}
    (copy / "stages" / verify.name / "data" / "view.json").write_text(json.dumps(changed))
    with pytest.raises(StaleViewError, match="rows"):
        open_part(copy / "stages" / verify.name / "data")
