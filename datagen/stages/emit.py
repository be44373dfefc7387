"""Stage ``emit``: write SFT positives, SFT negatives and REDI pairs with cards; publish.

Adapter only: the builders in :mod:`datagen.output` do the work. The runner
calls :func:`emit_dataset` over the stage's memory-mapped input, which builds
prompt by prompt (pairs join samples of one prompt) and writes as it goes; the
rows pass through unchanged, so the stage's own dataset is the final, filtered
sample set.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc

from datagen.config import OutputConfig
from datagen.output.builders import (
    BuiltOutput,
    build_outputs,
    build_outputs_by_prompt,
    prompt_chunks,
)
from datagen.output.card import (
    LICENSE_FILE,
    HubFields,
    license_text,
    output_stats,
    render_card,
)
from datagen.output.compare import teacher_table
from datagen.output.curation_card import curation_sections, student_report_of
from datagen.output.difficulty import PassRateTally, pass_rate_summary
from datagen.output.funnel import source_funnel
from datagen.output.publish import (
    HUB_FOLDER,
    hub_data_files,
    hub_token,
    push_folder,
    write_hub_folder,
    write_output,
    write_shards,
)
from datagen.output.student import teacher_samples
from datagen.output.subsets import domain_data_files, write_domain_files
from datagen.output.tokens import TokenCounter
from datagen.records import ROLE_STUDENT, Sample, arrow_columns, arrow_rows, column_values
from datagen.safetext import redact_config
from datagen.sources import resolve_path, uses_datasets
from datagen.stages.base import STAGES, Stage, StageContext, register_stage
from datagen.views import open_part

logger = logging.getLogger(__name__)

CONSUMES = ("passed", "truncated", "finish_reason", "verdicts", "reasoning", "content")
FUNNEL_COLUMNS = ("source", "domain", "passed", "role")
PRODUCES = ()  # rows pass through; the outputs are files under RUN_DIR/<output.dir>


def emit(batch: list[Sample], ctx: StageContext, *, cfg: dict[str, Any]) -> list[Sample]:
    """Build the output datasets from ``batch``, write them under RUN_DIR/<output.dir>, publish."""
    ocfg: OutputConfig = cfg["output"]
    token = hub_token(ocfg.token_env) if ocfg.push_to_hub and not ocfg.dry_run else None
    counter = _counter(ctx, ocfg)
    student = ctx.config.student.enabled
    outputs = build_outputs(batch, ocfg, cfg["run.seed"], counter, student=student)
    overall = pass_rate_summary(teacher_samples(batch), ocfg.difficulty_edges)
    table = teacher_table(batch, counter)
    sections = curation_sections(table, student_report_of(batch, ctx), ocfg, outputs)
    write_outputs(
        outputs, overall, teacher_samples(batch), ctx, ocfg, counter, token, table, sections
    )
    return batch


def emit_dataset(data: datasets.Dataset, ctx: StageContext, *, cfg: dict[str, Any]) -> None:
    """``emit`` as the runner calls it: over the stage's memory-mapped input, prompt by prompt.

    Output rows go to Arrow files as each chunk of prompts is built, so memory holds
    one chunk, not the run; the outputs are those :func:`emit` builds from every row.
    """
    ocfg: OutputConfig = cfg["output"]
    token = hub_token(ocfg.token_env) if ocfg.push_to_hub and not ocfg.dry_run else None
    counter = _counter(ctx, ocfg)
    work = Path(ctx.run_dir) / f".{Path(ocfg.dir).name}.build"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        tally = PassRateTally(ocfg.difficulty_edges)
        student = ctx.config.student.enabled
        outputs = build_outputs_by_prompt(
            prompt_chunks(data), ocfg, cfg["run.seed"], counter, work, tally, student
        )
        table = teacher_table(table_samples(data, counter), counter)  # one pass
        roles = (
            pc.fill_null(arrow_columns(data, ["role"]).column("role"), "").to_numpy(
                zero_copy_only=False
            )
            if "role" in data.column_names
            else None
        )
        is_student = roles == ROLE_STUDENT if roles is not None else None
        students = (
            [
                Sample.from_row(r)
                for r in arrow_rows(data.select(np.flatnonzero(is_student), keep_in_memory=True))
            ]
            if student and is_student is not None
            else []
        )
        sections = curation_sections(table, student_report_of(students, ctx), ocfg, outputs)
        final = data.select_columns([c for c in FUNNEL_COLUMNS if c in data.column_names])
        if is_student is not None and is_student.any():  # the funnel counts the teachers'
            final = final.select(np.flatnonzero(~is_student), keep_in_memory=True)
        write_outputs(outputs, tally.summary(), final, ctx, ocfg, counter, token, table, sections)
    finally:
        shutil.rmtree(work, ignore_errors=True)


TABLE_COLUMNS = (
    *("id", "problem_id", "domain", "reference", "teacher", "model", "sample_index"),
    *("passed", "cost", "completion_tokens", "role"),
)
"""What :func:`teacher_table` reads of a sample when no tokenizer counts its text
(the record's required fields, then its own)."""


def table_samples(data: datasets.Dataset, counter: TokenCounter) -> Iterator[Sample]:
    """``data``'s samples for :func:`teacher_table`, streamed a thousand rows at a time.

    Without a tokenizer the table reads the teacher's token counts, so only
    :data:`TABLE_COLUMNS` are read (the text, read row by row, was most of emit's time),
    and each row comes as a plain namespace of those attributes, not a record.
    """
    if counter.tokenizer is None:  # plain rows: the table reads only these attributes
        data = data.select_columns([c for c in TABLE_COLUMNS if c in data.column_names])
        defaults = {"role": "teacher", "cost": 0.0, "completion_tokens": 0, "passed": None}
        for table in data.with_format("arrow").iter(batch_size=8192):
            for row in table.to_pylist():
                yield SimpleNamespace(**(defaults | row))  # type: ignore[misc]
        return
    for table in data.with_format("arrow").iter(batch_size=1024):
        for row in table.to_pylist():
            yield Sample.from_row({"messages": [], **row})


def _counter(ctx: StageContext, ocfg: OutputConfig) -> TokenCounter:
    return ctx.resource(
        f"token_counter:{ocfg.tokenizer}", lambda: TokenCounter.from_spec(ocfg.tokenizer)
    )


def write_outputs(
    outputs: dict[str, BuiltOutput],
    overall: dict[str, Any],
    final: list[Sample] | datasets.Dataset,
    ctx: StageContext,
    ocfg: OutputConfig,
    counter: TokenCounter,
    token: str | None,
    table: dict[str, Any] | None = None,
    sections: list[str] | None = None,
) -> None:
    """Write every output's folder with its card (and the Hub folder), swap them in, push.

    ``final`` is the samples that reached emit (rows or a dataset), for the funnel.
    ``table`` is the per-teacher table (:func:`~datagen.output.compare.teacher_table`) and
    ``sections`` the curation sections of the cards (teachers, student, length selection).
    """
    config = redact_config(ctx.config.as_dict())  # cards are published: no URL credentials
    out_dir = Path(ctx.run_dir) / ocfg.dir
    final_dir, out_dir = out_dir, staging_dir(out_dir)  # built aside, swapped in whole
    notes = [
        note(config)
        for name in ctx.config.pipeline.stages
        if name in STAGES and (note := STAGES[name].card_note) is not None
    ]
    hub = hub_fields(ctx)
    funnel = run_funnel(ctx, final, {n: o.dataset for n, o in outputs.items()})
    ctx.stats.setdefault("emit", {})["funnel"] = funnel
    card_args = {
        "license": ocfg.license,
        "tokens_counted_by": counter.name,
        "overall": overall,
        "method_notes": notes,
        "hub": hub,
        "funnel": funnel,
        "extra_sections": sections or [],
    }
    for name, out in outputs.items():
        folder = out_dir / name
        files = {name: f"{name}.parquet"}  # named like the output, so load_dataset(folder, name)
        files |= domain_data_files(out.dataset)  # and load_dataset(folder, "math")
        card = render_card(
            [out],
            config,
            files,
            title=name,
            load_path=display_path(final_dir / name),  # where it will be
            local=True,
            **card_args,
        )
        write_output(out, folder, card, save_arrow=ocfg.save_arrow)
        write_domain_files(out.dataset, folder)
        write_license(folder, hub, ocfg.license, config)
        stats = ctx.stats.setdefault("emit", {})
        stats["all_prompts"] = overall
        stats["teachers"] = table
        stats[name] = len(out.dataset)
        stats[f"{name}_stats"] = output_stats(out) | {"built": out.stats}

    if ocfg.dry_run or ocfg.push_to_hub:
        # A config with no rows cannot be loaded (datasets: "corresponds to no data").
        listed = [o for o in outputs.values() if len(o.dataset)]
        empty = [name for name, o in outputs.items() if not len(o.dataset)]
        if not listed:
            if token is not None:
                raise ValueError("output.push_to_hub: every output is empty, nothing to upload")
            logger.warning("output.dry_run: every output is empty, no hub folder written")
            swap_in(out_dir, final_dir)
            return
        title = ocfg.pretty_name or ocfg.repo_id or f"datagen {ctx.config.pipeline.name}"
        card = render_card(
            listed,
            config,
            hub_data_files(listed) | hub_domain_files(listed),
            title=title,
            pretty_name=title,
            load_path=ocfg.repo_id or display_path(final_dir / HUB_FOLDER),
            local=ocfg.repo_id is None,
            not_included=empty,
            **card_args,
        )
        folder = write_hub_folder(listed, out_dir / HUB_FOLDER, card)
        write_hub_domains(listed, folder)
        write_license(folder, hub, ocfg.license, config)
        ctx.count("emit", "hub_folder_written")
        swap_in(out_dir, final_dir)
        if token is not None and ocfg.repo_id is not None:
            push_folder(
                final_dir / HUB_FOLDER,
                ocfg.repo_id,
                private=ocfg.private,
                token=token,
                commit_message=f"datagen: {ctx.config.pipeline.name} outputs",
            )
            ctx.count("emit", "pushed_to_hub")
        return
    swap_in(out_dir, final_dir)


def hub_domain_files(listed: list[Any]) -> dict[str, str]:
    """``<output>_<domain>`` configs of the Hub folder, for outputs of two or more domains."""
    return {
        f"{o.name}_{domain}": f"{o.name}_{domain}/train-*.parquet"
        for o in listed
        for domain in domain_data_files(o.dataset)
    }


def write_hub_domains(listed: list[Any], folder: Path) -> None:
    """Each ``<output>_<domain>`` config's shards (that domain's rows of the output)."""
    for o in listed:
        domains = column_values(o.dataset, "domain") if domain_data_files(o.dataset) else []
        for domain in dict.fromkeys(sorted(domains)):
            rows = [i for i, d in enumerate(domains) if d == domain]
            write_shards(o.dataset.select(rows), folder / f"{o.name}_{domain}")


def staging_dir(out_dir: Path) -> Path:
    """An empty ``.NAME.incoming`` folder beside ``out_dir`` (a killed emit's leftovers removed)."""
    staging = out_dir.with_name(f".{out_dir.name}.incoming")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def swap_in(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``staging`` with two renames: readers see old or new outputs, whole.

    A kill between the two renames leaves no ``out_dir`` (and ``.NAME.old``): never a
    mix; the next run's emit rebuilds it.
    """
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old.exists():
        shutil.rmtree(old)


def display_path(folder: Path) -> str:
    """``folder`` as the card's ``load_dataset`` line names it: relative to the working
    directory when inside it (where the user ran datagen), else absolute."""
    folder = folder.resolve()
    try:
        return str(folder.relative_to(Path.cwd()))
    except ValueError:
        return str(folder)


def run_funnel(ctx: StageContext, final: Any, outputs: dict[str, Any]) -> dict[str, Any]:
    """The per-source and per-domain funnel, from the stages before ``emit`` and the outputs."""
    stages = list(ctx.config.pipeline.stages)
    upto = stages.index("emit") if "emit" in stages else len(stages)
    dirs = [Path(ctx.run_dir) / "stages" / f"{i:02d}_{n}" for i, n in enumerate(stages[:upto])]
    domains = {s.label: s.domain for s in ctx.config.source_list()}
    dirs = [d for d in dirs if d.exists()]
    return source_funnel(Path(ctx.run_dir), dirs, domains, final, outputs)


def _source_note(source: Any) -> str:
    if resolve_path(source.path) is not None and not uses_datasets(source):
        where = f"the local file `{source.path}`"
    else:
        pinned = (("config", source.config), ("revision", source.revision))
        extra = "".join(f", {k} `{v}`" for k, v in pinned if v)
        where = f"the Hub dataset `{source.path}` (split `{source.split}`{extra})"
    return where if source.name is None else f"`{source.name}`: {where}"


def hub_fields(ctx: StageContext) -> HubFields:
    """The card fields that come from the run: language, sources, licence, decontamination."""
    config = ctx.config
    ocfg: OutputConfig = config.output
    sources = config.source_list()
    named = ocfg.source_datasets
    hub_names = [s.path for s in sources if resolve_path(s.path) is None]
    datasets_ = tuple(named if named is not None else dict.fromkeys(hub_names))
    return HubFields(
        language=tuple(ocfg.language),
        source_datasets=datasets_,
        source_note="; ".join(_source_note(s) for s in sources),
        source_licences=tuple((s.label, s.license or "not stated") for s in sources),
        license_name=ocfg.license_name,
        license_link=ocfg.license_link,
        decontamination=decontamination_result(ctx),
    )


def decontamination_result(ctx: StageContext) -> dict[str, Any] | None:
    """What the run's decontaminate stage found (None: the pipeline has none)."""
    if "decontaminate" not in ctx.config.pipeline.stages:
        return None

    dcfg = ctx.config.decontam
    found = sorted((Path(ctx.run_dir) / "stages").glob("*_decontaminate"))
    by_benchmark: dict[str, int] = {}
    if found and (found[0] / "contaminated").exists():
        for meta in column_values(open_part(found[0] / "contaminated"), "metadata"):
            name = (
                (json.loads(meta) if isinstance(meta, str) else meta or {})
                .get("contamination", {})
                .get("benchmark", "?")
            )
            by_benchmark[name] = by_benchmark.get(name, 0) + 1
    domains = dict.fromkeys(s.domain for s in ctx.config.source_list())
    by_domain = {d: dcfg.for_domain(d) for d in domains}
    return {
        "benchmarks": list(dict.fromkeys(b for names in by_domain.values() for b in names)),
        "by_domain": by_domain,
        "methods": list(dcfg.methods),
        "contaminated": sum(by_benchmark.values()),
        "by_benchmark": dict(sorted(by_benchmark.items())),
    }


def write_license(folder: Path, hub: HubFields, license: str, config: dict[str, Any]) -> None:
    """Write the ``LICENSE.md`` that ``license_link`` names, for ``license: other``."""
    if license == "other" and hub.license_link is None:
        (folder / LICENSE_FILE).write_text(license_text(hub, config), encoding="utf-8")


def teachers_report(stage_dir: Path, config: Any) -> dict[str, Any] | None:
    """The per-teacher table over the samples that reached the outputs (from disk)."""

    if not (stage_dir / "data").exists():
        return None
    rows = open_part(stage_dir / "data")
    counter = TokenCounter.from_spec(config.output.tokenizer)
    return teacher_table(table_samples(rows, counter), counter)  # streamed, one pass


register_stage(
    Stage(
        "emit",
        emit,
        "sample",
        "sample",
        ("output", "run.seed"),
        needs_all_rows=True,
        sink=emit_dataset,
        report=teachers_report,
        report_key="teachers",
    )
)
