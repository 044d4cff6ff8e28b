"""Pictures of a run in ``<run dir>/plots/``: loss, validation metrics, learning rate, curriculum.

A PNG next to ``metrics.json`` is what a person opens first; a tracker needs a login and
a CSV log needs a notebook. :class:`TrainingPlots` records each epoch's values from
``trainer.callback_metrics`` (what the task and the curriculum logged) and the optimizers'
learning rates, and writes

- ``history.csv``: one row per epoch (``epoch``, ``step``, ``elapsed_s``, ``train/loss``,
  ``lr``, every ``val/*``, every ``curriculum/*``), always, matplotlib or not;
- ``steps.csv``: the training loss and learning rate per step (thinned on long runs);
- ``loss.png``, ``val_metrics.png``, ``lr.png`` and, with a curriculum, ``curriculum.png``
  (these need matplotlib: ``pip install 'recflow[plots]'``).

Only rank zero records and writes, and nothing is logged, so no metric changes. When a
W&B logger is attached, the figures go to it as images at the end of ``fit``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.trainer.states import TrainerFn

from train.extras import MissingExtraError, require

log = logging.getLogger(__name__)

HISTORY = "history.csv"
STEPS = "steps.csv"
FIRST_COLUMNS = ("epoch", "step", "elapsed_s", "train_batches")
COLUMN_GROUPS = ("train/", "lr", "val/", "curriculum/")  # history.csv column order after FIRST_COLUMNS
POOL_KEYS = ("curriculum/competence", "curriculum/active_fraction")
POOL_LABELS = {"curriculum/competence": "competence", "curriculum/active_fraction": "active fraction (pool / all examples)"}
Row = dict[str, float]


class TrainingPlots(pl.Callback):
    """Writes ``dirpath/history.csv`` every epoch and redraws the figures after validations.

    ``monitor`` marks the best epoch on the validation figure. Figures are redrawn after
    a validation at most every ``redraw_every_s`` seconds (short epochs would otherwise
    spend their time drawing) and always at the end of ``fit``. The per-step series keeps
    at most about ``max_step_points`` points (every 2nd, 4th, ... step on long runs).
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        monitor: str | None = None,
        redraw_every_s: float = 10.0,
        max_step_points: int = 5000,
    ) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.redraw_every_s = redraw_every_s
        self.max_step_points = max(2, max_step_points)
        self.rows: list[Row] = []
        self.steps: list[Row] = []
        self._stride = 1  # record every _stride-th batch
        self._batches = 0  # batches seen (all epochs)
        self._pending: list[tuple[int, torch.Tensor, Row]] = []  # this epoch's sampled steps
        self._step = 0
        self._lr: Row = {}
        self._epoch_batches = 0
        self._validated = False
        self._started = time.perf_counter()
        self._offset = 0.0  # elapsed seconds before a resume
        self._last_draw = 0.0
        self._warned = False

    # -- recording ----------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = self._last_draw = time.perf_counter()
        self._offset = self.rows[-1].get("elapsed_s", 0.0) if self.rows else 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_batches, self._validated = 0, False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.is_global_zero:  # the step this batch counts towards and the rate it steps with
            self._step, self._lr = trainer.global_step, learning_rates(trainer.optimizers)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.is_global_zero:
            return
        self._epoch_batches += 1
        self._batches += 1
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and (self._batches - 1) % self._stride == 0:
            # Lightning divides the loss by the accumulation; kept on device until the epoch ends
            self._pending.append((self._step, loss.detach() * trainer.accumulate_grad_batches, self._lr))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not _fitting(trainer):
            return
        metrics = trainer.callback_metrics  # read on every rank, as Lightning's own callbacks do
        if not trainer.is_global_zero:
            return
        self._flush_steps()  # before a checkpoint saves this state
        row = self._row(trainer.current_epoch)
        row.update({k: v for k, v in scalars(metrics).items() if k.startswith("val/")})
        row.update(step=trainer.global_step, elapsed_s=self._elapsed())
        self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics  # the epoch's reduced values (train/loss_epoch, ...)
        if not trainer.is_global_zero:
            return
        self._flush_steps()
        row = self._row(trainer.current_epoch)
        row.update(epoch_values(metrics))
        row.update(self._lr or learning_rates(trainer.optimizers))
        row.update(step=trainer.global_step, elapsed_s=self._elapsed(), train_batches=self._epoch_batches)
        self.write_csv()
        if self._validated and time.perf_counter() - self._last_draw >= self.redraw_every_s:
            self.safe_draw()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._flush_steps()
            self.write_csv()
            figures = self.safe_draw()
            try:
                upload(trainer.loggers, figures, trainer.global_step)
            except Exception:  # the run's results matter more than its pictures on W&B
                log.warning("plots/: sending the figures to W&B failed", exc_info=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """An interrupted run keeps the pictures of the epochs it finished."""
        if trainer.is_global_zero and self.rows:
            self.write_csv()
            self.safe_draw()

    def _row(self, epoch: int) -> Row:
        if not self.rows or self.rows[-1]["epoch"] != epoch:
            self.rows.append({"epoch": epoch})
        return self.rows[-1]

    def _elapsed(self) -> float:
        return round(self._offset + time.perf_counter() - self._started, 3)

    def _flush_steps(self) -> None:
        """One device sync per epoch: the sampled step losses become plain floats."""
        if not self._pending:
            return
        losses = torch.stack([loss.float() for _, loss, _ in self._pending]).cpu().tolist()
        self.steps += [{"step": step, "train/loss": value, **lr} for (step, _, lr), value in zip(self._pending, losses)]
        self._pending = []
        while len(self.steps) > self.max_step_points:
            self.steps, self._stride = self.steps[::2], self._stride * 2

    # -- output -------------------------------------------------------------------------
    def write_csv(self) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        write_rows(self.dirpath / HISTORY, self.rows)
        write_rows(self.dirpath / STEPS, self.steps)

    def safe_draw(self) -> list[Path]:
        """A figure that fails to draw costs a warning, never the run."""
        try:
            return self.draw()
        except Exception:
            log.warning("plots/: drawing failed; the run goes on", exc_info=True)
            return []

    def draw(self) -> list[Path]:
        """Redraw every figure the history has data for; [] without matplotlib."""
        self._last_draw = time.perf_counter()
        try:
            mpl = require("matplotlib.figure", "plots", "plots/", "matplotlib")
            agg = require("matplotlib.backends.backend_agg", "plots", "plots/", "matplotlib")
        except MissingExtraError as exc:
            if not self._warned:
                log.warning("%s", exc)
                self._warned = True
            return []
        self.dirpath.mkdir(parents=True, exist_ok=True)
        canvas = _Canvas(mpl.Figure, agg.FigureCanvasAgg)
        drawn = [
            draw_loss(canvas, self.rows, self.steps, self.dirpath / "loss.png"),
            draw_metrics(canvas, self.rows, self.dirpath / "val_metrics.png", self.monitor),
            draw_lr(canvas, self.rows, self.steps, self.dirpath / "lr.png"),
            draw_curriculum(canvas, self.rows, self.dirpath / "curriculum.png"),
        ]
        return [path for path in drawn if path is not None]

    # -- checkpoints: a resumed run keeps its earlier epochs ------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "steps": self.steps, "stride": self._stride, "batches": self._batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]
        self.steps = [dict(row) for row in state_dict.get("steps", [])]
        self._stride = int(state_dict.get("stride", 1))
        self._batches = int(state_dict.get("batches", 0))


def _fitting(trainer: pl.Trainer) -> bool:
    """A validation inside ``fit`` (not the sanity check, not ``trainer.validate``)."""
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


# -- values -------------------------------------------------------------------------------
def scalars(metrics: Mapping[str, Any]) -> Row:
    """Plain floats of the one-element values (tensors or numbers)."""
    out: Row = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def epoch_values(metrics: Mapping[str, Any]) -> Row:
    """An epoch's training-side values: ``x_epoch`` becomes ``x``, ``x_step`` is dropped.

    Validation and test values are left out: after an epoch without validation they
    would be the previous validation's.
    """
    out: Row = {}
    values = scalars(metrics)
    for name, value in values.items():
        if name.startswith(("val/", "test/")) or name.endswith("_step"):
            continue
        if name.endswith("_epoch"):
            out[name[: -len("_epoch")]] = value
        elif name + "_epoch" not in values:
            out.setdefault(name, value)
    return out


def learning_rates(optimizers: Sequence[Any]) -> Row:
    """``lr`` for one optimizer with one parameter group, else ``lr/<optimizer>/<group>``."""
    groups = [
        (i, j, group["lr"])
        for i, optimizer in enumerate(optimizers)
        for j, group in enumerate(getattr(optimizer, "param_groups", []))
        if "lr" in group
    ]
    if len(groups) == 1:
        return {"lr": float(groups[0][2])}
    return {f"lr/{i}/{j}": float(lr) for i, j, lr in groups}


def columns(rows: Iterable[Row]) -> list[str]:
    """The fixed columns, then train/, lr, val/ (by metric and k), curriculum/ and the rest."""
    seen = list(dict.fromkeys(key for row in rows for key in row))

    def rank(name: str) -> tuple:
        if name in FIRST_COLUMNS:
            return (FIRST_COLUMNS.index(name),)
        group = next((i for i, prefix in enumerate(COLUMN_GROUPS) if name.startswith(prefix)), len(COLUMN_GROUPS))
        return (len(FIRST_COLUMNS) + group, *(metric_key(name) if name.startswith("val/") else ()))

    return sorted(seen, key=rank)  # stable: appearance order within a group, val/ by metric and k


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """CSV with one column per key (empty where a row lacks it); replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(rows) or list(FIRST_COLUMNS[:1]), restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def upload(loggers: Iterable[Any], paths: Sequence[Path], step: int) -> None:
    """Each figure as ``plots/<name>`` to every W&B logger (wandb is imported only by it)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            for path in paths:
                logger.log_image(key=f"plots/{path.stem}", images=[str(path)], step=step)


# -- figures ------------------------------------------------------------------------------
class _Canvas:
    """Figures drawn with the Agg canvas directly: no pyplot, no global backend switch."""

    def __init__(self, figure_cls: Any, canvas_cls: Any) -> None:
        self.figure_cls, self.canvas_cls = figure_cls, canvas_cls

    def axes(self, panels: int, title: str, ncols: int = 3) -> tuple[Any, list[Any]]:
        ncols = min(ncols, panels)
        nrows = math.ceil(panels / ncols)
        fig = self.figure_cls(figsize=(4.6 * ncols + 0.4, 3.4 * nrows + 0.5), dpi=100, layout="constrained")
        self.canvas_cls(fig)
        axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
        for extra in axes[panels:]:
            extra.set_visible(False)
        fig.suptitle(title, fontsize=13)
        return fig, axes[:panels]

    @staticmethod
    def save(fig: Any, path: Path) -> Path:
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
        return path


def series(rows: Sequence[Row], key: str, x: str = "epoch") -> tuple[list[float], list[float]]:
    """(x, y) of the rows that have both."""
    pairs = [(row[x], row[key]) for row in rows if x in row and key in row and not math.isnan(row[key])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _label(ax: Any, title: str, xlabel: str, ylabel: str, legend: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


def _integer_epochs(ax: Any) -> None:
    ax.xaxis.get_major_locator().set_params(integer=True)


def draw_loss(canvas: _Canvas, rows: Sequence[Row], steps: Sequence[Row], path: Path) -> Path | None:
    epochs = series(rows, "train/loss")
    if not epochs[0] and not steps:
        return None
    fig, axes = canvas.axes(2 if steps else 1, "Training loss", ncols=2)
    if steps:
        ax = axes.pop(0)
        ax.plot(*series(steps, "train/loss", x="step"), lw=0.8, color="tab:blue", alpha=0.8, label="per step")
        _label(ax, "per step", "step", "loss")
    if axes:
        ax = axes[0]
        ax.plot(*epochs, marker="o", color="tab:orange", label="epoch mean")
        _label(ax, "per epoch (mean over its batches)", "epoch", "loss")
        _integer_epochs(ax)
    return canvas.save(fig, path)


METRIC_NAME = re.compile(r"^val/(?P<family>[^@]+)(?:@(?P<k>\d+))?$")


FAMILY_ORDER = ("hr", "ndcg", "mrr", "precision", "recall", "f1", "coverage")


def metric_key(name: str) -> tuple[int, str, int]:
    """Sort key of ``val/<family>@<k>``: known families in FAMILY_ORDER, then k ascending, no k last."""
    match = METRIC_NAME.match(name)
    if not match:
        return (len(FAMILY_ORDER) + 1, name, 0)
    family, k = match["family"], match["k"]
    position = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (position, family, int(k) if k else 1 << 30)


def metric_families(names: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """``val/ndcg@10`` -> {"ndcg": [("@10", "val/ndcg@10"), ...]}, k ascending; ``val/mrr`` -> ("all", ...)."""
    families: dict[str, list[tuple[str, str]]] = {}
    for name in sorted((n for n in names if METRIC_NAME.match(n)), key=metric_key):
        k = METRIC_NAME.match(name)["k"]
        families.setdefault(METRIC_NAME.match(name)["family"], []).append((f"@{k}" if k else "all", name))
    return families


def draw_metrics(canvas: _Canvas, rows: Sequence[Row], path: Path, monitor: str | None = None) -> Path | None:
    families = metric_families(columns(rows))
    if not families:
        return None
    title = "Validation metrics per epoch"
    best = _best(rows, monitor)
    if best is not None:
        title += f"  (best {monitor} = {best[1]:.4f} at epoch {int(best[0])})"
    fig, axes = canvas.axes(len(families), title)
    labels = dict.fromkeys(label for members in families.values() for label, _ in members)
    colors = {label: f"C{i}" for i, label in enumerate(labels)}  # one colour per k in every panel
    for ax, (family, members) in zip(axes, families.items()):
        for label, name in members:
            ax.plot(*series(rows, name), marker="o", ms=3, color=colors[label], label=label)
        if best is not None:  # the epoch the best checkpoint comes from, in every panel
            ax.axvline(best[0], color="gray", ls=":", lw=1, label="best epoch")
            if monitor in dict(members).values():
                ax.plot([best[0]], [best[1]], marker="*", ms=14, color="gold", mec="black", ls="none", label=monitor)
        _label(ax, family, "epoch", family)
        _integer_epochs(ax)
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    order = [label for label in [*labels, "best epoch", monitor] if label in handles]  # the ks first
    fig.legend([handles[label] for label in order], order, loc="outside right center", fontsize=9)
    return canvas.save(fig, path)


def _best(rows: Sequence[Row], monitor: str | None) -> tuple[float, float] | None:
    xs, ys = series(rows, monitor) if monitor else ([], [])
    if not ys:
        return None
    i = max(range(len(ys)), key=ys.__getitem__)  # first epoch with the highest value, as ModelCheckpoint keeps
    return xs[i], ys[i]


def draw_lr(canvas: _Canvas, rows: Sequence[Row], steps: Sequence[Row], path: Path) -> Path | None:
    per_step = bool(steps)
    source, x = (steps, "step") if per_step else (rows, "epoch")
    names = [name for name in columns(source) if name == "lr" or name.startswith("lr/")]
    if not names:
        return None
    fig, (ax,) = canvas.axes(1, "Learning rate")
    values = []
    for name in names:
        xs, ys = series(source, name, x=x)
        ax.plot(xs, ys, marker=None if per_step else "o", drawstyle="steps-post", label=name)
        values += ys
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False)
    title = "per step" if per_step else "per epoch"
    if values and min(values) == max(values):
        title += f" (constant {values[0]:g})"
    _label(ax, title, x, "learning rate", legend=len(names) > 1)
    _integer_epochs(ax)  # steps and epochs are both whole numbers
    return canvas.save(fig, path)


def draw_curriculum(canvas: _Canvas, rows: Sequence[Row], path: Path) -> Path | None:
    names = [name for name in columns(rows) if name.startswith("curriculum/")]
    if not names:
        return None
    pool = [name for name in POOL_KEYS if name in names]
    knobs = [name for name in names if name not in pool]
    panels = bool(pool) + len(knobs) + 1  # + the epoch length
    fig, axes = canvas.axes(panels, "Curriculum per epoch")
    if pool:
        ax = axes.pop(0)
        for name in pool:
            ax.plot(*series(rows, name), marker="o", ms=3, label=POOL_LABELS[name])
        ax.set_ylim(0, 1.05)
        _label(ax, "competence and training pool", "epoch", "fraction (mean over the epoch)", legend=True)
        _integer_epochs(ax)
    for ax, name in zip(axes, knobs):
        ax.plot(*series(rows, name), marker="o", ms=3)
        _label(ax, name.split("/", 1)[1].replace("_", " "), "epoch", "value (mean over the epoch)")
        _integer_epochs(ax)
    ax = axes[-1]
    ax.bar(*series(rows, "train_batches"), color="tab:gray")
    _label(ax, "epoch length", "epoch", "training batches (rank 0)")
    _integer_epochs(ax)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return canvas.save(fig, path)
