"""Hydra multirun with the Optuna sweeper optimises the validation metric, never test."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_DATA

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_optuna_sweep_picks_the_best_validation_run(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "train", "-m", "hparams_search=ncf_optuna",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
        *TINY_DATA, "trainer.max_epochs=1", "num_threads=1", "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={tmp_path}",
    ]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    result = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    runs = [json.loads((tmp_path / str(i) / "metrics.json").read_text()) for i in range(2)]
    best = max(runs, key=lambda m: m["val/ndcg@10"])
    assert result["best_value"] == pytest.approx(best["val/ndcg@10"], abs=1e-6)
    assert set(result["best_params"]) == {
        "model.task.optimizer.lr", "model.datamodule.num_negatives", "model.net.mf_dim", "model.task.embedding_l2",
    }
