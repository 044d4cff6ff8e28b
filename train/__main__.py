"""``python -m train [hydra overrides]``: train, validate, test, write metrics.json."""
from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from train.config_checks import check_config
from train.run import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> Any:
    check_config(cfg)
    metrics = train(cfg)
    # Multirun sweeps (Optuna) optimise the value returned here: a validation metric.
    return metrics.get(cfg.get("optimized_metric") or cfg.monitor)


if __name__ == "__main__":
    main()
