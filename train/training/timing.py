"""A callback that measures training speed: seconds per epoch (validation excluded),
examples per second and the process's peak resident memory.

On in every run (conf/callbacks/default.yaml); ``callbacks.timer=null`` turns it off.
"""
from __future__ import annotations

import resource
import time

import pytorch_lightning as pl


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EpochTimer(pl.Callback):
    """Logs ``time/epoch_s``, ``time/examples_per_s`` and ``mem/peak_rss_mb`` each epoch
    (under DDP/DeepSpeed: the slowest rank, the summed throughput, the largest memory)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.examples = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.examples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.examples += len(batch["user"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        # Across ranks: the slowest rank's time and memory, the job's total throughput.
        pl_module.log_dict({"time/epoch_s": seconds, "mem/peak_rss_mb": peak_rss_mb()}, sync_dist=True, reduce_fx="max")
        pl_module.log("time/examples_per_s", self.examples / seconds, sync_dist=True, reduce_fx="sum")
