"""Dataset cards: YAML metadata the Hub reads, then counts, pass rates, lengths, method, config.

One renderer serves both card kinds: the card of one output folder
(``outputs/<name>/README.md``, one ``default`` config) and the card of the Hub
folder (one config per output). The YAML header is written by
``huggingface_hub.DatasetCardData``, so it is what the Hub parses; secrets in
the resolved config (API keys, tokens) are replaced by ``<redacted>``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
import yaml
from huggingface_hub import DatasetCardData

from datagen.output.builders import BuiltOutput
from datagen.output.difficulty import BUCKETS
from datagen.output.formats import FORMATS
from datagen.output.funnel import FUNNEL_KEYS
from datagen.records import column_values

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


DEFAULT_LICENSE_NAME = "terms-of-sources-and-teacher"
"""``license_name`` for ``license: other`` when ``output.license_name`` is unset."""

LICENSE_FILE = "LICENSE.md"
"""The file ``license_link`` names by default; written beside the card (:func:`license_text`)."""


@dataclass(frozen=True)
class HubFields:
    """Card fields that come from the run rather than from the outputs."""

    language: tuple[str, ...] = ("en",)
    source_datasets: tuple[str, ...] = ()
    """Hub ids of the datasets the prompts came from (empty: not known)."""
    source_note: str = ""
    """Where the prompts came from, in words (a local file, a Hub dataset)."""
    license_name: str | None = None
    license_link: str | None = None
    decontamination: Mapping[str, Any] | None = None
    """``{"benchmarks", "methods", "contaminated", "by_benchmark"}``; None: not run."""
    source_licences: tuple[tuple[str, str], ...] = ()
    """``(source name, its licence)`` for each source, in ``sources`` order."""


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
    pids = column_values(ds, "problem_id") if len(ds) else []
    rate_by_prompt = dict(zip(pids, column_values(ds, "pass_rate"), strict=True)) if pids else {}
    bucket_by_prompt = dict(zip(pids, column_values(ds, "difficulty"), strict=True)) if pids else {}
    rates = [r for r in rate_by_prompt.values() if r is not None]
    buckets = Counter(bucket_by_prompt.values())
    return {
        "rows": len(ds),
        "prompts": len(rate_by_prompt),
        "by_domain": dict(sorted(Counter(column_values(ds, "domain")).items())) if len(ds) else {},
        "mean_pass_rate": round(statistics.fmean(rates), 4) if rates else None,
        "prompts_by_difficulty": {b: buckets[b] for b in BUCKETS if buckets[b]},
        "tokens": {
            col: length_stats(column_values(ds, col)) for col in FORMATS[out.kind].length_columns
        }
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
    hub: HubFields | None = None,
) -> DatasetCardData:
    """The YAML header: one config per output (the first is the default), license, sizes.

    ``hub`` adds the fields the Hub's dataset card template asks for: ``language``,
    ``source_datasets``, and ``license_name``/``license_link`` when the licence is
    ``other`` (the Hub shows those instead of a known licence).
    """
    hub = hub or HubFields()
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
    extra: dict[str, Any] = {}
    if license == "other":
        extra["license_name"] = hub.license_name or DEFAULT_LICENSE_NAME
        extra["license_link"] = hub.license_link or LICENSE_FILE
    return DatasetCardData(
        license=license,
        language=list(hub.language) or None,
        source_datasets=list(hub.source_datasets) or None,
        task_categories=["text-generation"],
        size_categories=[size_category(largest)],
        pretty_name=pretty_name,
        tags=tags,
        configs=configs,
        **extra,
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
    hub: HubFields | None = None,
    local: bool = False,
    funnel: Mapping[str, Any] | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    """README.md text for a folder holding ``outputs``.

    Args:
        outputs: The datasets the folder holds, default config first.
        config: The full resolved run config (plain dict); secrets are redacted.
        data_files: Output name -> data file path or glob, relative to the folder.
        title: The card's heading.
        license: The ``license`` tag.
        pretty_name: The Hub title (None: none).
        load_path: The folder or Hub repo the usage lines load from.
        tokens_counted_by: Which tokenizer counted the length statistics.
        not_included: Outputs left out of the folder because they have no rows.
        overall: Counts over every prompt of the run
            (:func:`~datagen.output.difficulty.pass_rate_summary`).
        method_notes: Paragraphs the run's stages add to the Generation section
            (``Stage.card_note``).
        hub: Language, sources, licence details and the decontamination result.
        local: ``load_path`` is a local folder: the usage lines read its files directly
            (see :func:`load_line`); else it is a Hub repo id.
        funnel: The run's funnel by source and by domain (:mod:`datagen.output.funnel`).
        extra_sections: Markdown sections placed before the method (teachers compared,
            the student, length selection: :mod:`datagen.output.curation_card`).

    Returns:
        The card: YAML front matter, then markdown.
    """
    hub = hub or HubFields()
    meta = card_metadata(outputs, data_files, license, pretty_name, hub)
    files = data_files if local else None
    head = f"---\n{meta.to_yaml()}\n---\n"
    parts = [head, f"# {title}\n", _overview(outputs, load_path, files)]
    if not_included:
        parts.append(f"Not included (no rows): {', '.join(not_included)}.\n")
    parts.append(_usage_section(outputs, load_path, files))
    if overall:
        parts.append(_overall_section(overall))
    if funnel:
        parts.append(_funnel_section(funnel))
    parts += [_output_section(o, tokens_counted_by, len(outputs) > 1) for o in outputs]
    parts += [section for section in extra_sections if section]
    parts += [_method_section(outputs, config, method_notes), _sources_section(hub, license)]
    parts.append(_config_section(config))
    return "\n".join(parts)


def load_line(load_path: str, name: str, data_file: str | None = None) -> str:
    """The one line of Python that loads output ``name``.

    For a Hub repo, its config ``name``. For a local folder (``data_file`` given), its
    Parquet file(s) directly: ``datasets`` 5.2 caches a local folder's config under
    the folder's and config's names only, so ``load_dataset(folder, name)`` returns
    the first data it ever read there, even after a rerun rewrote the files (or from
    another run's folder of the same name); ``data_files`` is keyed on the files.

    >>> load_line("someone/math-redi", "redi_pairs")
    'ds = load_dataset("someone/math-redi", "redi_pairs", split="train")'
    >>> load_line("runs/math/outputs/redi_pairs", "redi_pairs", "redi_pairs.parquet")
    'ds = load_dataset("parquet", data_files="runs/math/outputs/redi_pairs/redi_pairs.parquet", split="train")'
    """  # noqa: E501
    if data_file is not None:
        files = json.dumps(f"{load_path.rstrip('/')}/{data_file}")
        return f'ds = load_dataset("parquet", data_files={files}, split="train")'
    return f'ds = load_dataset({json.dumps(load_path)}, {json.dumps(name)}, split="train")'


TRL_SNIPPETS = {
    "sft": (
        "from trl import SFTConfig, SFTTrainer\n\n"
        'trainer = SFTTrainer(model="<student model>", args=SFTConfig(output_dir="sft"), '
        "train_dataset=ds)\ntrainer.train()"
    ),
    "preference": (
        "from trl import DPOConfig, DPOTrainer\n\n"
        'trainer = DPOTrainer(model="<student model>", args=DPOConfig(output_dir="dpo"), '
        "train_dataset=ds)\ntrainer.train()"
    ),
}
"""How to train on each output kind with TRL (its conversational formats, no mapping)."""


def _usage_section(
    outputs: Sequence[BuiltOutput], load_path: str, data_files: Mapping[str, str] | None
) -> str:
    loads = "\n".join(_load(o, load_path, data_files) for o in outputs)
    text = f"## Usage\n\n```python\nfrom datasets import load_dataset\n\n{loads}\n```\n"
    for kind in dict.fromkeys(o.kind for o in outputs):
        names = ", ".join(f"`{o.name}`" for o in outputs if o.kind == kind)
        text += f"\nTrain on {names} with TRL:\n\n```python\n{TRL_SNIPPETS[kind]}\n```\n"
    return text


def _load(out: BuiltOutput, load_path: str, data_files: Mapping[str, str] | None) -> str:
    if data_files is None:
        return load_line(load_path, out.name)
    return load_line(load_path, out.name, data_files[out.name])


def example_row(out: BuiltOutput, max_chars: int = 300) -> str:
    """The output's first row as JSON, long strings cut to ``max_chars`` (empty: no rows)."""
    if not len(out.dataset):
        return ""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_chars:
            return value[:max_chars] + f"... [+{len(value) - max_chars} chars]"
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return json.dumps(cut(out.dataset[0]), indent=2, ensure_ascii=False)


def license_text(hub: HubFields, config: Mapping[str, Any]) -> str:
    """``LICENSE.md`` for ``license: other``: whose terms the rows are under, and why."""
    teacher = config.get("teacher", {})
    sources = ", ".join(hub.source_datasets) or hub.source_note or "the source problems"
    return (
        "# Terms of this dataset\n\n"
        "datagen did not choose a licence for these rows (`output.license: other`). Each row "
        "holds a prompt from the source data and text written by a teacher model, so the "
        f"terms of both apply:\n\n- prompts: {sources};\n- responses: the terms of use of "
        f"the teacher `{teacher.get('name')}` / `{teacher.get('model')}`.\n\n"
        "Check both before you redistribute or train on this data, then set "
        "`output.license` (an SPDX id the Hub knows) or `output.license_name` and "
        "`output.license_link`.\n"
    )


def _funnel_section(funnel: Mapping[str, Any]) -> str:
    """Where each source's and each domain's rows went, from read to emitted."""
    text = "## Funnel by source and domain\n\n"
    for title, key in (("source", "by_source"), ("domain", "by_domain")):
        rows = [(name, *(counts[k] for k in FUNNEL_KEYS)) for name, counts in funnel[key].items()]
        text += f"By {title}:\n\n" + _table((title, *FUNNEL_KEYS), rows) + "\n"
    return text


def _sources_section(hub: HubFields, license: str) -> str:
    text = "## Sources and licence\n\n"
    if hub.source_note:
        text += f"Prompts: {hub.source_note}.\n\n"
    if hub.source_licences:
        text += (
            "Licences of the sources:\n\n"
            + _table(("source", "licence"), list(hub.source_licences))
            + "\n"
        )
    if license == "other":
        link = hub.license_link or LICENSE_FILE
        text += f"Licence: `other` ({hub.license_name or DEFAULT_LICENSE_NAME}; see {link}).\n\n"
    else:
        text += f"Licence: `{license}`.\n\n"
    dec = hub.decontamination
    if dec is None:
        text += "Decontamination: not run (the pipeline has no decontaminate stage).\n"
    else:
        found = dec["contaminated"]
        by = ", ".join(f"{k}: {v}" for k, v in dec["by_benchmark"].items())
        per_domain = dec.get("by_domain") or {}
        against = (
            "; ".join(
                f"{d} prompts against {', '.join(b) or 'none'}" for d, b in per_domain.items()
            )
            if len(per_domain) > 1
            else f"prompts were checked against {', '.join(dec['benchmarks'])}"
        )
        text += (
            f"Decontamination: {against} "
            f"({', '.join(dec['methods'])}); {found} matched and were removed before "
            f"generation{f' ({by})' if by else ''}.\n"
        )
    return text


def _overview(
    outputs: Sequence[BuiltOutput], load_path: str, data_files: Mapping[str, str] | None
) -> str:
    rows = "\n".join(
        f"| `{o.name}` | {FORMATS[o.kind].card_name} | {len(o.dataset)} | "
        f"`{_load(o, load_path, data_files).removeprefix('ds = ')}` |"
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
    example = example_row(out)
    if example:
        text += f"\n### Example row\n\n```json\n{example}\n```\n"
    return text


def verifier_versions(ds: Any) -> set[str]:
    """``name@version`` of every verifier in ``ds``'s ``verifiers`` column, computed in Arrow
    (a million rows' lists never become Python objects)."""
    if not len(ds):
        return set()
    flat = pc.list_flatten(ds.with_format("arrow")["verifiers"])
    joined = pc.binary_join_element_wise(
        pc.struct_field(flat, "name"), pc.struct_field(flat, "version"), "@"
    )
    return {v for v in pc.unique(joined).to_pylist() if v is not None}


def _method_section(
    outputs: Sequence[BuiltOutput], config: dict[str, Any], method_notes: Sequence[str] = ()
) -> str:
    versions = sorted({v for o in outputs for v in verifier_versions(o.dataset)})
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
