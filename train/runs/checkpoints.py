"""Reading model weights out of checkpoints, safely.

Checkpoints are loaded with ``weights_only=True`` (no arbitrary pickles are executed).
Lightning checkpoints keep the task's parameters under ``model.``; plain state dicts
(e.g. a consolidated DeepSpeed checkpoint) are accepted as they are.

Each checkpoint written by training gets a ``<file>.sha256`` sidecar (``sha256sum``
format), checked before the file is read: a flipped byte in a tensor would otherwise
load as slightly different weights without any error. A file without a sidecar (runs
from before sidecars existed, files made by hand) loads with a warning.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)
SIDECAR = ".sha256"
CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the model it is loaded into."""


def sidecar_of(path: str | Path) -> Path:
    """``<path>.sha256``: where the checksum of ``path`` is kept."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(path: str | Path) -> Path:
    """Write ``path``'s sidecar (temp file + rename: a reader never sees half of it)."""
    path, sidecar = Path(path), sidecar_of(path)
    part = sidecar.with_name(sidecar.name + ".part")
    part.write_text(f"{file_sha256(path)}  {path.name}\n")
    os.replace(part, sidecar)
    return sidecar


def verify_checksum(path: str | Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` differs from its sidecar; warn without one."""
    path, sidecar = Path(path), sidecar_of(path)
    if not path.is_file():  # nothing to compare; reading it fails with its own message
        return
    if not sidecar.is_file():
        log.warning("checkpoint %s has no %s checksum file; loading it unverified", path, sidecar.name)
        return
    expected = (sidecar.read_bytes().decode("ascii", errors="replace").split() or [""])[0].lower()
    actual = file_sha256(path)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {path} does not match its checksum in {sidecar.name} (sha256 {actual}, "
            f"expected {expected or 'nothing'}); the file was altered or damaged after it was "
            "written: restore it or use another checkpoint"
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file from a run's checkpoints/")
    verify_checksum(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise unreadable(path, exc) from exc


def unreadable(path: str | Path, exc: Exception) -> CheckpointError:
    """The error for a checkpoint file torch could not load weights-only.

    torch's own message advises turning the weights-only guard off, which would run
    whatever the file holds; only its reason is kept here.
    """
    text = str(exc)
    reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    reason = " ".join(reason.split())[:300] or type(exc).__name__
    return CheckpointError(
        f"checkpoint {path} could not be read ({type(exc).__name__}: {reason}); it is truncated, corrupt, "
        "or not a checkpoint recflow wrote (only tensors and plain values are loaded); pass an intact "
        ".ckpt from a run's checkpoints/"
    )


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
