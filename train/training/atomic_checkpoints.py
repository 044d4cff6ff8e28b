"""Checkpoint writes that a kill at any moment cannot leave half-done.

Lightning's own save serialises into memory, writes the bytes to a temporary file in the
*system* temp folder and ``shutil.move``s it over the target: a rename when both sit on
one filesystem, a byte copy into the target when they do not (``/tmp`` on tmpfs), and
never an ``fsync``. A kill during that copy leaves a truncated ``last.ckpt``, and a power
cut can leave an empty one. :class:`AtomicCheckpointIO` writes ``<file>.part`` next to
the target, fsyncs it, ``os.replace``s it over the target and fsyncs the folder: the
target is always either the previous checkpoint or the new one, whole.

DeepSpeed checkpoints are folders written by every rank, and DeepSpeed's ``latest`` tag
file does not protect them: Lightning always saves under the same tag (``checkpoint``),
so ``latest`` never changes, and rank 0 writes it without waiting for the other ranks'
shards. :func:`publish_folder` is the folder counterpart: the ranks write
``<folder>.part`` and, once all have finished, rank 0 swaps it in with one atomic
``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two renames, with a moment in which only
``<folder>.old`` exists).
"""
from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

PART = ".part"
OLD = ".old"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def part_path(path: str | Path) -> Path:
    """``<path>.part``: where a checkpoint is written before it replaces ``path``."""
    path = Path(path)
    return path.with_name(path.name + PART)


def is_local(path: Any) -> bool:
    """A local file path (not a URL such as ``s3://``, which fsspec writes its own way)."""
    return isinstance(path, (str, Path)) and "://" not in str(path)


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` into ``<path>.part``, fsync, then replace ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    with open(part, "wb") as handle:
        torch.save(checkpoint, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, path)
    fsync_folder(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's default checkpoint I/O, with :func:`write_atomically` for local files."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        write_atomically(checkpoint, Path(path))


def atomic_checkpoints(trainer: pl.Trainer) -> None:
    """Use :class:`AtomicCheckpointIO` where the trainer has Lightning's default I/O
    (call before wrapping the I/O in anything else; a configured plugin is kept)."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


# -- folders (DeepSpeed) ------------------------------------------------------------------
def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` (and the folders themselves) to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_folder(Path(root))


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); ``False`` where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0


def publish_folder(part: Path, target: Path) -> None:
    """Make the finished folder ``part`` the checkpoint ``target`` (replacing any old one)."""
    fsync_tree(part)
    if not target.exists():
        os.replace(part, target)
    elif exchange(part, target):
        remove_tree(part)  # now holds the previous checkpoint
    else:
        old = target.with_name(target.name + OLD)
        remove_tree(old)
        os.replace(target, old)
        os.replace(part, target)
        remove_tree(old)
    fsync_folder(target.parent)
