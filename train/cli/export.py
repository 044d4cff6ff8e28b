"""``recflow-export run=DIR [format=onnx|torch] [out=FILE]``: a run's scorer as a standalone file.

See conf/export.yaml for every option and :mod:`train.serving.export` for the work.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    from train.serving.export import run_export

    run_export(cfg)


if __name__ == "__main__":
    main()
