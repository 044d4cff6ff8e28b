"""scripts/checkpoint_curve.py: every kept checkpoint scored on val and test."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import tiny_config
from train.training.run import train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "checkpoint_curve.py"


def _script():
    spec = importlib.util.spec_from_file_location("checkpoint_curve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curve_has_one_row_per_epoch_and_the_val_choice_is_the_tested_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, "model=gmf", "trainer.max_epochs=3", "model.datamodule.batch_size=64",
        "callbacks.model_checkpoint.save_top_k=-1", "callbacks.early_stopping.patience=5",
    )
    train(cfg)
    script = _script()
    rows = script.curve(tmp_path, ["hr@10", "ndcg@10"])
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    chosen = max(rows, key=lambda r: r["val/ndcg@10"])
    # The run's own test loop scored the val-chosen checkpoint: the curve must agree.
    assert chosen["test/hr@10"] == pytest.approx(saved["test/hr@10"], abs=1e-6)
    assert chosen["test/ndcg@10"] == pytest.approx(saved["test/ndcg@10"], abs=1e-6)
    text = script.table(rows, "val/ndcg@10")
    assert f"chosen on val/ndcg@10: epoch {chosen['epoch']}" in text


def test_runs_without_per_epoch_checkpoints_get_told_how_to_keep_them(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit, match="save_top_k=-1"):
        _script().epoch_checkpoints(tmp_path)


def test_averaged_curve_matches_a_run_that_averaged_while_training(tmp_path: Path) -> None:
    common = ["model=gmf", "trainer.max_epochs=4", "model.datamodule.batch_size=64",
              "model.task.optimizer.lr=0.0002", "callbacks.early_stopping.patience=10"]
    raw_dir, averaged_dir = tmp_path / "raw", tmp_path / "averaged"
    train(tiny_config(raw_dir, *common, "callbacks.model_checkpoint.save_top_k=-1"))
    train(tiny_config(averaged_dir, *common, "callbacks=averaged", "callbacks.weight_averaging.decay=0.7"))
    # Averaging never changes training, so averaging the raw run's checkpoints afterwards
    # must reproduce what the averaging run validated and tested.
    rows = _script().curve(raw_dir, ["hr@10", "ndcg@10"], average=0.7)
    chosen = max(rows, key=lambda r: r["val/ndcg@10"])
    saved = json.loads((averaged_dir / "metrics.json").read_text())
    assert f"epoch{chosen['epoch']:03d}" in saved["best_checkpoint"]
    assert chosen["val/ndcg@10"] == pytest.approx(saved["val/ndcg@10"], abs=1e-5)
    assert chosen["test/ndcg@10"] == pytest.approx(saved["test/ndcg@10"], abs=1e-5)
    plain = _script().curve(raw_dir, ["ndcg@10"])
    assert plain[-1]["val/ndcg@10"] != pytest.approx(rows[-1]["val/ndcg@10"], abs=1e-6)
