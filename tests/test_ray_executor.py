"""The same stages on Ray Data (a real local Ray cluster) give the same datasets and
counters as locally."""

from __future__ import annotations

import json

import datasets
import pytest

from datagen.runner import Runner
from datagen.stages import STAGES

from .conftest import ROOT

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_matches_local(tmp_path, make_config, local_ray):
    src = tmp_path / "p.jsonl"
    rows = [
        {"id": str(i), "problem": f"Find the value of {i} times {i + 3}.", "answer": "1"}
        for i in range(40)
    ]
    rows[7]["problem"] = rows[3]["problem"]  # a duplicate
    bench = ROOT / "data" / "benchmarks" / "gsm8k_test.jsonl"
    leak = json.loads(bench.read_text().splitlines()[0])
    rows[11]["problem"] = leak["problem"]  # a benchmark leak
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stages = [STAGES["load"], STAGES["decontaminate"], STAGES["dedup"]]
    outputs = {}
    for executor in ("local", "ray"):
        cfg = make_config(
            "+pipeline=math",
            f"source.path={src}",
            f"run.executor={executor}",
            "run.batch_size=8",
            "run.ray_batch_size=4",
            "run.progress=false",
        )
        run_dir = tmp_path / executor
        results = Runner(cfg, run_dir, stages).run()
        kept = datasets.load_from_disk(str(run_dir / "stages" / "02_dedup" / "data"))
        aside = [
            datasets.load_from_disk(str(run_dir / "stages" / d))["reject_reason"]
            for d in ("01_decontaminate/contaminated", "02_dedup/duplicates")
        ]
        counts = [r.rows_out for r in results]
        outputs[executor] = (kept["id"], aside, counts, [r.stats for r in results])
    assert outputs["ray"] == outputs["local"]
    _, aside, counts, stats = outputs["ray"]
    assert counts == [40, 39, 38] and len(aside[0]) == 1 and len(aside[1]) == 1
    # The decontaminate counter was added inside Ray actors and reached the runner.
    assert stats[1] == {"gsm8k_test:exact": 1}, stats


@pytest.mark.parametrize(
    ("stage", "overrides", "gpus"),
    [
        ("verify", ["verifier=reward", "verifier.model=/rm", "verifier.device=cuda"], 1.0),
        ("verify", ["verifier=reward", "verifier.model=/rm", "verifier.device=cpu"], 0.0),
        ("generate_adaptive", ["teacher=vllm", "teacher.model=/m"], 1.0),
        ("generate", ["teacher=vllm", "teacher.model=/m"], 1.0),
        ("generate", [], 0.0),  # the local llama.cpp teacher runs on CPU
        ("verify", [], 0.0),  # math-verify
    ],
)
def test_a_stage_that_declares_a_gpu_asks_ray_for_it(
    make_config, local_ray, tmp_path, stage, overrides, gpus
):
    # This machine has no GPU, so an actor asking for one would wait forever: the test
    # reads what the executor would ask Ray for, from the stage's declaration.
    from datagen.context import StageContext
    from datagen.executors import apply_stage
    from datagen.ray_executor import RayExecutor

    cfg = make_config(
        "+pipeline=math",
        "run.executor=ray",
        "run.ray_gpus_per_actor=1",
        "run.ray_cpus_per_actor=0.5",
        *overrides,
    )
    executor = RayExecutor(StageContext(config=cfg, run_dir=tmp_path), apply_stage)
    assert executor.actor_options(STAGES[stage]) == {"num_cpus": 0.5, "num_gpus": gpus}
    assert executor.spreads(STAGES[stage])
    assert not executor.spreads(STAGES["dedup"]) and not executor.spreads(STAGES["emit"])
