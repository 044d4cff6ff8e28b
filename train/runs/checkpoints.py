"""Reading model weights out of checkpoints, safely.

Checkpoints are loaded with ``weights_only=True`` (no arbitrary pickles are executed).
Lightning checkpoints keep the task's parameters under ``model.``; plain state dicts
(e.g. a consolidated DeepSpeed checkpoint) are accepted as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the model it is loaded into."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file from a run's checkpoints/")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); is the file complete?") from exc


def model_state(checkpoint: dict[str, Any], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The recmodels module's state dict from a Lightning or plain checkpoint."""
    state = checkpoint.get("state_dict", checkpoint)
    if any(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint's model weights, naming mismatched keys if they do not fit."""
    state = model_state(load_checkpoint(path))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {exc}. "
            "Was it trained with another model or data configuration?"
        ) from exc
