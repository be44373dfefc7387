"""The output formats: TRL's conversational key sets, our Arrow schemas, the assistant turn.

TRL lists the dataset shapes its trainers accept (``trl/data_utils.py``,
``apply_chat_template``): ``messages`` for language modelling and ``prompt`` /
``chosen`` / ``rejected`` for preference. Our SFT sets use the first and our
pair sets the second, always as message lists (the conversational form). Every
other column is provenance or statistics, and no other column may use a key
TRL reads (``completion``, ``label``), so TRL sees exactly one format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import pyarrow as pa

from datagen.records import MESSAGES, Sample
from datagen.registry import declare
from verifiers.types import render_response

TRL_KEYS: frozenset[str] = frozenset(
    {"prompt", "chosen", "rejected", "completion", "messages", "label"}
)
"""Columns TRL's data utilities treat as data rather than metadata."""


@dataclass(frozen=True)
class OutputFormat:
    """One output kind: the TRL key set it must have, and how a card describes it."""

    trl_keys: frozenset[str]
    """The TRL keys its rows must have (and no other TRL key)."""
    card_name: str
    """The format's name in the card's overview table."""
    length_columns: tuple[str, ...]
    """Token-count columns the card summarises."""
    tags: tuple[str, ...]
    """Hub tags a card adds when it holds an output of this kind."""


FORMATS: dict[str, OutputFormat] = {
    "sft": OutputFormat(
        frozenset({"messages"}),
        "TRL conversational language modelling (`messages`)",
        ("prompt_tokens", "response_tokens"),
        ("sft",),
    ),
    "preference": OutputFormat(
        frozenset({"prompt", "chosen", "rejected"}),
        "TRL conversational preference (`prompt`, `chosen`, `rejected`)",
        ("prompt_tokens", "chosen_tokens", "rejected_tokens"),
        ("dpo", "redi", "preference"),
    ),
}
"""Our output kinds, by name (an output declares which one it is)."""

VERIFIERS = datasets.List({"name": datasets.Value("string"), "version": datasets.Value("string")})

_DIFFICULTY = {
    "pass_rate": datasets.Value("float64"),
    "graded": datasets.Value("int32"),
    "difficulty": datasets.Value("string"),
}


def sft_features(reasoning_column: bool = True) -> datasets.Features:
    """Schema of ``sft_positive`` and ``sft_negative``.

    Args:
        reasoning_column: Whether the reasoning also has its own ``reasoning`` column.

    Returns:
        The features, in column order.
    """
    cols: dict[str, Any] = {
        "id": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "source": datasets.Value("string"),
        "messages": MESSAGES,
    }
    if reasoning_column:
        cols["reasoning"] = datasets.Value("string")
    cols.update(
        {
            "reference": datasets.Value("string"),
            "passed": datasets.Value("bool"),
            "teacher": datasets.Value("string"),
            "model": datasets.Value("string"),
            "sample_index": datasets.Value("int32"),
            "verifiers": VERIFIERS,
            "finish_reason": datasets.Value("string"),
            "prompt_tokens": datasets.Value("int32"),
            "response_tokens": datasets.Value("int32"),
            **_DIFFICULTY,
            "weight": datasets.Value("float64"),
        }
    )
    return datasets.Features(cols)


def pair_features(reasoning_column: bool = True) -> datasets.Features:
    """Schema of ``redi_pairs`` (TRL's conversational preference format plus provenance).

    Args:
        reasoning_column: Whether each side's reasoning also has its own column.

    Returns:
        The features, in column order.
    """
    cols: dict[str, Any] = {
        "id": datasets.Value("string"),
        "problem_id": datasets.Value("string"),
        "domain": datasets.Value("string"),
        "source": datasets.Value("string"),
        "prompt": MESSAGES,
        "chosen": MESSAGES,
        "rejected": MESSAGES,
    }
    if reasoning_column:
        cols["chosen_reasoning"] = datasets.Value("string")
        cols["rejected_reasoning"] = datasets.Value("string")
    for side in ("chosen", "rejected"):
        cols[f"{side}_sample_id"] = datasets.Value("string")
        cols[f"{side}_sample_index"] = datasets.Value("int32")
        cols[f"{side}_teacher"] = datasets.Value("string")
        cols[f"{side}_model"] = datasets.Value("string")
    cols.update(
        {
            "reference": datasets.Value("string"),
            "verifiers": VERIFIERS,
            "pair_policy": datasets.Value("string"),
            "prompt_tokens": datasets.Value("int32"),
            "chosen_tokens": datasets.Value("int32"),
            "rejected_tokens": datasets.Value("int32"),
            **_DIFFICULTY,
        }
    )
    return datasets.Features(cols)


SFT_FEATURES = sft_features()
"""SFT schema with the default config (reasoning column kept)."""
PAIR_FEATURES = pair_features()
"""Pair schema with the default config (reasoning columns kept)."""


def to_dataset(rows: list[dict[str, Any]], features: datasets.Features) -> datasets.Dataset:
    """``Dataset.from_list`` that also works for zero rows (keeping the schema)."""
    if not rows:
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    try:  # Arrow builds the table in C; ``from_list`` encodes row by row (most of emit's time)
        table = pa.Table.from_pylist(rows, schema=features.arrow_schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # values that need datasets' own encoding
        return datasets.Dataset.from_list(rows, features=features)
    info = datasets.DatasetInfo(features=features)
    return datasets.Dataset(table, info=info, fingerprint=table_fingerprint(table))


def table_fingerprint(table: pa.Table) -> str:
    """A content hash of ``table`` (its Arrow IPC bytes, schema and features included).

    What ``datasets`` would compute by pickling the table through its hasher, which was
    a quarter of emit's time (issue 19); this reads the same bytes once, in C.
    """
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.blake2b(sink.getvalue(), digest_size=8).hexdigest()


def assistant_text(sample: Sample, reasoning_in_content: bool = True) -> str:
    """The assistant turn's text.

    Args:
        sample: A generated sample.
        reasoning_in_content: Put the reasoning inside ``<think>...</think>`` first.

    Returns:
        The text of the assistant message.

    >>> s = Sample("s", "p", "math", [], "1", "local", "m", 0, reasoning="1 = 1", content="1")
    >>> assistant_text(s)
    '<think>\\n1 = 1\\n</think>\\n\\n1'
    >>> assistant_text(s, reasoning_in_content=False)
    '1'
    """
    return render_response(sample.reasoning if reasoning_in_content else None, sample.content)


def assistant_turn(sample: Sample, reasoning_in_content: bool = True) -> list[dict[str, str]]:
    """The sample's answer as a one-message list (a pair side, or the end of ``messages``)."""
    return [{"role": "assistant", "content": assistant_text(sample, reasoning_in_content)}]


def verifier_list(samples: Iterable[Sample]) -> list[dict[str, str]]:
    """Distinct ``(verifier, version)`` of the samples' verdicts, in first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for sample in samples:
        for verdict in sample.verdicts:
            seen.setdefault((verdict.verifier, verdict.verifier_version), None)
    return [{"name": name, "version": version} for name, version in seen]


def check_format(column_names: Sequence[str], kind: str) -> None:
    """Fail unless the columns hold exactly the TRL keys of ``kind``.

    Args:
        column_names: The dataset's columns.
        kind: A key of :data:`FORMATS`.

    Raises:
        ValueError: A TRL key is missing, or another TRL key would change the format.

    >>> check_format(["id", "messages"], "sft")
    >>> check_format(["messages", "completion"], "sft")
    Traceback (most recent call last):
    ...
    ValueError: sft output has TRL keys ['completion', 'messages'], needs ['messages']
    """
    found = TRL_KEYS.intersection(column_names)
    needed = FORMATS[kind].trl_keys
    if found != needed:
        raise ValueError(f"{kind} output has TRL keys {sorted(found)}, needs {sorted(needed)}")


Builder = Callable[..., "tuple[datasets.Dataset, dict[str, Any]]"]
"""``build(samples, cfg, seed, counter) -> (dataset, build stats)``."""


@dataclass(frozen=True)
class OutputSpec:
    """Declaration of one output dataset: everything emit, the card and the summary need.

    An output module builds its spec and passes it to :func:`register_output`;
    ``emit`` builds every declared output, in declaration order.
    """

    name: str
    """Folder and config name (``outputs/<name>``), and its key in the summary."""
    kind: str
    """Its format, a key of :data:`FORMATS` (TRL keys, card table, tags)."""
    description: str
    """One line for the card."""
    build: Builder
    """Rows from the samples that reached the outputs (pure: no files)."""
    features: Callable[[bool], datasets.Features]
    """Its schema, given ``output.reasoning_column``."""
    summary_label: str = ""
    """Its line in the terminal summary (default: the name)."""
    summary_extra: Callable[[dict[str, Any], int], dict[str, Any]] | None = None
    """More summary entries from the summary so far and this output's row count."""
    summary_extra_labels: tuple[tuple[str, str], ...] = ()
    """(label, key) terminal lines for those entries."""
    when: Callable[[Any], bool] | None = None
    """Whether this run builds it, from the ``output`` config (None: always)."""


OUTPUTS: dict[str, OutputSpec] = {}
"""Every declared output, in declaration order (filled by :func:`register_output`)."""


def register_output(spec: OutputSpec) -> OutputSpec:
    """Declare an output; a second one of the same name is refused."""
    if spec.kind not in FORMATS:
        raise ValueError(f"output {spec.name!r}: unknown kind {spec.kind!r}; use {list(FORMATS)}")
    return declare(OUTPUTS, "output", spec)
