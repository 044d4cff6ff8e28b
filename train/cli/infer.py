"""``recflow-infer run=DIR [users=all|FILE] [k=10] [out=FILE.parquet|.csv|.jsonl]``: batch top-K.

Every chosen user gets the ``k`` best-scored items they have not interacted with; see
conf/infer.yaml for every option and :mod:`train.serving.infer` for the work.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="infer")
def main(cfg: DictConfig) -> None:
    from train.serving.infer import run_infer

    run_infer(cfg)


if __name__ == "__main__":
    main()
