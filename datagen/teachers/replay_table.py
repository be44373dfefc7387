"""The replay teacher's samples built as Arrow columns (issue 19).

Replaying stored traces should cost almost nothing per sample: the traces are
taken from the memory-mapped file by row number in one call and the problems'
columns repeated by index, so no ``Completion`` or ``Sample`` object is made.
The rows are those :meth:`ReplayTeacher.generate` gives, through ``to_row``
(``tests/test_teacher_replay.py`` compares the two).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datagen.config import SamplingConfig
from datagen.records import Problem, Sample, content_hash
from datagen.teachers.base import _key, sample_seed, sampling_params, split_reasoning

if TYPE_CHECKING:
    from datagen.teachers.replay import ReplayTeacher


def generate_table(
    self: ReplayTeacher, problems: pa.Table, sampling: SamplingConfig, base_seed: int
) -> pa.Table:
    """:meth:`generate` over an Arrow batch of problems, to the samples' Arrow rows.

    The traces are taken from the mapped file by row number in one call and
    the problems' columns repeated by index; per sample only its request key,
    id and the ``<think>`` split are computed in Python (issue 19: a replayed
    sample should cost almost nothing). Same rows as ``generate``, same order.
    """
    n, model = sampling.n, self.model
    extra, scope, params = self.key_extra(), self.cache_scope(), sampling_params(sampling)
    owner: list[int] = []
    keys: list[str] = []
    ids: list[str] = []
    errors: list[str | None] = []
    wanted: list[int] = []
    slot: list[int] = []  # each sample's position among the wanted traces, or -1
    options: list[list[str] | None] = []
    for p, row in enumerate(problems.to_pylist()):  # problems are few: 1/n of the rows
        messages = row["messages"]
        choices = Problem.from_row(row).options  # metadata's, checked as the record path does
        users = [m["content"] for m in messages if m.get("role") == "user"]
        rows = self.traces.rows(users[-1] if users else "")
        for i in range(n):
            key = _key(
                model, messages, params, i, sample_seed(base_seed, row["id"], i), extra, scope
            )
            owner.append(p)
            options.append(choices)
            keys.append(key)
            parts = (row["id"], key, self.label) if self.label else (row["id"], key)
            ids.append(content_hash(*parts))
            if i < len(rows):
                slot.append(len(wanted))
                wanted.append(rows[i])
                errors.append(None)
            else:
                slot.append(-1)
                errors.append(
                    f"replay: {len(rows)} trace(s) for this prompt in {self.cfg.path}, "
                    f"no sample {i}"
                )
    self.requests_sent += len(keys)
    traces = self.traces.take(wanted)
    responses = traces["response"].to_pylist()
    reasonings = traces["reasoning"].to_pylist()
    finishes = traces["finish_reason"].to_pylist()
    labels = traces["label"].to_pylist()
    scores = traces["score"].to_pylist()
    details = traces["details"].to_pylist()
    version = f"{self.cfg.path}:{self.cfg.label_field}"
    cols: dict[str, list[Any]] = {
        k: [] for k in ("reasoning", "content", "finish_reason", "verdicts", "passed")
    }
    for s in slot:
        if s < 0:
            reasoning, content = split_reasoning("", None)
            finish, verdicts, passed = None, [], None
        else:
            reasoning, content = split_reasoning(responses[s], reasonings[s])
            finish, verdicts, passed = finishes[s], [], None
            if self.cfg.label_field is not None:
                raw = details[s]
                found = json.loads(raw) if raw else {}
                verdicts = [
                    {
                        "verifier": self.cfg.label_name,
                        "verifier_version": version,
                        "passed": labels[s],
                        "score": scores[s],
                        "details": json.dumps(found, ensure_ascii=False, sort_keys=True),
                    }
                ]
                passed = labels[s]
        cols["reasoning"].append(reasoning)
        cols["content"].append(content)
        cols["finish_reason"].append(finish)
        cols["verdicts"].append(verdicts)
        cols["passed"].append(passed)
    of = problems.take(pa.array(owner, pa.int64()))
    failed = [e is not None for e in errors]
    rows_n = len(keys)
    schema = Sample.FEATURES.arrow_schema
    data = {
        "id": ids,
        "problem_id": of["id"],
        "domain": of["domain"],
        "messages": of["messages"],
        "reference": of["reference"],
        "teacher": [self.label or self.name] * rows_n,
        "model": [model] * rows_n,
        "sample_index": [i for _ in range(problems.num_rows) for i in range(n)],
        "reasoning": cols["reasoning"],
        "content": cols["content"],
        "prompt_tokens": [0] * rows_n,
        "completion_tokens": [0] * rows_n,
        "finish_reason": cols["finish_reason"],
        "truncated": [f == "length" for f in cols["finish_reason"]],
        "cost": [0.0] * rows_n,  # nothing is billed: no tokens are counted
        "request_key": keys,
        "error": errors,
        "verdicts": cols["verdicts"],
        "passed": cols["passed"],
        "keep": [not f for f in failed],
        "reject_reason": [f"generation failed: {e}" if e else None for e in errors],
        "source": of["source"],
        "verifier": of["verifier"],
        "options": options,
        "role": ["teacher"] * rows_n,
    }
    return pa.table(
        [
            v if isinstance(v, pa.ChunkedArray) else pa.array(v, schema.field(k).type)
            for k, v in data.items()
        ],
        schema=schema,
    )
