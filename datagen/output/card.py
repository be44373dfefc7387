"""Dataset cards: YAML metadata the Hub reads, then counts, pass rates, lengths, method, config.

One renderer serves both card kinds: the card of one output folder
(``outputs/<name>/README.md``, one ``default`` config) and the card of the Hub
folder (one config per output). The YAML header is written by
``huggingface_hub.DatasetCardData``, so it is what the Hub parses; secrets in
the resolved config (API keys, tokens) are replaced by ``<redacted>``.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from huggingface_hub import DatasetCardData

from datagen.output.builders import BuiltOutput
from datagen.output.difficulty import BUCKETS
from datagen.output.formats import FORMATS

SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
"""Upper bounds and the Hub's ``size_categories`` labels."""

SECRET_KEY = re.compile(r"(^|_)(api_?key|key|secret|password|token|authorization)$", re.I)
"""Config keys whose string values never go on a card."""


def size_category(n: int) -> str:
    """The Hub's size category label for ``n`` rows.

    >>> size_category(999), size_category(1000), size_category(2_000_000)
    ('n<1K', '1K<n<10K', '1M<n<10M')
    """
    for limit, label in SIZE_CATEGORIES:
        if n < limit:
            return label
    return "n>1B"


def redact(config: Any) -> Any:
    """A copy of a plain config with secret-looking string values replaced.

    >>> redact({"teacher": {"api_key": "sk-1", "max_tokens": 5}, "output": {"token_env": "X"}})
    {'teacher': {'api_key': '<redacted>', 'max_tokens': 5}, 'output': {'token_env': 'X'}}
    """
    if isinstance(config, Mapping):
        return {
            k: "<redacted>" if isinstance(v, str) and v and SECRET_KEY.search(str(k)) else redact(v)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [redact(v) for v in config]
    return config


def length_stats(values: Sequence[int]) -> dict[str, float | int | None]:
    """Mean, median, 90th percentile and max of token counts (None when empty)."""
    if not values:
        return {"mean": None, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p90": p90,
        "max": ordered[-1],
    }


def output_stats(out: BuiltOutput) -> dict[str, Any]:
    """Counts, pass rate, difficulty and length statistics of one output dataset."""
    ds = out.dataset
    rate_by_prompt = dict(zip(ds["problem_id"], ds["pass_rate"], strict=True)) if len(ds) else {}
    bucket_by_prompt = dict(zip(ds["problem_id"], ds["difficulty"], strict=True)) if len(ds) else {}
    rates = [r for r in rate_by_prompt.values() if r is not None]
    buckets = Counter(bucket_by_prompt.values())
    return {
        "rows": len(ds),
        "prompts": len(rate_by_prompt),
        "by_domain": dict(sorted(Counter(ds["domain"]).items())) if len(ds) else {},
        "mean_pass_rate": round(statistics.fmean(rates), 4) if rates else None,
        "prompts_by_difficulty": {b: buckets[b] for b in BUCKETS if buckets[b]},
        "tokens": {col: length_stats(ds[col]) for col in FORMATS[out.kind].length_columns}
        if len(ds)
        else {},
        "left_out": out.stats.get("left_out", {}),
        **({"subset": out.stats["subset"]} if "subset" in out.stats else {}),
    }


def card_metadata(
    outputs: Sequence[BuiltOutput],
    data_files: Mapping[str, str],
    license: str,
    pretty_name: str | None,
) -> DatasetCardData:
    """The YAML header: one config per output (the first is the default), license, sizes."""
    largest = max((len(o.dataset) for o in outputs), default=0)
    configs = [
        {
            "config_name": name,
            "data_files": [{"split": "train", "path": path}],
            **({"default": True} if i == 0 else {}),
        }
        for i, (name, path) in enumerate(data_files.items())
    ]
    kinds = {o.kind for o in outputs}
    tags = ["datagen", "reasoning-distillation", "synthetic"]
    tags += [tag for kind, fmt in FORMATS.items() if kind in kinds for tag in fmt.tags]
    return DatasetCardData(
        license=license,
        task_categories=["text-generation"],
        size_categories=[size_category(largest)],
        pretty_name=pretty_name,
        tags=tags,
        configs=configs,
    )


def render_card(
    outputs: Sequence[BuiltOutput],
    config: dict[str, Any],
    data_files: Mapping[str, str],
    *,
    title: str,
    license: str = "other",
    pretty_name: str | None = None,
    load_path: str = ".",
    tokens_counted_by: str = "teacher-reported counts",
    not_included: Sequence[str] = (),
    overall: Mapping[str, Any] | None = None,
    method_notes: Sequence[str] = (),
) -> str:
    """README.md text for a folder holding ``outputs``.

    Args:
        outputs: The datasets the folder holds, default config first.
        config: The full resolved run config (plain dict); secrets are redacted.
        data_files: Output name -> data file path or glob, relative to the folder.
        title: The card's heading.
        license: The ``license`` tag.
        pretty_name: The Hub title (None: none).
        load_path: What to pass to ``load_dataset`` in the usage snippet.
        tokens_counted_by: Which tokenizer counted the length statistics.
        not_included: Outputs left out of the folder because they have no rows.
        overall: Counts over every prompt of the run
            (:func:`~datagen.output.difficulty.pass_rate_summary`).
        method_notes: Paragraphs the run's stages add to the Generation section
            (``Stage.card_note``).

    Returns:
        The card: YAML front matter, then markdown.
    """
    meta = card_metadata(outputs, data_files, license, pretty_name)
    parts = [f"---\n{meta.to_yaml()}\n---\n", f"# {title}\n", _overview(outputs, load_path)]
    if not_included:
        parts.append(f"Not included (no rows): {', '.join(not_included)}.\n")
    if overall:
        parts.append(_overall_section(overall))
    parts += [_output_section(o, tokens_counted_by, len(outputs) > 1) for o in outputs]
    parts += [_method_section(outputs, config, method_notes), _config_section(config)]
    return "\n".join(parts)


def _overview(outputs: Sequence[BuiltOutput], load_path: str) -> str:
    rows = "\n".join(
        f"| `{o.name}` | {FORMATS[o.kind].card_name} | {len(o.dataset)} | "
        f"`load_dataset({load_path!r}, {o.name!r})` |"
        for o in outputs
    )
    return (
        "Reasoning-distillation data built by datagen: a teacher model wrote the traces "
        "and a verifier judged every final answer against a reference.\n\n"
        f"| config | format | rows | load |\n|---|---|---|---|\n{rows}\n"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "| " + " | ".join(header) + " |\n|" + "---|" * len(header)
    return head + "".join("\n| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows) + "\n"


def _overall_section(overall: Mapping[str, Any]) -> str:
    return "## All prompts of the run\n\n" + _table(
        ("stat", "value"),
        [
            ("prompts", overall["prompts"]),
            ("samples reaching the outputs", overall["samples"]),
            ("verified correct / incorrect", f"{overall['positives']} / {overall['negatives']}"),
            ("mean pass rate over prompts", overall["mean_pass_rate"]),
            ("prompts by difficulty", overall["prompts_by_difficulty"]),
        ],
    )


def _output_section(out: BuiltOutput, tokens_counted_by: str, heading: bool) -> str:
    st = output_stats(out)
    text = (f"## {out.name}\n\n" if heading else "") + (
        f"{out.description}\n\nRows: **{st['rows']}**. Prompts: {st['prompts']}. "
        f"Columns: {', '.join(out.dataset.column_names)}.\n\n"
    )
    text += "### Statistics\n\n" + _table(
        ("stat", "value"),
        [
            ("rows", st["rows"]),
            ("prompts", st["prompts"]),
            ("rows by domain", st["by_domain"]),
            ("mean pass rate of these prompts", st["mean_pass_rate"]),
            ("samples left out (reason: count)", st["left_out"]),
            *([("subset", st["subset"])] if "subset" in st else []),
        ],
    )
    text += "\n### Prompts by difficulty (pass rate)\n\n" + _table(
        ("difficulty", "prompts"), list(st["prompts_by_difficulty"].items())
    )
    lengths = [(col, *v.values()) for col, v in st["tokens"].items()]
    text += f"\n### Lengths in tokens ({tokens_counted_by})\n\n" + _table(
        ("column", "mean", "median", "p90", "max"), lengths
    )
    return text


def _method_section(
    outputs: Sequence[BuiltOutput], config: dict[str, Any], method_notes: Sequence[str] = ()
) -> str:
    versions = sorted(
        {
            f"{v['name']}@{v['version']}"
            for o in outputs
            for row in o.dataset["verifiers"]
            for v in row
        }
    )
    verifier = redact(config.get("verifier", {}))
    stages = config.get("pipeline", {}).get("stages", [])
    teacher = redact(config.get("teacher", {}))
    text = (
        "## Verification\n\n"
        f"Verifier config: `{verifier}`; versions in this data: {', '.join(versions) or 'none'}. "
        "A sample is a positive only when the verifier returned passed, a negative only when "
        "it returned failed; unverifiable samples (timeouts, unparseable references) are in "
        "no output. Pass rate = positives / graded samples of the prompt, over the samples "
        "kept by the filters.\n\n## Generation\n\n"
        f"Stages: {' -> '.join(stages)}. Teacher: `{teacher.get('name')}`, model "
        f"`{teacher.get('model')}`. Sampling: `{config.get('generation')}`.\n"
    )
    text += "".join(f"\n{note}\n" for note in method_notes)
    return text


def _config_section(config: dict[str, Any]) -> str:
    dumped = yaml.safe_dump(redact(config), sort_keys=False, allow_unicode=True)
    return f"## Resolved config\n\n```yaml\n{dumped}```\n"
