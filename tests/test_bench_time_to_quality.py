"""Time to quality: the first validation at the threshold, and one tiny real run that stops there."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gpu_script_variable

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_ttq", REPO / "scripts" / "bench_time_to_quality.py")
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench
SPEC.loader.exec_module(bench)


def test_first_reaching_skips_epochs_without_validation_and_below_threshold(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,step,elapsed_s,train/loss,val/ndcg@10\n0,10,1.5,9.1,0.10\n1,20,3.0,8.0,\n"
        "2,30,4.5,7.5,0.18\n3,40,6.0,7.0,0.19\n"
    )
    row = bench.first_reaching(history, 0.18)
    assert (row["epoch"], row["elapsed_s"]) == ("2", "4.5")
    assert bench.first_reaching(history, 0.2) is None


@pytest.mark.slow
def test_tiny_run_stops_at_the_first_validation_reaching_the_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "seq.txt"
    data.write_text("\n".join(f"{u} {int(i)}" for u in range(1, 31) for i in rng.integers(1, 20, size=10)) + "\n")
    out = tmp_path / "ttq"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_time_to_quality.py"), "--data", str(data), "--models",
           "sasrec_ce", "--threshold", "0.0", "--max-epochs", "4", "--out", str(out), "--", "model.net.max_len=8",
           "model.net.hidden=8", "num_threads=1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((out / "time_to_quality.json").read_text())
    assert row["reached"] and row["epoch"] == 0  # threshold 0 is met by the first validation
    metrics = json.loads((out / "sasrec_ce-cpu-s0" / "metrics.json").read_text())
    assert metrics["epochs"] == 1  # early stopping ended the run there
    assert row["test_ndcg@10"] == metrics["test/ndcg@10"]


@pytest.mark.parametrize("experiment", [spec[0] for spec in bench.MODELS.values()])
def test_gpu_script_overrides_compose_with_every_experiment(experiment: str) -> None:
    """The GPU run cannot be retried cheaply: its overrides must compose and pass the checks here."""
    from hydra import compose, initialize_config_dir

    from train.training.config_checks import check_config

    overrides = gpu_script_variable("ON_GPU") + gpu_script_variable("BIG_BATCH") + gpu_script_variable("COMPILED")
    assert "model.datamodule.device_batches=true" in overrides
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", "data.path=x.txt", *overrides])
    check_config(cfg)
    assert cfg.model.datamodule.device_batches is True
    assert dict(cfg.model.task.lr_scaling) == {"rule": "sqrt", "reference_batch_size": 128}
    from train.training.compilation import compile_options

    assert compile_options(cfg.compile) == {"mode": "reduce-overhead"}
