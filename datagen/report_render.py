"""Draw the run report: matplotlib plots embedded as base64 PNG, HTML and markdown.

The HTML file stands alone: styles inline, plots as ``data:`` URIs, no script and no
link to fetch, so it opens the same offline. Every piece of run text (prompts, traces,
config values) goes through :func:`html.escape`; a trace's ``<think>`` block is folded
into a ``<details>`` element. The markdown report has the same tables, for terminals
and code review.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported

import matplotlib.pyplot as plt
import yaml

THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)
RATE_COLUMNS = ("group", "positive", "negative", "unverifiable", "pass_rate")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1f2328;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;padding:3px 9px}
th{background:#f6f8fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.msg{border:1px solid #d0d7de;border-radius:6px;margin:.4em 0;padding:.4em .7em}
.role{font-weight:600;color:#57606a;font-size:.85em;text-transform:uppercase}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;font-size:.9em}
details{background:#f6f8fa;border-radius:4px;padding:.2em .5em;margin:.3em 0}
summary{cursor:pointer;color:#57606a}img{max-width:100%}.muted{color:#57606a}
"""


def plot_png(fig: Any) -> str:
    """The figure as base64 PNG (and closed, so long runs do not pile up figures)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def funnel_plot(funnel: Sequence[dict[str, Any]]) -> str:
    rows = [r for r in funnel if ":" not in r["key"] or r["key"].startswith("emitted:")]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 0.8))
    labels = [r["step"] for r in rows][::-1]
    counts = [r["count"] for r in rows][::-1]
    bars = ax.barh(labels, counts, color="#4c72b0")
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlabel("rows")
    ax.set_title("Funnel")
    ax.spines[["top", "right"]].set_visible(False)
    return plot_png(fig)


def pass_rate_plot(name: str, rows: Sequence[dict[str, Any]]) -> str:
    graded = [r for r in rows if r["pass_rate"] is not None]
    fig, ax = plt.subplots(figsize=(5, 0.35 * max(len(graded), 1) + 0.9))
    labels = [_short(r["group"]) for r in graded][::-1]
    bars = ax.barh(labels, [r["pass_rate"] for r in graded][::-1], color="#55a868")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("pass rate (positives / graded)")
    ax.set_title(f"Pass rate by {name}")
    ax.spines[["top", "right"]].set_visible(False)
    return plot_png(fig)


def length_plot(lengths: dict[str, list[int]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3))
    values = [v for v in lengths.values() if v]
    top = max((max(v) for v in values), default=1)
    bins = [top * i / 20 for i in range(21)] if top else 20
    for (label, data), color in zip(lengths.items(), ("#55a868", "#c44e52"), strict=False):
        if data:
            ax.hist(data, bins=bins, alpha=0.6, label=f"{label} (n={len(data)})", color=color)
    ax.set_xlabel("response tokens")
    ax.set_ylabel("rows")
    ax.set_title("Response length")
    if values:
        ax.legend()
    ax.spines[["top", "right"]].set_visible(False)
    return plot_png(fig)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_fmt(c)}</td>'
            if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{html.escape(_fmt(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def render_text(text: str) -> str:
    """Escaped message text; each ``<think>`` block folded into ``<details>``."""
    parts, last = [], 0
    for match in THINK.finditer(text):
        if match.start() > last:
            parts.append(f"<pre>{html.escape(text[last : match.start()].strip())}</pre>")
        words = len(match.group(1).split())
        parts.append(
            f"<details><summary>reasoning ({words} words)</summary>"
            f"<pre>{html.escape(match.group(1).strip())}</pre></details>"
        )
        last = match.end()
    if last < len(text) and text[last:].strip():
        parts.append(f"<pre>{html.escape(text[last:].strip())}</pre>")
    return "".join(parts)


def _messages_html(messages: Sequence[dict[str, str]]) -> str:
    return "".join(
        f'<div class="msg"><div class="role">{html.escape(m["role"])}</div>'
        f"{render_text(m['content'])}</div>"
        for m in messages
    )


def _examples_html(ex: dict[str, Any]) -> str:
    out = []
    for key, title in (("positive", "A positive (sft_positive)"), ("negative", "A negative")):
        if key in ex:
            out.append(f"<h3>{title}</h3>{_messages_html(ex[key])}")
    if "pair" in ex:
        pair = ex["pair"]
        out.append(
            "<h3>A pair (redi_pairs)</h3>"
            f"{_messages_html(pair['prompt'])}"
            f"<h4>chosen</h4>{_messages_html(pair['chosen'])}"
            f"<h4>rejected</h4>{_messages_html(pair['rejected'])}"
        )
    return "".join(out) or '<p class="muted">No rows were emitted.</p>'


def _cost_rows(cost: dict[str, Any]) -> list[list[Any]]:
    return [
        [label, v["samples"], v["tokens"], v["completion_tokens"], v["cost_usd"]]
        for label, v in cost.items()
    ]


COST_HEADER = ("", "samples", "tokens", "completion tokens", "cost (USD)")


def _duplicate_rows(dedup: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for ex in dedup.get("examples", []):
        rows.append([ex["kept"]["id"], "kept", "", ex["kept"]["prompt"]])
        rows += [[m["id"], m["method"], m.get("score"), m["prompt"]] for m in ex["members"]]
    return rows


def _contaminated_rows(contamination: dict[str, Any]) -> list[list[Any]]:
    return [
        [i["id"], i.get("benchmark"), i.get("item"), i.get("method"), i.get("score"), i["prompt"]]
        for i in contamination.get("items", [])
    ]


def render_html(data: dict[str, Any]) -> str:
    """The whole report as one self-contained HTML page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>datagen report: {html.escape(str(data.get('pipeline')))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>datagen run report: {html.escape(str(data.get('pipeline')))}</h1>",
        f"<p class='muted'>{html.escape(data['run_dir'])}"
        + (f" · {data['wall_seconds']} s" if data.get("wall_seconds") is not None else "")
        + "</p>",
        "<h2>Funnel</h2><div class='grid'>",
        _html_table(("step", "count"), [[r["step"], r["count"]] for r in data["funnel"]], "funnel"),
        _img(funnel_plot(data["funnel"]), "funnel"),
        "</div><h2>Stages</h2>",
        _html_table(
            ("stage", "in", "kept", "set aside", "seconds"),
            [list(r.values()) for r in data["stages"]],
            "stages",
        ),
        "<h2>Pass rates</h2>",
    ]
    for name, rows in data["pass_rates"].items():
        table_rows = [[r[c] for c in RATE_COLUMNS] for r in rows]
        parts.append(
            f"<h3>By {html.escape(name)}</h3><div class='grid'>"
            + _html_table(RATE_COLUMNS, table_rows, f"rate-{name.replace(' ', '-')}")
            + (_img(pass_rate_plot(name, rows), f"pass rate by {name}") if rows else "")
            + "</div>"
        )
    parts += [
        "<h2>Response lengths</h2>",
        _img(length_plot(data["token_lengths"]), "response length histogram"),
        "<h2>Samples, tokens and cost</h2>",
        _html_table(COST_HEADER, _cost_rows(data["cost"]), "cost"),
        _disagreements_html(data["disagreements"]),
        _dedup_html(data),
        "<h2>Examples</h2>",
        _examples_html(data["examples"]),
        "<h2>Resolved config</h2>",
        f"<details><summary>config.yaml</summary><pre>"
        f"{html.escape(yaml.safe_dump(data['config'], sort_keys=False))}</pre></details>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _disagreements_html(d: dict[str, Any]) -> str:
    head = (
        f"<h2>Verifier disagreements</h2><p>{d['disagreements']} of {d['compared']} samples "
        "judged by two or more verifiers got different verdicts.</p>"
    )
    if not d["examples"]:
        return head
    rows = [
        [e["sample"], e["problem"], ", ".join(f"{k}: {v}" for k, v in e["verdicts"].items())]
        for e in d["examples"]
    ]
    return head + _html_table(("sample", "problem", "verdicts"), rows, "disagreements")


def _dedup_html(data: dict[str, Any]) -> str:
    out = []
    sections = data.get("stage_reports", {})
    if "dedup_report" in sections:
        d = sections["dedup_report"]
        out.append(
            f"<h2>Duplicate clusters</h2><p>{d['duplicates']} duplicates in {d['clusters']} "
            "clusters; the largest are shown.</p>"
        )
        out.append(_html_table(("id", "method", "score", "prompt"), _duplicate_rows(d), "dups"))
    if "contamination_report" in sections:
        c = sections["contamination_report"]
        out.append(f"<h2>Contaminated items</h2><p>{c['contaminated']} prompts set aside.</p>")
        header = ("id", "benchmark", "item", "method", "score", "prompt")
        out.append(_html_table(header, _contaminated_rows(c), "contaminated"))
    return "".join(out)


def _md_cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(data: dict[str, Any]) -> str:
    """The report's tables as markdown (plots and examples are in report.html)."""
    parts = [
        f"# datagen run report: {data.get('pipeline')}\n",
        f"{data['run_dir']}; plots and example traces: report.html\n",
        "## Funnel\n",
        _md_table(("step", "count"), [[r["step"], r["count"]] for r in data["funnel"]]),
        "## Stages\n",
        _md_table(
            ("stage", "in", "kept", "set aside", "seconds"),
            [list(r.values()) for r in data["stages"]],
        ),
    ]
    for name, rows in data["pass_rates"].items():
        parts += [
            f"## Pass rate by {name}\n",
            _md_table(RATE_COLUMNS, [[r[c] for c in RATE_COLUMNS] for r in rows]),
        ]
    parts += ["## Samples, tokens and cost\n", _md_table(COST_HEADER, _cost_rows(data["cost"]))]
    d = data["disagreements"]
    parts.append(
        f"## Verifier disagreements\n\n{d['disagreements']} of {d['compared']} samples judged "
        "by two or more verifiers got different verdicts.\n"
    )
    sections = data.get("stage_reports", {})
    if "dedup_report" in sections:
        parts += [
            "## Duplicate clusters\n",
            _md_table(
                ("id", "method", "score", "prompt"), _duplicate_rows(sections["dedup_report"])
            ),
        ]
    if "contamination_report" in sections:
        header = ("id", "benchmark", "item", "method", "score", "prompt")
        parts += [
            "## Contaminated items\n",
            _md_table(header, _contaminated_rows(sections["contamination_report"])),
        ]
    config = yaml.safe_dump(data["config"], sort_keys=False)
    parts += ["## Resolved config\n", f"```yaml\n{config}```\n"]
    return "\n".join(parts)
