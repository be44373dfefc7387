"""Run the API teacher over problems in its own process, so a test can ``kill -9`` it.

Usage: python gen_worker.py SPEC.json OUT.json
SPEC holds base_url, api_key_env, cache, problems (Problem rows), sampling
(SamplingConfig fields), seed and concurrency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datagen.config import SamplingConfig
from datagen.records import Problem
from datagen.teachers.api import OpenAITeacher, OpenAITeacherConfig
from datagen.teachers.cache import RequestCache


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = OpenAITeacherConfig(
        model="smollm2",
        base_url=spec["base_url"],
        api_key_env=spec["api_key_env"],
        concurrency=spec["concurrency"],
        timeout=60,
        max_retries=3,
        backoff_initial=0.05,
    )
    teacher = OpenAITeacher(cfg, RequestCache(spec["cache"]))
    problems = [Problem.from_row(p) for p in spec["problems"]]
    samples = teacher.generate(problems, SamplingConfig(**spec["sampling"]), spec["seed"])
    teacher.close()
    Path(out_path).write_text(json.dumps([s.to_row() for s in samples]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
