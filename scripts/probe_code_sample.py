"""Probe which MBPP problems the embedded teacher sometimes solves (data/code_sample.jsonl).

Writes the short, honestly tested MBPP-train problems of ``shared/data/code`` as a
code source, runs the real code pipeline on them (local SmolLM2 teacher, sandboxed
verifier) with the README's sampling settings, and prints per problem which of its
samples passed. Because sample seeds depend only on the run seed, the problem id and
the sample index, the first ``generation.n`` samples of a problem here are the ones
the default ``python -m datagen +pipeline=code`` draws for it.

    python scripts/probe_code_sample.py /path/to/shared/data/code/mbpp_train.jsonl \
        --run-dir runs/probe_code --n 6

Slow on 2 CPU cores (about 90 problems x n samples); run it once, in the background.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parents[1]


def honest(test_list: list[str]) -> bool:
    """True when no single constant answer passes every assert (e.g. all ``== True``)."""
    expected = set()
    for line in test_list:
        try:
            node = ast.parse(line.strip()).body[0]
        except SyntaxError:
            return False
        if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
            return False
        expected.add(ast.unparse(node.test.comparators[-1]))
    return len(expected) == len(test_list)


def candidates(path: Path, max_chars: int, max_lines: int) -> list[dict]:
    """Short MBPP problems whose canonical solution passes, in the code source's format."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        body = [x for x in row["canonical_solution"].splitlines() if x.strip()]
        if not row.get("canonical_passes") or row["test_setup_code"] or len(body) > max_lines:
            continue
        if len(row["problem"]) > max_chars or not honest(row["test_list"]):
            continue
        tests = "\n".join(row["test_list"])
        out.append(
            {
                "id": row["id"],
                "problem": f"{row['problem']}\nYour code should pass these tests:\n{tests}",
                "tests": {"kind": "assert", "setup": "", "test_code": tests},
                "source": "MBPP (google-research), CC BY 4.0",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mbpp", type=Path, help="shared/data/code/mbpp_train.jsonl")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "probe_code")
    parser.add_argument("--n", type=int, default=6, help="samples per problem")
    parser.add_argument("--max-chars", type=int, default=80)
    parser.add_argument("--max-lines", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from datagen.__main__ import run
    from tests.conftest import compose

    rows = candidates(args.mbpp, args.max_chars, args.max_lines)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    source = args.run_dir / "candidates.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} candidates -> {source}", file=sys.stderr)
    cfg = compose(
        "+pipeline=code",
        f"source.path={source}",
        f"generation.n={args.n}",
        "run.progress=false",
        *args.overrides,
    )
    summary = run(cfg, args.run_dir)
    stages = args.run_dir / "stages"
    outcome: dict[str, dict[int, str]] = {}
    for row in datasets.load_from_disk(str(next(stages.glob("*_verify")) / "data")):
        mark = {True: "+", False: "-", None: "?"}[row["passed"]]
        outcome.setdefault(row["problem_id"], {})[row["sample_index"]] = mark
    for row in datasets.load_from_disk(str(next(stages.glob("*_filter")) / "set_aside")):
        outcome[row["problem_id"]][row["sample_index"]] = "f"  # set aside by the filter
    report = {
        pid: "".join(marks.get(i, ".") for i in range(args.n))
        for pid, marks in sorted(outcome.items())
    }
    print(json.dumps({"summary_positives": summary.get("positives"), "problems": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
