"""Live progress: the postfix a stage's bar shows, and when the bar stays quiet."""

from __future__ import annotations

import io

from datagen.config import VerifierChoice
from datagen.progress import KEY, StageProgress, progress_enabled, record
from datagen.records import Sample
from datagen.stages.base import StageContext
from datagen.stages.verify import run_verification
from datagen.verify_registry import VERIFIERS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_unless_asked_and_on_a_terminal():
    assert progress_enabled(True, Terminal())
    assert not progress_enabled(False, Terminal())
    assert not progress_enabled(True, io.StringIO())  # redirected: no bar


def test_postfix_shows_throughput_retries_cost_in_flight_and_pass_rate():
    out = Terminal()
    bar = StageProgress(10, "03 generate", enabled=True, stream=out)
    bar.record(samples=4, tokens=400, cost=0.002, retries=1, in_flight=3)
    bar.record(samples=4, tokens=400, cost=0.001, retries=0, in_flight=2, graded=4, passed=3)
    bar.update(8)
    post = bar.postfix()
    assert post["in_flight"] == 2 and post["retries"] == 1 and post["cost"] == "$0.0030"
    assert post["pass"] == "75%" and float(post["samples/s"]) > 0 and float(post["tok/s"]) > 0
    bar.close()
    text = out.getvalue()
    assert "03 generate" in text and "retries=1" in text and "pass=75%" in text


def test_a_disabled_bar_writes_nothing_and_stages_without_one_record_into_nothing(tmp_path):
    out = Terminal()
    bar = StageProgress(2, "x", enabled=False, stream=out)
    bar.record(samples=2)
    bar.close()
    assert out.getvalue() == ""
    record(StageContext(config=None, run_dir=tmp_path), samples=1)  # type: ignore[arg-type]


def test_the_verify_stage_reports_its_running_pass_rate(tmp_path):
    ctx = StageContext(config=None, run_dir=tmp_path)  # type: ignore[arg-type]
    bar = ctx.resources[KEY] = StageProgress(2, "04 verify", enabled=False)
    rows = [
        Sample(f"s{i}", "p", "math", [], "2", "t", "m", i, content=text)
        for i, text in enumerate([r"\boxed{2}", r"\boxed{3}", r"\boxed{2}"])
    ]
    choice = VerifierChoice("math", VERIFIERS["math"].config_cls())
    run_verification(rows, ctx, choice, stage="verify")
    assert bar.counts == {"samples": 3, "graded": 3, "passed": 2}
    assert bar.postfix()["pass"] == "67%"
