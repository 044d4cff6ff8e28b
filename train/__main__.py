"""``python -m train [hydra overrides]``: train, validate, test, write metrics.json."""
from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import train.strategies  # noqa: F401  registers ${recflow.precision:} used by trainer configs
from train.config_checks import check_config
from train.distributed import prepare_argv, publish_run_dir
from train.run import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> Any:
    publish_run_dir(HydraConfig.get().runtime.output_dir)  # torchrun: other ranks wait for it
    check_config(cfg)
    metrics = train(cfg)
    # Multirun sweeps (Optuna) optimise the value returned here: a validation metric.
    return metrics.get(cfg.get("optimized_metric") or cfg.monitor)


if __name__ == "__main__":
    # Multi-process launches: every rank joins the job's one run directory (train.distributed).
    sys.argv = prepare_argv(sys.argv)
    main()
