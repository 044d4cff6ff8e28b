"""``recflow-train`` / ``python -m train`` [hydra overrides]: train, validate, test, write metrics.json.

``resume=RUN_DIR`` continues an interrupted run in its folder (:mod:`train.training.resume`).
Under ``torchrun`` every rank joins the job's one run directory
(:mod:`train.training.distributed`) before Hydra composes the config.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR
from train.extras import check_sweeper_installed
from train.training.resolvers import register_resolvers

register_resolvers()  # ${recflow.precision:} and ${recflow.run_label:}; torch loads only when resolved


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_job(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from train.training.config_checks import check_config
    from train.training.distributed import publish_run_dir
    from train.training.run import train

    publish_run_dir(HydraConfig.get().runtime.output_dir)  # torchrun: other ranks wait for it
    logging.captureWarnings(True)  # Lightning's warnings reach train.log like its messages
    check_config(cfg)
    metrics = train(cfg)
    # Multirun sweeps (Optuna) optimise the value returned here: a validation metric.
    return metrics.get(cfg.get("optimized_metric") or cfg.monitor)


def main() -> None:
    from train.training.threads import prefer_passive_wait

    prefer_passive_wait()  # before anything loads torch and its OpenMP runtime
    from train.training.distributed import prepare_argv
    from train.training.resume import ResumeError, resume_argv

    try:
        sys.argv = prepare_argv(resume_argv(sys.argv))
    except ResumeError as error:
        raise SystemExit(f"recflow-train: {error}") from None
    check_sweeper_installed(sys.argv[1:])
    train_job()


if __name__ == "__main__":
    main()
