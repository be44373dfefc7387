"""Probe which MBPP problems the embedded teacher sometimes solves (data/code_sample.jsonl).

Writes the short, honestly tested MBPP-train problems of ``shared/data/code`` as a
code source, then asks the code pipeline's own teacher (local SmolLM2, its request
cache, its seeds) for ``n`` samples of each and grades them with the pipeline's
verifier (sandboxed), printing one line per problem as it finishes: ``+`` passed,
``-`` failed, ``f`` cut off at max_tokens (the filter sets it aside), ``?``
unverifiable. Sample seeds depend only on the run seed, the prompt and the sample
index, so these are the samples ``python -m datagen +pipeline=code`` draws.

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
    parser.add_argument("--n", type=int, default=4, help="samples per problem")
    parser.add_argument("--max-chars", type=int, default=80)
    parser.add_argument("--max-lines", type=int, default=3)
    parser.add_argument("--first", default="", help="comma-separated ids to probe first")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from datagen.config import resolve_config
    from datagen.sources import read_problems
    from datagen.stages.base import StageContext
    from datagen.stages.verify import run_verification
    from datagen.teachers import build_teacher
    from tests.conftest import compose

    rows = candidates(args.mbpp, args.max_chars, args.max_lines)
    first = [i for i in args.first.split(",") if i]
    rows.sort(key=lambda r: first.index(r["id"]) if r["id"] in first else len(first))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    source = args.run_dir / "candidates.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} candidates -> {source}", file=sys.stderr)
    overrides = ["+pipeline=code", f"source.path={source}", f"generation.n={args.n}"]
    config = resolve_config(compose(*overrides, *args.overrides))
    problems, _ = read_problems(config.source, config.source.system_prompt)
    ctx = StageContext(config=config, run_dir=args.run_dir)
    # The pipeline's own teacher, cache, seeds and verifier: a later pipeline run that
    # shares this cache (teacher.cache_path) gets exactly these samples back.
    teacher = build_teacher(config.teacher, args.run_dir)
    seed = config.generation.seed if config.generation.seed is not None else config.run.seed
    for problem in problems:
        samples = teacher.generate([problem], config.generation, seed)
        run_verification([s for s in samples if s.keep], ctx, config.verifier, stage="verify")
        marks = "".join(
            "e" if s.error else "f" if s.truncated else {True: "+", False: "-", None: "?"}[s.passed]
            for s in samples
        )
        print(json.dumps({"id": problem.metadata["source_id"], "marks": marks}), flush=True)
    teacher.close()
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
