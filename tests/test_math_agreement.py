"""Agreement of ``verify_batch`` with published and labelled verdicts (issue 14).

- ``fixtures/math/math_verify_regression.jsonl``: Math-Verify's own regression tables
  (``gold, pred, expected``; see ``fixtures/math/README.md``), graded with the
  options each table uses (targets, precision, strict, set relations) and the
  default fallback. The cases we grade differently are listed, with reasons, in
  ``math_verify_regression_exceptions.json``.
- The 800 labelled Qwen2.5-Math traces, with their boxes removed and with a trailing
  check line appended: as good as with boxes (799/800, see test_math_verifier.py).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from verifiers.math import MathVerifyConfig, verify_batch

FIXTURES = Path(__file__).parent / "fixtures" / "math"
# Agreement, not speed, is tested here: room enough for a busy shared machine.
TIMEOUT_S = 60.0
CHECK_LINE = "\n\nCheck: 64 + 53 = 117."


def _regression_rows() -> list[dict]:
    text = (FIXTURES / "math_verify_regression.jsonl").read_text()
    return [{**json.loads(line), "line": i} for i, line in enumerate(text.splitlines(), 1)]


@pytest.fixture(scope="module")
def regression() -> list[tuple[dict, object]]:
    rows = _regression_rows()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        key = (
            ",".join(row["match_types"]),
            row["precision"],
            row["strict"],
            bool(row.get("allow_set_relation_comp")),
        )
        groups[key].append(i)
    verdicts: list = [None] * len(rows)
    for (targets, precision, strict, set_relations), index in groups.items():
        config = MathVerifyConfig(
            targets=targets,
            float_rounding=precision,
            strict=strict,
            allow_set_relation_comp=set_relations,
            timeout_s=TIMEOUT_S,
        )
        graded = verify_batch(
            [rows[i]["pred"] for i in index], [rows[i]["gold"] for i in index], config
        )
        for i, verdict in zip(index, graded, strict=True):
            verdicts[i] = verdict
    return list(zip(rows, verdicts, strict=True))


def test_math_verify_regression_agreement(regression):
    agree = sum(bool(v.passed) == bool(row["expected"]) for row, v in regression)
    assert len(regression) == 269
    assert agree / len(regression) >= 0.995, f"{agree}/{len(regression)}"


def test_math_verify_regression_exceptions_are_the_listed_ones(regression):
    found = {
        row["line"]: bool(v.passed)
        for row, v in regression
        if bool(v.passed) != bool(row["expected"])
    }
    listed = json.loads((FIXTURES / "math_verify_regression_exceptions.json").read_text())
    assert found == {e["line"]: e["ours"] for e in listed}
    assert all(e["reason"] for e in listed)


def test_regression_with_default_options_still_reads_bare_answers(regression):
    """The library defaults read bare numbers (issue 14: `-5` against `-5` was no_answer)."""
    bare = [row for row, _ in regression if row["source"].endswith("test_number_extraction")]
    verdicts = verify_batch(
        [r["pred"] for r in bare], [r["gold"] for r in bare], MathVerifyConfig(timeout_s=TIMEOUT_S)
    )
    agree = sum(bool(v.passed) == bool(r["expected"]) for r, v in zip(bare, verdicts, strict=True))
    assert agree == len(bare)


_BOX = re.compile(r"\\boxed\s*\{")


def remove_boxes(text: str) -> str:
    r"""``\boxed{x}`` -> ``x`` (balanced braces), as a trace that never boxed would read."""
    out, i = [], 0
    for match in _BOX.finditer(text):
        if match.start() < i:
            continue
        depth, j = 1, match.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:
            continue
        out += [text[i : match.start()], text[match.end() : j - 1]]
        i = j
    return "".join([*out, text[i:]])


def test_remove_boxes():
    assert (
        remove_boxes(r"so \(\boxed{\frac{1}{2}}\). And \boxed{3}") == r"so \(\frac{1}{2}\). And 3"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    ["boxes_removed", "check_line", "boxes_removed_and_check_line"],
)
def test_labelled_traces_agree_without_boxes_and_with_check_lines(variant):
    rows = [
        json.loads(x)
        for x in (FIXTURES / "traces_qwen25_math_cot_100.jsonl").read_text().splitlines()
    ]
    texts = [r["response"] for r in rows]
    if "boxes_removed" in variant:
        texts = [remove_boxes(t) for t in texts]
        assert not any("\\boxed{" in t for t in texts)
    if "check_line" in variant:
        texts = [t + CHECK_LINE for t in texts]
    verdicts = verify_batch(
        texts, [r["answer"] for r in rows], prompts=[r["problem"] for r in rows]
    )
    disagree = [
        r["id"] for r, v in zip(rows, verdicts, strict=True) if v.passed is not r["correct"]
    ]
    # The one disagreement with boxes too: Qwen's label calls 10000 wrong against 10{,}000.
    assert disagree == ["math_cot_100-72-7"]
