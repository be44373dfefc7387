"""The run report: every funnel number against the datasets on disk, rendered in Chromium.

The run is a small real math run on the replay teacher (``replay_run`` fixture). The
browser is Debian's headless Chromium driven by Selenium (packages ``chromium`` and
``chromium-driver``, see .ci/apt-packages.txt); its console log must stay empty of
errors. A screenshot is saved under pytest's tmp dir, and copied to $DATAGEN_ARTIFACTS
when that is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from datagen.report import parse_markdown_table, reason_category
from datagen.report_render import render_text
from datagen.views import open_part

pytestmark = pytest.mark.slow


def stage(run_dir: Path, name: str, part: str = "data") -> datasets.Dataset:
    [folder] = (run_dir / "stages").glob(f"[0-9][0-9]_{name}")
    return open_part(str(folder / part))


def expected_funnel(run_dir: Path) -> dict[str, int]:
    """The funnel counted here, straight from the files the run wrote."""
    rejects = (run_dir / "rejects.jsonl").read_text().splitlines()
    loaded = len(stage(run_dir, "load"))
    generated = stage(run_dir, "generate"), stage(run_dir, "generate", "set_aside")
    verified = stage(run_dir, "verify")["passed"]
    filtered = stage(run_dir, "filter", "set_aside")["reject_reason"]
    funnel = {
        "rows read": len(rejects) + loaded,
        "malformed (rejects.jsonl)": len(rejects),
        "problems loaded": loaded,
        "contaminated (benchmark leaks)": len(stage(run_dir, "decontaminate", "contaminated")),
        "duplicate prompts": len(stage(run_dir, "dedup", "duplicates")),
        "problems sent to the teacher": len(stage(run_dir, "dedup")),
        "samples generated": len(generated[0]) + len(generated[1]),
        "generation failed": len(generated[1]),
        "verified positive": sum(p is True for p in verified),
        "verified negative": sum(p is False for p in verified),
        "verified unverifiable": sum(p is None for p in verified),
        "filtered": len(filtered),
        "samples kept for the outputs": len(stage(run_dir, "emit")),
    }
    for reason, n in Counter(r.split(":")[0] for r in filtered).items():
        funnel[f"filtered: {reason}"] = n
    for name in ("sft_positive", "sft_negative", "redi_pairs"):
        path = run_dir / "outputs" / name / f"{name}.parquet"
        funnel[f"emitted {name}"] = len(datasets.Dataset.from_parquet(str(path)))
    return funnel


def test_every_funnel_number_matches_the_datasets_on_disk(replay_run):
    expected = expected_funnel(replay_run)
    table = parse_markdown_table((replay_run / "report.md").read_text(), "Funnel")
    assert {step: int(count) for step, count in table} == expected
    # Every kind of step happened in this run, so none of the checks above is vacuous.
    nonzero = ("malformed", "contaminated", "duplicate", "failed", "negative", "filtered")
    for word in nonzero:
        assert any(word in step and n > 0 for step, n in expected.items()), word
    summary = json.loads((replay_run / "summary.json").read_text())
    assert expected["emitted redi_pairs"] == summary["redi_pairs"]
    assert expected["rows read"] == summary["rows_read"]


def test_report_module_rebuilds_both_files(replay_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(replay_run, copy)
    (copy / "report.html").unlink()
    (copy / "report.md").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "datagen.report", str(copy)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_markdown_table((copy / "report.md").read_text(), "Funnel") == (
        parse_markdown_table((replay_run / "report.md").read_text(), "Funnel")
    )
    html = (copy / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch when viewed
    assert html.count("data:image/png;base64,") >= 4
    bad = subprocess.run(
        [sys.executable, "-m", "datagen.report", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_trace_text_is_escaped_and_reasoning_folded():
    out = render_text("<think>try <b>x</b></think>The answer is <script>alert(1)</script>")
    assert out.startswith("<details><summary>reasoning (2 words)</summary>")
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "&lt;script&gt;" in out and "<script>" not in out
    assert reason_category("too long: 300 > 200 tokens") == "too long"


def chromium_driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (binary and driver_path):
        pytest.skip("apt-get install chromium chromium-driver (see .ci/apt-packages.txt)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,2400",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def full_page_png(driver) -> bytes:
    """A screenshot of the whole page (Chrome DevTools' captureBeyondViewport)."""
    import base64

    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    return base64.b64decode(shot["data"])


def test_report_renders_in_headless_chromium_without_console_errors(replay_run, tmp_path):
    driver = chromium_driver()
    try:
        driver.get((replay_run / "report.html").as_uri())
        logs = driver.get_log("browser")
        cells = driver.execute_script(
            "return [...document.querySelectorAll('#funnel tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        images = driver.execute_script(
            "return [...document.images].map(i => i.complete && i.naturalWidth > 0)"
        )
        folded = driver.execute_script("return document.querySelectorAll('details').length")
        headings = driver.execute_script(
            "return [...document.querySelectorAll('h3')].map(h => h.textContent)"
        )
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        (tmp_path / "report-full.png").write_bytes(full_page_png(driver))
    finally:
        driver.quit()
    assert [e for e in logs if e["level"] in ("SEVERE", "WARNING")] == []
    assert {step: int(n) for step, n in cells} == expected_funnel(replay_run)
    assert images and all(images)
    assert folded >= 1  # the config (these replayed traces have no <think> block to fold)
    assert {"A positive (sft_positive)", "A negative", "A pair (redi_pairs)"} <= set(headings)
    assert shot.stat().st_size > 10_000
    if os.environ.get("DATAGEN_ARTIFACTS"):
        target = Path(os.environ["DATAGEN_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "report.png")
        shutil.copy(tmp_path / "report-full.png", target / "report-full.png")
