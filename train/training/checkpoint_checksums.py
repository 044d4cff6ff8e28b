"""Checksums for the checkpoints Lightning writes and reads.

Lightning neither records nor checks what it saved: a ``last.ckpt`` with flipped bytes
resumes as if nothing happened. :class:`ChecksumCheckpointIO` wraps the strategy's
checkpoint I/O so that every saved file gets a ``<file>.sha256`` sidecar and every file
Lightning loads (resume, validate/test of the best checkpoint) is checked against it
first (:func:`train.runs.checkpoints.verify_checksum`: a mismatch is an error naming the
file, a missing sidecar a warning). DeepSpeed writes its shard folders itself, so they
get no sidecar; their consolidated file does.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.plugins import CheckpointIO

from train.runs.checkpoints import CheckpointError, sidecar_of, unreadable, verify_checksum, write_checksum

_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ChecksumCheckpointIO(CheckpointIO):
    """Delegates to ``inner``; adds the sidecar on save and checks it on load."""

    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        local = _local_file(path)
        if local is not None:  # a stale sidecar must not outlive the file it described
            sidecar_of(local).unlink(missing_ok=True)
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        if local is not None and local.is_file():
            write_checksum(local)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(path, (str, Path)) and is_remote(str(path)):
            raise CheckpointError(
                f"checkpoint {path} is remote; it is not loaded (it would be unpickled unchecked): "
                "download it yourself and pass the local file"
            )
        local = _local_file(path)
        if local is None:
            return self.inner.load_checkpoint(path, *args, **kwargs)
        verify_checksum(local)
        try:
            return self.inner.load_checkpoint(path, *args, **kwargs)
        except (FileNotFoundError, PermissionError):
            raise
        except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
            raise unreadable(local, exc) from exc  # not torch's advice to load it unsafely

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)
        local = _local_file(path)
        if local is not None:
            sidecar_of(local).unlink(missing_ok=True)

    def teardown(self) -> None:
        self.inner.teardown()


def checksum_checkpoints(trainer: pl.Trainer) -> None:
    """Wrap ``trainer``'s checkpoint I/O once (call after building the trainer)."""
    strategy = trainer.strategy
    if not isinstance(strategy.checkpoint_io, ChecksumCheckpointIO):
        strategy.checkpoint_io = ChecksumCheckpointIO(strategy.checkpoint_io)


def is_remote(path: str) -> bool:
    """Whether Lightning would fetch ``path`` (a URL: ``http...``, ``s3://`` and the like)."""
    return path.startswith("http") or bool(_REMOTE.match(path))


def _local_file(path: Any) -> Path | None:
    """``path`` as a local path, or ``None`` for URLs and file objects."""
    if not isinstance(path, (str, Path)) or is_remote(str(path)):
        return None
    return Path(path)
