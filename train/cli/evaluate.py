"""``recflow-evaluate run=DIR [ckpt=best|last|PATH] [eval=OPTION] [split=test|val|both]``.

Scores a trained run again without Lightning, under its own eval config or another
(``eval=sampled``); see conf/evaluate.yaml and :mod:`train.serving.evaluate`.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from train.serving.evaluate import run_evaluate

    try:
        run_evaluate(cfg)
    except ValueError as exc:  # a missing run, checkpoint or option; the message names the fix
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
