"""<run dir>/plots/: the history equals what the task logged, the figures open, nothing changes a metric."""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from tests.helpers import tiny_config
from train.training.plots import TrainingPlots, upload
from train.training.run import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ("model=gmf", "model.datamodule.batch_size=64", "num_threads=1", "callbacks.early_stopping.patience=10")
EPOCHS = 3


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


def assert_picture(path: Path, min_size: tuple[int, int] = (480, 360)) -> None:
    """A PNG that opens, is at least ``min_size`` pixels and is not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], (path.name, image.size)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.var() > 0, f"{path.name} is blank"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain run (CSV logger) and a curriculum run, a few epochs each on tiny data."""
    root = tmp_path_factory.mktemp("runs")
    had_wandb = "wandb" in sys.modules
    out = {"plain": root / "plain", "curriculum": root / "curriculum"}
    train(tiny_config(out["plain"], *TINY, f"trainer.max_epochs={EPOCHS}", "logger=csv"))
    train(tiny_config(out["curriculum"], *TINY, f"trainer.max_epochs={EPOCHS}", "curriculum=popularity"))
    if not had_wandb:  # the figures go to W&B only through a WandbLogger
        assert "wandb" not in sys.modules
    return out


def test_history_equals_what_the_task_logged(runs: dict[str, Path]) -> None:
    run = runs["plain"]
    history = read_csv(run / "plots" / "history.csv")
    assert [row["epoch"] for row in history] == list(range(EPOCHS))
    logged = pd.read_csv(run / "csv" / "metrics.csv")
    val = logged["val/ndcg@10"].dropna().tolist()[:EPOCHS]  # fit's validations come before validate()'s
    assert [row["val/ndcg@10"] for row in history] == pytest.approx(val, abs=1e-7)
    loss = logged["train/loss_epoch"].dropna().tolist()
    assert [row["train/loss"] for row in history] == pytest.approx(loss, abs=1e-7)
    # the best epoch's value is what metrics.json reports for the tested checkpoint
    saved = json.loads((run / "metrics.json").read_text())
    assert max(row["val/ndcg@10"] for row in history) == pytest.approx(saved["val/ndcg@10"], abs=1e-6)
    assert all(row["lr"] == pytest.approx(1e-3) for row in history)  # conf/model/gmf.yaml's Adam
    elapsed = [row["elapsed_s"] for row in history]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    steps = read_csv(run / "plots" / "steps.csv")
    assert len(steps) == sum(row["train_batches"] for row in history) == history[-1]["step"]
    # per step, the same loss the task logged (every log_every_n_steps), at the same step
    per_step = logged.dropna(subset=["train/loss_step"])
    by_step = {row["step"]: row["train/loss"] for row in steps}
    assert len(per_step) >= 2
    for step, value in zip(per_step["step"], per_step["train/loss_step"]):
        assert by_step[step] == pytest.approx(value, abs=1e-6)


def test_figures_open_and_are_not_blank(runs: dict[str, Path]) -> None:
    plots = runs["plain"] / "plots"
    for name in ("loss.png", "val_metrics.png", "lr.png"):
        assert_picture(plots / name)
    assert not (plots / "curriculum.png").exists()  # no curriculum, no figure
    assert_picture(plots / "val_metrics.png", min_size=(1200, 700))  # hr, ndcg, mrr, precision, f1, coverage: 3 x 2


def test_curriculum_history_has_competence_per_epoch(runs: dict[str, Path]) -> None:
    history = read_csv(runs["curriculum"] / "plots" / "history.csv")
    competence = [row["curriculum/competence"] for row in history]
    pool = [row["curriculum/active_fraction"] for row in history]
    assert len(competence) == EPOCHS and all(0 < c <= 1 for c in competence)
    assert all(a < b for a, b in zip(competence, competence[1:]))  # conf/curriculum/popularity.yaml ramps over 5 epochs
    assert all(a < b for a, b in zip(pool, pool[1:])) and pool[0] < 0.5
    batches = [row["train_batches"] for row in history]
    assert batches == sorted(batches) and batches[0] < batches[-1]  # epoch length follows the pool
    assert_picture(runs["curriculum"] / "plots" / "curriculum.png")


def test_plots_change_no_metric_and_null_turns_them_off(runs: dict[str, Path], tmp_path: Path) -> None:
    metrics = train(tiny_config(tmp_path, *TINY, f"trainer.max_epochs={EPOCHS}", "logger=csv", "callbacks.plots=null"))
    assert not (tmp_path / "plots").exists()
    with_plots = json.loads((runs["plain"] / "metrics.json").read_text())
    for key, value in metrics.items():
        if key.startswith(("val/", "test/")) or key == "epochs":
            assert with_plots[key] == value, key


def test_resumed_run_keeps_the_earlier_epochs(runs: dict[str, Path], tmp_path: Path) -> None:
    last = runs["plain"] / "checkpoints" / "last.ckpt"
    train(tiny_config(tmp_path, *TINY, f"trainer.max_epochs={EPOCHS + 1}", f"ckpt_path={last}"))
    before = read_csv(runs["plain"] / "plots" / "history.csv")
    after = read_csv(tmp_path / "plots" / "history.csv")
    assert [row["epoch"] for row in after] == list(range(EPOCHS + 1))
    assert [row["val/ndcg@10"] for row in after[:EPOCHS]] == [row["val/ndcg@10"] for row in before]
    assert after[-1]["elapsed_s"] > after[EPOCHS - 1]["elapsed_s"]


def test_without_matplotlib_the_history_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib...` now fails
    with caplog.at_level(logging.WARNING, logger="train.training.plots"):
        train(tiny_config(tmp_path, *TINY, "trainer.max_epochs=2", "+callbacks.plots.redraw_every_s=0"))
    assert [row["epoch"] for row in read_csv(tmp_path / "plots" / "history.csv")] == [0, 1]
    assert not list((tmp_path / "plots").glob("*.png"))
    warnings = [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()]
    assert warnings == ["plots/ needs matplotlib: pip install 'recflow[plots]'"]  # once, not per drawing


class RecordingWandb(WandbLogger):
    """A WandbLogger that keeps what it is given instead of starting a W&B run."""

    def __init__(self) -> None:  # no W&B run
        self.images: list[tuple[str, list, int | None]] = []

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self.images.append((key, images, step))


def test_figures_go_to_wandb_loggers_only(runs: dict[str, Path]) -> None:
    paths = sorted((runs["plain"] / "plots").glob("*.png"))
    wandb, other = RecordingWandb(), object()
    upload([other, wandb], paths, step=7)
    assert wandb.images == [(f"plots/{p.stem}", [str(p)], 7) for p in paths]


def test_wandb_accepts_the_figures(runs: dict[str, Path], tmp_path: Path) -> None:
    """The real logger turns each PNG into a wandb.Image (a disabled run sends nothing)."""
    pytest.importorskip("wandb")
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled")
    try:
        upload([logger], sorted((runs["plain"] / "plots").glob("*.png")), step=3)
    finally:
        logger.experiment.finish()


def test_state_travels_in_checkpoints(tmp_path: Path) -> None:
    callback = TrainingPlots(tmp_path)
    callback.rows = [{"epoch": 0, "val/ndcg@10": 0.1, "elapsed_s": 1.5}]
    callback.steps = [{"step": 1, "train/loss": 0.7, "lr": 0.001}]
    restored = TrainingPlots(tmp_path)
    restored.load_state_dict(callback.state_dict())
    assert restored.rows == callback.rows and restored.steps == callback.steps


def test_compare_runs_overlays_real_runs(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "ndcg.png"
    script.main([str(runs["plain"]), str(runs["curriculum"]), "--out", str(out)])
    assert_picture(out)
    printed = capsys.readouterr().out
    best = max(read_csv(runs["plain"] / "plots" / "history.csv"), key=lambda row: row["val/ndcg@10"])
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line) for line in printed.splitlines())}
    assert rows["plain (gmf on synthetic)"][:2] == [f"{best['val/ndcg@10']:.4f}", str(int(best["epoch"]))]
    assert "curriculum (gmf on synthetic)" in rows
