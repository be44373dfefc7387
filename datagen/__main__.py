"""Entry point: ``python -m datagen +pipeline=math``.

Resolves the Hydra config into dataclasses, runs the pipeline's stages in the
Hydra run directory, and prints the summary.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import datasets
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from datagen.compose import CONF_DIR, check_overrides, resolve_config
from datagen.config import ConfigError
from datagen.report import write_report
from datagen.rerun import warn_if_config_changed
from datagen.runner import Runner
from datagen.stages import build_pipeline
from datagen.summary import build_summary, format_summary

logger = logging.getLogger("datagen")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the configured pipeline in ``run_dir``; return the summary."""
    config = resolve_config(cfg)
    stages = build_pipeline(list(config.pipeline.stages))
    run_dir.mkdir(parents=True, exist_ok=True)
    warn_if_config_changed(run_dir, config.as_dict(), config.output.dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config.as_dict())))
    started = time.monotonic()
    results = Runner(config, run_dir, stages).run()
    summary = build_summary(results, run_dir, time.monotonic() - started, config)
    write_report(run_dir)  # report.html and report.md, from what the run left on disk
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    datasets.disable_progress_bars()  # our own bars cover the long work
    try:
        summary = run(cfg, run_dir)
    except (ConfigError, ValueError) as exc:
        logger.error("%s", exc)
        sys.exit(2)
    print(format_summary(summary))
    print(f"outputs: {run_dir / cfg.output.dir}")


if __name__ == "__main__":
    try:  # before Hydra, which would call a renamed key merely unknown
        check_overrides(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()
