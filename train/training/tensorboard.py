"""``logger=tensorboard``: Lightning's TensorBoardLogger behind recflow's install hint.

The tensorboard package is optional (``recflow[tensorboard]``); without it, Lightning
would only say that neither tensorboard nor tensorboardX is installed.
"""
from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger

from train.extras import require


def tensorboard_logger(save_dir: str, name: str = "tensorboard", **kwargs: Any) -> TensorBoardLogger:
    """Event files in ``<save_dir>/<name>/`` (``tensorboard --logdir <run dir>`` shows them)."""
    if find_spec("tensorboardX") is None:  # Lightning writes through either package
        require("tensorboard", "tensorboard", "logger=tensorboard")
    return TensorBoardLogger(save_dir=save_dir, name=name, version="", **kwargs)
