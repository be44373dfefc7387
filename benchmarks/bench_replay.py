"""Re-grade existing traces: datagen's whole command against a naive script (issue 19).

Builds ``--n`` traces (default 100,000) from the 800 labelled Qwen2.5-Math traces
bundled in ``tests/fixtures/math/traces_qwen25_math_cot_100.jsonl`` (100 problems,
8 traces each), replicated under distinct prompts (a letter tag is put in front of
each problem, so no number is added that an answer could copy), and grades them
twice, each side in its own process:

* ``datagen``: ``python -m datagen +pipeline=math teacher=replay decontam=none``
  over the problems file and the traces file (load, dedup, generate, verify,
  filter, emit, report);
* ``naive``: what a user would write: ``math_verify.verify(parse(gold),
  parse(response))`` per trace over a 2-process ``multiprocessing.Pool``, then
  ``datasets.Dataset.from_list(rows).save_to_disk``.

Prints one JSON object (and writes it with ``--out``): each side's wall seconds,
grading seconds and traces/s (datagen's from the verify stage's time in
``manifest.json``), peak RSS of the process tree (sampled every 0.1 s with
psutil), disk bytes per trace (datagen: the run directory, outputs included;
naive: the saved dataset; ``disk_over_sample_text``: each part of it over the
samples' text), the verdicts' agreement per trace, the filter stage's
ms per row, and the ratios the issue asks for. The machine may be shared:
``load_before``/``load_after`` are ``os.getloadavg()``.

    python benchmarks/bench_replay.py --n 2000            # a smoke run, about a minute
    python benchmarks/bench_replay.py --out benchmarks/results/bench_replay.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "tests" / "fixtures" / "math" / "traces_qwen25_math_cot_100.jsonl"
PER_PROBLEM = 8


def tag(r: int) -> str:
    """A letters-only name for replica ``r`` (aa, ab, ...): no digit an answer could copy."""
    letters = string.ascii_lowercase
    out = ""
    while True:
        r, k = divmod(r, 26)
        out = letters[k] + out
        if r == 0:
            return "copy " + out.rjust(3, "a")


def build_inputs(folder: Path, n: int) -> dict[str, Any]:
    """Write ``problems.jsonl`` and ``traces.jsonl`` (``n`` traces, whole problems)."""
    rows = [json.loads(line) for line in TRACES.read_text(encoding="utf-8").splitlines()]
    by_problem: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_problem.setdefault(row["problem_idx"], []).append(row)
    groups = [sorted(g, key=lambda r: r["sample_idx"]) for _, g in sorted(by_problem.items())]
    written = text = 0
    with (
        open(folder / "problems.jsonl", "w", encoding="utf-8") as problems,
        open(folder / "traces.jsonl", "w", encoding="utf-8") as traces,
    ):
        replica = 0
        while written < n:
            for g, group in enumerate(groups):
                if written >= n:
                    break
                prompt = f"({tag(replica)}) {group[0]['problem']}"
                pid = f"r{replica}-p{g}"
                problems.write(
                    json.dumps({"id": pid, "problem": prompt, "answer": group[0]["answer"]}) + "\n"
                )
                for row in group:
                    trace = {
                        "problem": prompt,
                        "answer": row["answer"],
                        "response": row["response"],
                        "correct": row["correct"],
                        "sample_idx": row["sample_idx"],
                    }
                    traces.write(json.dumps(trace) + "\n")
                    written += 1
                    text += len(row["response"].encode())
            replica += 1
    return {
        "traces": written,
        "traces_bytes": (folder / "traces.jsonl").stat().st_size,
        "problems": written // PER_PROBLEM,
        "sample_text_bytes": text,
    }


# -- the naive script ------------------------------------------------------------------


def _naive_grade(pair: tuple[str, str]) -> bool:
    import math_verify

    gold, response = pair
    # A bare LaTeX reference ("\\frac{1}{2}") parses to nothing without math delimiters,
    # which would fail every such trace; a user's script wraps it once they see that.
    gold = gold if "$" in gold else f"${gold}$"
    return bool(math_verify.verify(math_verify.parse(gold), math_verify.parse(response)))


def naive(folder: Path) -> dict[str, Any]:
    """The hand-written script: math-verify over a 2-process pool, then save_to_disk."""
    import datasets

    started = time.monotonic()
    rows = [json.loads(x) for x in (folder / "traces.jsonl").read_text("utf-8").splitlines()]
    graded_at = time.monotonic()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        verdicts = pool.map(_naive_grade, [(r["answer"], r["response"]) for r in rows])
    grading = time.monotonic() - graded_at
    for row, verdict in zip(rows, verdicts, strict=True):
        row["passed"] = verdict
    saved_at = time.monotonic()
    datasets.Dataset.from_list(rows).save_to_disk(str(folder / "naive_out"))
    save = time.monotonic() - saved_at
    (folder / "naive_verdicts.json").write_text(json.dumps(verdicts))
    return {
        "wall_s": round(time.monotonic() - started, 3),
        "grade_s": round(grading, 3),
        "save_s": round(save, 3),
    }


# -- datagen ---------------------------------------------------------------------------


def datagen_command(folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "datagen",
        "+pipeline=math",
        "teacher=replay",
        "decontam=none",
        f"source.path={folder / 'problems.jsonl'}",
        "source.metadata_fields=[]",
        f"teacher.path={folder / 'traces.jsonl'}",
        "teacher.order_field=sample_idx",
        "teacher.label_field=correct",
        f"generation.n={PER_PROBLEM}",
        "run.progress=false",
        f"hydra.run.dir={folder / 'run'}",
    ]


def datagen_verdicts(run_dir: Path) -> dict[tuple[str, int], bool | None]:
    """``passed`` of every sample, by prompt and sample index, from the verify stage."""
    from datagen.views import open_part

    folder = next((run_dir / "stages").glob("*_verify"))
    data = open_part(str(folder / "data")).select_columns(["messages", "sample_index", "passed"])
    cols = data.to_dict()
    return {
        (m[-1]["content"], i): v
        for m, i, v in zip(cols["messages"], cols["sample_index"], cols["passed"], strict=True)
    }


# -- measuring -------------------------------------------------------------------------


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(
    cmd: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, int, float, float]:
    """Run ``cmd``; (result, peak RSS of its process tree, wall seconds, CPU seconds of
    the tree: what a busy machine does not inflate much)."""
    cpu = children_cpu()
    started = time.monotonic()
    child = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        proc = psutil.Process(child.pid)
        while not done.wait(0.1):
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], tree_rss(proc))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    wall = time.monotonic() - started
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(cmd, child.returncode, out, err)
    if child.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({child.returncode}):\n{err[-4000:]}")
    return result, peak[0], wall, children_cpu() - cpu


def agreement(verdicts: list[Any], labels: list[bool]) -> float:
    """Share of traces whose verdict is the data's own label (unverifiable counts as wrong)."""
    return round(sum(1 for v, y in zip(verdicts, labels, strict=True) if v is y) / len(labels), 5)


def disk(path: Path) -> int:
    """Bytes of the files under ``path``, a hard-linked file counted once (as ``du``)."""
    seen = {}
    for f in path.rglob("*"):
        if f.is_file():
            st = f.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def disk_parts(run_dir: Path, text: int) -> dict[str, float]:
    """What each part of the run directory costs, over the samples' text: every stage part
    (``stages/03_generate/data``), every output's ``arrow/`` and other files, the rest."""
    parts = [p for p in sorted((run_dir / "stages").glob("*/*")) if p.is_dir()]
    for out in sorted((run_dir / "outputs").glob("*")):
        parts += [p for p in sorted(out.iterdir()) if p.is_dir()]
    costs = {str(p.relative_to(run_dir)): disk(p) for p in parts}
    for out in sorted((run_dir / "outputs").glob("*")):
        costs[f"{out.relative_to(run_dir)}/files"] = sum(
            f.stat().st_size for f in out.iterdir() if f.is_file()
        )
    costs["other"] = disk(run_dir) - sum(costs.values())
    return {name: round(size / text, 3) for name, size in costs.items()}


def outputs_uncompressed(run_dir: Path) -> int:
    """The outputs' Arrow bytes in memory: what they would cost on disk if their text did
    not compress. Parquet compresses this benchmark's replicated traces far better than
    unique ones, so this is the honest upper bound beside the measured size."""
    import pyarrow.parquet as pq

    return sum(pq.read_table(f).nbytes for f in (run_dir / "outputs").glob("*/*.parquet"))


def bench(n: int, workdir: Path, keep: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-replay-{n}-", dir=workdir))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    me = [sys.executable, str(Path(__file__).resolve())]
    report: dict[str, Any] = {
        "n": n,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    try:
        report["inputs"] = build_inputs(folder, n)
        done, peak, wall, cpu = measured([*me, "--child", "naive", "--folder", str(folder)], env)
        naive_side = json.loads(done.stdout.strip().splitlines()[-1])
        naive_side |= {
            "peak_rss_bytes": peak,
            "process_wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "disk_bytes": disk(folder / "naive_out"),
        }
        _, peak, wall, cpu = measured(datagen_command(folder), env)
        run_dir = folder / "run"
        manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
        stage_s = {name: e["seconds"] for name, e in manifest.items()}
        ours = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "grade_s": stage_s["verify"],
            "stage_seconds": stage_s,
            "rows": {
                k: [e["rows_in"], e["rows_out"], e["rows_set_aside"]] for k, e in manifest.items()
            },
            "peak_rss_bytes": peak,
            "disk_bytes": disk(run_dir),
        }
        report["load_after"] = os.getloadavg()
        theirs = json.loads((folder / "naive_verdicts.json").read_text())
        mine = datagen_verdicts(run_dir)
        text_rows = (folder / "traces.jsonl").read_text("utf-8").splitlines()
        traces = [json.loads(x) for x in text_rows]
        ours_list = [mine.get((t["problem"], t["sample_idx"]), "missing") for t in traces]
        labels = [t["correct"] for t in traces]
        same = sum(1 for a, b in zip(ours_list, theirs, strict=True) if a is b)
        for side in (naive_side, ours):
            side["traces_per_s"] = round(n / side.get("process_wall_s", side["wall_s"]), 1)
            side["grade_traces_per_s"] = round(n / side["grade_s"], 1)
            side["peak_rss_gb"] = round(side["peak_rss_bytes"] / 1e9, 3)
            side["disk_bytes_per_trace"] = round(side["disk_bytes"] / n, 1)
        report["naive"] = naive_side
        report["datagen"] = ours
        report["verdicts"] = {
            "naive_passed": sum(theirs),
            "datagen_passed": sum(1 for v in mine.values() if v),
            "datagen_unverifiable": sum(1 for v in mine.values() if v is None),
            "datagen_missing": sum(1 for v in ours_list if v == "missing"),
            "agree": same,
            "agreement": round(same / max(len(theirs), 1), 5),
            "naive_agreement_with_labels": agreement(theirs, labels),
            "datagen_agreement_with_labels": agreement(ours_list, labels),
        }
        filter_rows = manifest["filter"]["rows_in"]
        report["filter_ms_per_row"] = round(1000 * stage_s["filter"] / max(filter_rows, 1), 4)
        report["ratio_whole_command"] = round(naive_side["process_wall_s"] / ours["wall_s"], 3)
        report["ratio_whole_command_cpu"] = round(naive_side["cpu_s"] / ours["cpu_s"], 3)
        report["ratio_grading_throughput"] = round(naive_side["grade_s"] / ours["grade_s"], 3)
        text = report["inputs"]["sample_text_bytes"]
        report["run_dir_over_sample_text"] = round(ours["disk_bytes"] / text, 3)
        report["stages_over_sample_text"] = round(disk(run_dir / "stages") / text, 3)
        report["disk_over_sample_text"] = disk_parts(run_dir, text)
        stages_and_raw_outputs = disk(run_dir / "stages") + outputs_uncompressed(run_dir)
        report["run_dir_over_sample_text_outputs_uncompressed"] = round(
            stages_and_raw_outputs / text, 3
        )
    finally:
        if keep:
            report["folder"] = str(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="traces (whole problems of 8)")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--child", choices=["naive"])
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(naive(Path(args.folder))))
        return
    report = bench(args.n, Path(args.workdir), args.keep)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
