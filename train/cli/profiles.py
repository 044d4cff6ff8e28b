"""``recflow-profile run=DIR [out=FILE.parquet] [k=10]``: one row of profile per user.

See conf/profile.yaml for every option and :mod:`train.serving.profiles` for the columns.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.cli.configs import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="profile")
def main(cfg: DictConfig) -> None:
    from train.serving.profiles import run_profile

    run_profile(cfg)


if __name__ == "__main__":
    main()
