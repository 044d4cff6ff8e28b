"""The global random generators, saved in every checkpoint and restored where training resumes.

Most randomness in a run is already a function of (seed, epoch, batch, step, rank): data
order (``data_modules/batching.py``), negatives and cloze masks (per batch key), sampled
losses (per step), curriculum pools and hard negatives (per epoch/step). What is left is
the process-wide generators: dropout draws from torch's (CPU, or CUDA on GPUs), and numpy
and Python ``random`` are saved too for anything that uses them. Without this callback a
resumed run trains on other dropout masks than the run that was never interrupted.

When the state is applied matters as much as what it holds. ``last.ckpt`` is written at
the end of epoch ``e`` (after its validation); the uninterrupted run then starts epoch
``e + 1``, whose batch iterator creation draws the DataLoader's base seed from torch's
generator. A resumed run does other things before that epoch (build the model, restore,
create the iterator once up front). So the state saved with the checkpoint is applied at
``on_train_epoch_start`` of epoch ``e + 1`` in *both* runs (a no-op in the uninterrupted
one unless something drew in between), followed by the iterator creations the
uninterrupted run performs after the save (:func:`iterators_to_replay`). Each rank keeps
its own state (ranks draw different amounts: their batches differ in length); rank 0
collects them all for the checkpoint. States are tensors and plain numbers, so
checkpoints still load with ``weights_only=True``.

Checkpoints written mid-epoch (``val_check_interval < 1``, ``every_n_train_steps``)
resume with the right data order but not the same dropout draws.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.trainer.states import TrainerFn

log = logging.getLogger(__name__)
State = dict[str, Any]


# -- one process's generators -----------------------------------------------------------
def capture() -> State:
    """This process's torch (CPU and CUDA), numpy and Python ``random`` states."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }


def restore(state: State) -> None:
    """Set this process's generators to ``state`` (from :func:`capture`)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np_state = state["numpy"]
    keys = np_state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((np_state["kind"], keys, np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(int(v) for v in py_state["state"].tolist()), py_state["gauss_next"]))


def gather(state: State) -> list[State]:
    """Every rank's state, in rank order (all ranks call this: Lightning saves on all ranks)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


# -- where the uninterrupted run goes after the save --------------------------------------
def iterators_to_replay(trainer: pl.Trainer) -> int:
    """How often the training batch iterator must be created after the restore, so that
    its draws from torch's generator match the uninterrupted run.

    After the end-of-epoch save, the uninterrupted run creates this epoch's iterator when
    the dataloader is reloaded (``reload_dataloaders_every_n_epochs``, before
    ``on_train_epoch_start``: the restore undoes that draw) and again when the epoch loop
    starts (after it). A resumed run created its iterator before the restore, and its
    epoch loop does not create another (Lightning's own condition, mirrored here).
    """
    epoch, every = trainer.current_epoch, trainer.reload_dataloaders_every_n_epochs
    replays = int(bool(every) and epoch % every == 0)
    fit_loop = trainer.fit_loop
    epoch_loop_creates = epoch > 0 and not fit_loop.is_resuming and not fit_loop.epoch_loop.restarting
    return replays + (0 if epoch_loop_creates else 1)


def replay_iterator_creation(trainer: pl.Trainer, times: int) -> None:
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    for _ in range(times if fetcher is not None else 0):
        iter(fetcher)


class RandomState(pl.Callback):
    """Saves every rank's generators with each checkpoint; applies them when the next
    epoch starts, in the uninterrupted run and in one resumed from that checkpoint alike."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self.pending: State | None = None  # what the latest checkpoint holds

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> State:
        trainer = self._trainer
        if trainer is None:
            return {}
        fitting = trainer.state.fn == TrainerFn.FITTING
        end_of_epoch = fitting and bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        snapshot = {"epoch": trainer.current_epoch, "end_of_epoch": end_of_epoch, "ranks": gather(capture())}
        self.pending = snapshot
        return snapshot

    def load_state_dict(self, state_dict: State) -> None:
        self.pending = dict(state_dict) if state_dict else None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        snapshot, self.pending = self.pending, None
        if not snapshot or not snapshot["end_of_epoch"] or snapshot["epoch"] != trainer.current_epoch - 1:
            return
        ranks = snapshot["ranks"]
        if len(ranks) != trainer.world_size:
            log.warning("the checkpoint holds random states of %d ranks, this run has %d: resumed dropout "
                        "draws differ from the interrupted run's", len(ranks), trainer.world_size)
            return
        restore(ranks[trainer.global_rank])
        replay_iterator_creation(trainer, iterators_to_replay(trainer))
