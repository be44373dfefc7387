"""Entry point: ``python -m datagen +pipeline=math``.

Resolves the Hydra config into dataclasses, checks what the run needs
(:mod:`datagen.preflight`), runs the pipeline's stages in the Hydra run
directory under its lock, and prints the summary. Every way of ending says
so in one line and an exit status: 0 done, 2 bad config or setup, 3 finished
but too much failed (:mod:`datagen.outcome`), 4 disk full, 130 interrupted.
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
from datagen.errors import EXIT_DISK_FULL, EXIT_INTERRUPTED, disk_full_message, is_disk_full
from datagen.lock import RunLock
from datagen.outcome import EXIT_FAILED_RUN, RunFailed, failure_reason
from datagen.pages import PageReleaser
from datagen.preflight import preflight
from datagen.report import write_report
from datagen.rerun import warn_if_config_changed
from datagen.runner import Runner
from datagen.safetext import escape_text, install_log_filter, redact_config
from datagen.stages import build_pipeline
from datagen.summary import build_summary, format_summary

logger = logging.getLogger("datagen")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the configured pipeline in ``run_dir``; return the summary.

    Raises:
        ConfigError: Bad config, a missing resource, or another process on ``run_dir``.
        RunFailed: The run finished but too much of it failed (the summary is attached).
    """
    config = resolve_config(cfg)
    stages = build_pipeline(list(config.pipeline.stages))
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir), PageReleaser():  # RSS counts held memory, not Arrow pages read
        preflight(config, stages, run_dir)
        warn_if_config_changed(run_dir, config.as_dict(), config.output.dir)
        plain = redact_config(config.as_dict())  # no credential typed into a URL
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
        started = time.monotonic()
        results = Runner(config, run_dir, stages).run()
        summary = build_summary(results, run_dir, time.monotonic() - started, config)
        write_report(run_dir)  # report.html and report.md, from what the run left on disk
    reason = failure_reason(summary, config.run)
    if reason is not None:
        raise RunFailed(reason, summary)
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    install_log_filter()  # on Hydra's console and file handlers: text from servers, escaped
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    datasets.disable_progress_bars()  # our own bars cover the long work
    try:
        summary = run(cfg, run_dir)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished work is saved in {run_dir}; rerun the same command to resume",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    except RunFailed as exc:
        print(escape_text(format_summary(exc.summary), keep_newlines=True))
        logger.error("run failed: %s", exc)
        sys.exit(EXIT_FAILED_RUN)
    except (ConfigError, ValueError) as exc:
        logger.error("%s", exc)
        sys.exit(2)
    except Exception as exc:  # a full disk reaches us as OSError, pyarrow's or sqlite's
        if not is_disk_full(exc):
            raise
        logger.error("%s", disk_full_message(exc, run_dir))
        sys.exit(EXIT_DISK_FULL)
    print(escape_text(format_summary(summary), keep_newlines=True))  # ids come from datasets
    print(f"outputs: {run_dir / cfg.output.dir}")


if __name__ == "__main__":
    try:  # before Hydra, which would call a renamed key merely unknown
        check_overrides(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()
