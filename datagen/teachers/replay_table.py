"""The replay teacher's samples built as Arrow columns (issue 19).

Replaying stored traces should cost almost nothing per sample: the traces are
taken from the memory-mapped file by row number in one call and the problems'
columns repeated by index, so no ``Completion`` or ``Sample`` object is made.
The rows are those :meth:`ReplayTeacher.generate` gives, through ``to_row``
(``tests/test_teacher_replay.py`` compares the two).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datagen.config import SamplingConfig
from datagen.records import Problem, Sample
from datagen.teachers.base import sampling_params, split_reasoning

if TYPE_CHECKING:
    from datagen.teachers.replay import ReplayTeacher


def _dumps(value: Any) -> str:
    """One part as :func:`datagen.records.content_hash` encodes it inside its list."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _sha(blob: str) -> str:
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def generate_table(
    self: ReplayTeacher, problems: pa.Table, sampling: SamplingConfig, base_seed: int
) -> pa.Table:
    """:meth:`generate` over an Arrow batch of problems, to the samples' Arrow rows.

    Request keys, seeds and ids are the hashes ``base`` computes, with each problem's
    parts (model, messages, sampling) encoded once instead of once per sample: the
    JSON of a list is its parts' JSON joined by ``", "``. The traces are taken from
    the mapped file by row number in one call and the problems' columns repeated by
    index; per sample only its hashes and the ``<think>`` split are computed in
    Python (issue 19: a replayed sample should cost almost nothing). Same rows as
    ``generate``, same order.
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
        pid = _dumps(row["id"])
        head = f"[{_dumps(model)}, {_dumps(messages)}, {_dumps(params)}, "
        tail = "".join(f", {_dumps(x)}" for x in (extra, {"scope": scope} if scope else None) if x)
        label = f", {_dumps(self.label)}" if self.label else ""
        for i in range(n):
            seed = int(_sha(f"[{base_seed}, {pid}, {i}]")[:8], 16) % (2**31)  # sample_seed
            key = _sha(f"{head}{i}, {seed}{tail}]")[:32]  # base._key
            owner.append(p)
            options.append(choices)
            keys.append(key)
            ids.append(_sha(f"[{pid}, {_dumps(key)}{label}]")[:16])  # content_hash
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
