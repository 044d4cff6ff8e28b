"""``recflow-train`` / ``python -m train`` [hydra overrides]: train, validate, test, write metrics.json.

Under ``torchrun`` every rank joins the job's one run directory
(:mod:`train.training.distributed`) before Hydra composes the config.
"""
from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

import train.training.strategies  # noqa: F401  registers ${recflow.precision:} used by trainer configs
from train.cli.configs import CONFIG_DIR
from train.extras import check_sweeper_installed


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def train_job(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from train.training.config_checks import check_config
    from train.training.distributed import publish_run_dir
    from train.training.run import train

    publish_run_dir(HydraConfig.get().runtime.output_dir)  # torchrun: other ranks wait for it
    check_config(cfg)
    metrics = train(cfg)
    # Multirun sweeps (Optuna) optimise the value returned here: a validation metric.
    return metrics.get(cfg.get("optimized_metric") or cfg.monitor)


def main() -> None:
    from train.training.distributed import prepare_argv

    sys.argv = prepare_argv(sys.argv)
    check_sweeper_installed(sys.argv[1:])
    train_job()


if __name__ == "__main__":
    main()
