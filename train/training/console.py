"""What a training run prints: a parameter summary, a progress bar with the monitored
validation metric, and third-party noise silenced at its source, in one place.

Each silenced message is matched exactly (text, category and emitting module), so any
other warning from the same libraries still shows.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from torch import nn

log = logging.getLogger(__name__)

EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag)
# (message regex, category, emitting module regex) of warnings with nothing to act on.
QUIET_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # Lightning's own pytree helper still builds a LeafSpec; torch deprecated the class.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\.utilities\._pytree"),
    # DeepSpeed's ZeRO all-gathers call the collective torch renamed.
    (r"`torch\.distributed\.all_gather_into_tensor` is deprecated", FutureWarning, r"torch\.distributed\.c10d_logger"),
)
# Lightning's product tips (litlogger, litmodels), logged at INFO on every run.
LIGHTNING_TIP = "💡 Tip:"
LIGHTNING_RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
# setuptools' compiler echoes each gcc command at INFO when DeepSpeed probes its ops.
COMPILER_LOGGER = "compilers"


# -- third-party noise ------------------------------------------------------------------
class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP)


def quiet_third_party() -> None:
    """Silence the known messages that carry nothing to act on; safe to call again."""
    for message, category, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in LIGHTNING_RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    logging.getLogger(COMPILER_LOGGER).setLevel(logging.WARNING)
    if not torch.cuda.is_available():
        # DeepSpeed warns that it "fell back" to CPU whenever it has to guess the accelerator.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def quiet_loggers(loggers: Iterable[Any]) -> None:
    """Lightning passes W&B ``anonymous=None``, which W&B warns is a setting without effect;
    leaving it out is the same run. Call before the logger starts its experiment."""
    for logger in loggers:
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)


# -- parameter summary ------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterCounts:
    """Parameters split by kind: id/position tables (``nn.Embedding``/``EmbeddingBag``) and the rest."""

    embedding: int = 0
    dense: int = 0
    trainable: int = 0

    @property
    def total(self) -> int:
        return self.embedding + self.dense


def _numel(param: torch.Tensor) -> int:
    return int(getattr(param, "ds_numel", param.numel()))  # ZeRO-3 keeps only a shard locally


def count_parameters(module: nn.Module) -> ParameterCounts:
    """Each parameter once (a tied table counts once), embedding vs dense, and trainable."""
    tables = {id(p) for m in module.modules() if isinstance(m, EMBEDDING_MODULES) for p in m.parameters(recurse=False)}
    embedding = dense = trainable = 0
    for param in module.parameters():
        size = _numel(param)
        if id(param) in tables:
            embedding += size
        else:
            dense += size
        trainable += size if param.requires_grad else 0
    return ParameterCounts(embedding, dense, trainable)


def summary_table(model: nn.Module) -> str:
    """One row per top-level part of ``model`` and a total: parameters, embedding, dense."""
    rows = [(f"{name} ({type(child).__name__})", count_parameters(child)) for name, child in model.named_children()]
    own = sum(_numel(p) for p in model.parameters(recurse=False))
    if own:
        rows.append(("(own parameters)", ParameterCounts(dense=own, trainable=own)))
    total = count_parameters(model)
    rows.append(("total", total))
    width = max(len(name) for name, _ in rows)
    lines = [f"{type(model).__name__} parameters".ljust(width + 2) + f"{'total':>12}{'embedding':>12}{'dense':>12}"]
    lines += [f"  {name:<{width}}{c.total:>12,}{c.embedding:>12,}{c.dense:>12,}" for name, c in rows]
    megabytes = sum(_numel(p) * p.element_size() for p in model.parameters()) / 2**20
    lines.append(f"  {total.trainable:,} trainable, {megabytes:.1f} MB")
    return "\n".join(lines)


class ParameterSummary(pl.Callback):
    """Logs :func:`summary_table` of the task's recommender once, on rank zero, when fitting starts.

    Replaces Lightning's layer table: a recommender's size is mostly its embedding
    tables, which that table does not separate from the dense layers.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            model = pl_module.model if isinstance(getattr(pl_module, "model", None), nn.Module) else pl_module
            log.info("\n%s", summary_table(model))


def _without_version(metrics: dict[str, Any]) -> dict[str, Any]:
    metrics.pop("v_num", None)  # the logger's run version: the same on every line, and in the run folder
    return metrics


class RichBar(RichProgressBar):
    """Lightning's Rich progress bar without ``v_num``."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


class TextBar(TQDMProgressBar):
    """Lightning's tqdm progress bar (no ``rich`` installed) without ``v_num``."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


def console_callbacks(trainer_cfg: Any) -> list[pl.Callback]:
    """:class:`ParameterSummary` and the progress bar, as ``trainer.enable_model_summary`` and
    ``trainer.enable_progress_bar`` ask; pass ``enable_model_summary=False`` to the trainer."""
    callbacks: list[pl.Callback] = []
    if trainer_cfg.get("enable_model_summary", True):
        callbacks.append(ParameterSummary())
    if trainer_cfg.get("enable_progress_bar", True):
        callbacks.append(RichBar() if importlib.util.find_spec("rich") else TextBar())
    return callbacks
