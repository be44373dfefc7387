"""The summary's request/failure/unverifiable lines and the changed-config warning (no model)."""

from __future__ import annotations

import yaml

from datagen.outcomes import outcome_lines, request_counts, top_reason, verdict_reason
from datagen.rerun import PREVIOUS, changed_keys, warn_if_config_changed
from datagen.runner import StageResult


def test_unverifiable_reasons_come_from_the_verdict_details():
    judge = {"verifier": "judge", "passed": None, "details": '{"error": "unparseable_judge_reply"}'}
    code = {"verifier": "code", "passed": None, "details": {"failure": "unverifiable"}}
    decided = {"verifier": "math", "passed": True, "details": {"error": None}}
    ensemble = {"verifier": "ensemble", "passed": None, "details": {"yes": 0, "no": 0}}
    assert verdict_reason([judge]) == "judge: unparseable_judge_reply"
    assert verdict_reason([code]) == "code: unverifiable"
    assert verdict_reason([decided, judge, ensemble]) == "judge: unparseable_judge_reply"
    assert verdict_reason([ensemble]) == "no reason recorded"
    assert top_reason([]) is None
    assert top_reason(["a", "b", "b"]) == {"reason": "b", "count": 2}


def test_request_counts_add_only_the_generation_stages_this_process_ran():
    ran = StageResult("generate", "h", 2, 4, 0, 1.0, stats={"requests_sent": 3, "cache_hits": 1})
    earlier = StageResult(
        "generate_adaptive", "h", 2, 4, 0, 1.0, skipped=True, stats={"requests_sent": 9}
    )
    other = StageResult("verify", "h", 4, 4, 0, 1.0, stats={"requests_sent": 5})
    assert request_counts([ran, earlier, other]) == {"requests_sent": 3, "cache_hits": 1}


def test_outcome_lines_name_the_most_common_reasons():
    summary = {
        "requests_sent": 7,
        "cache_hits": 5,
        "generation_failed": 2,
        "failed_top_reason": {"reason": "HTTP 400: bad", "count": 2},
        "unverifiable": 3,
        "unverifiable_top_reason": {"reason": "judge: unparseable_judge_reply", "count": 2},
    }
    assert outcome_lines(summary) == [
        "  requests sent to teacher         7",
        "  answered from request cache      5",
        "  failed requests                  2 (most common: HTTP 400: bad, 2x)",
        "  unverifiable samples             3 (most common: judge: unparseable_judge_reply, 2x)",
    ]
    assert outcome_lines({"unverifiable": 0, "unverifiable_top_reason": None}) == [
        "  unverifiable samples             0"
    ]


def test_a_rerun_with_another_config_warns_naming_the_keys_and_keeps_the_old_one(tmp_path, caplog):
    old = {"teacher": {"name": "local", "model": "m"}, "run": {"progress": True, "limit": 9}}
    new = {"teacher": {"name": "openai", "model": "m", "base_url": "u"}, "run": {"limit": 3}}
    assert changed_keys(old, new) == ["run.limit", "teacher.base_url", "teacher.name"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert warn_if_config_changed(tmp_path, new, "outputs") == []  # no outputs yet: silent
    (tmp_path / "outputs").mkdir()
    assert warn_if_config_changed(tmp_path, old, "outputs") == []  # same config: silent
    with caplog.at_level("WARNING", logger="datagen.rerun"):
        changed = warn_if_config_changed(tmp_path, new, "outputs")
    # A group's name comes first: a long list is cut after 12 keys.
    assert changed == ["teacher.name", "run.limit", "teacher.base_url"]
    assert "Changed: teacher.name, run.limit, teacher.base_url" in caplog.text
    assert yaml.safe_load((tmp_path / PREVIOUS).read_text()) == old
