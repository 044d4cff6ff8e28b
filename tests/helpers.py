"""Shared test helpers: the real Hydra config on tiny synthetic data, and the overrides
the prepared GPU script holds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from train.training.resolvers import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_resolvers()  # ${recflow.precision:} in the trainer configs tests compose

TINY_DATA = [
    "data.num_users=120",
    "data.num_items=60",
    "data.min_length=8",
    "data.max_length=16",
    "logger=none",
]


def tiny_config(output_dir: Path, *overrides: str) -> DictConfig:
    """The project's config with tiny data, no tracker and outputs under ``output_dir``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TINY_DATA, *overrides], return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.trainer.enable_progress_bar = False
    return cfg


class Payload:
    """Unpickling it creates ``marker`` (and nothing else): proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


def gpu_script_variable(name: str) -> list[str]:
    """The overrides a variable of scripts/gpu_checks.sh holds (NAME="..." on one line)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_checks.sh"
    for line in script.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip('"').split()
    raise AssertionError(f"{name} is not set in scripts/gpu_checks.sh")
