"""The training entry: best checkpoint, metrics.json, config validation."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.building import build_with_data
from train.runs.checkpoints import load_weights
from train.training.config_checks import ConfigError, check_config
from train.evaluation import evaluate
from train.training.run import train
from tests.helpers import tiny_config

import hydra


def test_run_writes_metrics_of_the_best_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=gmf", "trainer.max_epochs=3", "model.datamodule.batch_size=64")
    metrics = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"] == "full" and saved["model"] == "gmf"
    for key in ("val/ndcg@10", "val/hr@10", "test/ndcg@10", "test/hr@10", "test/mrr", "test/coverage@10"):
        assert 0.0 <= saved[key] <= 1.0, key
    best = Path(saved["best_checkpoint"])
    assert best.exists() and best.parent == tmp_path / "checkpoints"

    # The reported test metrics are those of the best checkpoint, evaluated independently.
    data = hydra.utils.instantiate(cfg.data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    load_weights(model, best)
    direct = evaluate(model, data, "test", evaluator)
    assert direct["ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)
    assert direct["hr@10"] == pytest.approx(metrics["test/hr@10"], abs=1e-6)


def test_testing_switched_off_writes_the_validation_metrics_alone(tmp_path: Path) -> None:
    """``trainer.limit_test_batches=0`` (tuning on validation only): Lightning then returns no
    test results; the run still ends with metrics.json, and no test metric is invented."""
    cfg = tiny_config(tmp_path, "model=gmf", "trainer.max_epochs=1", "trainer.limit_test_batches=0")
    train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= saved["val/ndcg@10"] <= 1.0
    assert not [key for key in saved if key.startswith("test/")]


def test_popularity_baseline_ranks_by_training_counts(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=pop")
    metrics = train(cfg)
    data = hydra.utils.instantiate(cfg.data)
    counts = torch.as_tensor(data.item_popularity(), dtype=torch.float)
    users, targets = data.targets(2)
    known = data.histories(0, 1)
    hits = 0
    for u, t in zip(users, targets):  # brute force: rank target among unseen items by count
        scores = counts.clone()
        scores[torch.as_tensor(known.of(u))] = -1
        rank = int((scores >= scores[t]).sum()) - 1
        hits += rank < 10
    assert metrics["test/hr@10"] == pytest.approx(hits / len(users), abs=1e-6)


@pytest.mark.parametrize(
    "override, message",
    [("monitor=test/ndcg@10", "validation metric"), ("monitor=val/ndcg@50", "eval.ks"), ("trainer.max_epochs=0", "max_epochs"),
     ("callbacks=averaged trainer=deepspeed_zero2", "callbacks=averaged does not work with DeepSpeed")],
)
def test_bad_config_values_fail_fast(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(tiny_config(tmp_path, *override.split()))


def test_cli_rejects_unknown_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "train", "model=nosuchmodel", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode != 0
    assert "nosuchmodel" in result.stderr
