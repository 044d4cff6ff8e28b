"""Test-only: SIGKILL a training process at a chosen point, and run the CLI in forked children.

``RECFLOW_KILL_AT`` names the point, read by :class:`KillAt` (added to a run with
``+callbacks.killer._target_=tests.kill_points.KillAt``):

- ``train_batch:E:B``   before training batch ``B`` of epoch ``E`` (mid-epoch)
- ``validation:E``      before the first validation batch of epoch ``E``
- ``after_last:E``      as soon as epoch ``E`` has written ``last.ckpt`` (and its checksum)
- ``writing_last:E``    while epoch ``E`` writes ``last.ckpt``, after half of its bytes
- ``after_fit``         once fitting ended (e.g. early stopping), before the best
                        checkpoint is validated and tested

``RECFLOW_KILL_GROUP=1`` kills the whole job (the torchrun launcher and every rank) rather
than this process alone; only global rank 0 pulls the trigger then.
"""
from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

KILL_AT = "RECFLOW_KILL_AT"
KILL_GROUP = "RECFLOW_KILL_GROUP"


def die() -> None:
    """SIGKILL: no exception handler, ``finally`` or atexit runs, as with ``kill -9``."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get(KILL_GROUP) == "1":
        kill_job()
    os.kill(os.getpid(), signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return children


def kill_job() -> None:
    """SIGKILL the launcher (torchrun) first, so it cannot react, then every rank it started.

    torchrun starts each rank in a session of its own, so one ``killpg`` does not reach them.
    """
    launcher = os.getppid()
    ranks = [pid for pid in children_of(launcher) if pid != os.getpid()]
    for pid in [launcher, *ranks]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def half_written_save(real_save: Callable[..., Any]) -> Callable[..., Any]:
    """A ``torch.save`` that writes half of the serialised bytes to its target, then dies."""

    def save(obj: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as handle:
                handle.write(data)
        else:
            target.write(data)
            target.flush()
        die()

    return save


class KillAt(pl.Callback):
    """Kills the process at the point ``RECFLOW_KILL_AT`` names (nothing when unset)."""

    def __init__(self) -> None:
        point = os.environ.get(KILL_AT, "")
        self.kind, *rest = point.split(":") if point else ("",)
        self.args = [int(value) for value in rest]

    def _armed(self, trainer: pl.Trainer, kind: str) -> bool:
        if self.kind != kind or trainer.sanity_checking:
            return False
        return trainer.is_global_zero or os.environ.get(KILL_GROUP) != "1"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.kind in ("writing_last", "after_last"):
            self._wrap_saves(trainer)

    def _wrap_saves(self, trainer: pl.Trainer) -> None:
        """Around epoch E's save of last.ckpt: swap ``torch.save`` for :func:`half_written_save`
        (``writing_last``), or die as soon as the save returned (``after_last``)."""
        io_plugin = trainer.strategy.checkpoint_io
        save_checkpoint, epoch = io_plugin.save_checkpoint, self.args[0]

        def save(checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            armed = Path(str(path)).name == "last.ckpt" and trainer.current_epoch == epoch
            if armed and self.kind == "writing_last":
                torch.save = half_written_save(torch.save)
            save_checkpoint(checkpoint, path, storage_options=storage_options)
            if armed:
                die()

        io_plugin.save_checkpoint = save

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._armed(trainer, "train_batch") and [trainer.current_epoch, batch_idx] == self.args:
            die()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._armed(trainer, "validation") and trainer.current_epoch == self.args[0] and batch_idx == 0:
            die()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._armed(trainer, "after_fit"):
            die()


# -- the CLI in a child forked from a process that has already imported it ------------------
PRELOAD = ["torch", "pytorch_lightning", "hydra", "train.cli.train", "train.training.run", "tests.kill_points"]


def run_cli(argv: Sequence[str], cwd: str, env: dict[str, str], log_file: str) -> None:
    """``recflow-train *argv`` in ``cwd`` with ``env`` set, output to ``log_file`` (a child's body)."""
    os.chdir(cwd)
    os.environ.update(env)
    handle = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    from train.cli.train import main

    sys.argv = ["recflow-train", *argv]
    main()
