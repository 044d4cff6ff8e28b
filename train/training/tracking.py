"""Experiment loggers: W&B (offline unless credentials exist), CSV, or none."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, WandbLogger


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(project: str, save_dir: str, mode: str = "auto", name: str | None = None, **kwargs: Any) -> WandbLogger:
    """W&B logger; ``mode=auto`` goes offline without credentials (``wandb sync`` uploads later)."""
    if mode not in {"auto", "online", "offline", "disabled"}:
        raise ValueError(f"logger.mode must be auto, online, offline or disabled, got {mode!r}")
    if mode == "auto":
        mode = "online" if wandb_credentials_present() else "offline"
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, save_dir=save_dir, name=name, offline=mode == "offline", mode=mode, **kwargs)


def csv_logger(save_dir: str, name: str = "csv") -> CSVLogger:
    return CSVLogger(save_dir=save_dir, name=name, version="")
