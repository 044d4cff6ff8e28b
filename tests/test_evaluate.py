"""recflow-evaluate: a trained run scored again without Lightning."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF_DIR, tiny_config
from train.runs.checkpoints import CheckpointError
from train.serving.evaluate import EvaluationError, evaluate_run, output_path
from train.training.run import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GMF run: best and last checkpoints, metrics.json, artifacts/."""
    folder = tmp_path_factory.mktemp("run")
    train(tiny_config(folder, "model=gmf", "trainer.max_epochs=2", "num_threads=1"))
    return folder


def evaluate_cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train.cli.evaluate", *overrides], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def split_metrics(metrics: dict, *splits: str) -> dict:
    return {k: v for k, v in metrics.items() if k.split("/")[0] in splits and isinstance(v, float)}


def test_best_checkpoint_reproduces_metrics_json_exactly(run_dir: Path) -> None:
    saved = json.loads((run_dir / "metrics.json").read_text())
    metrics = evaluate_run(run_dir, "best", split="both")
    assert split_metrics(metrics, "val", "test") == split_metrics(saved, "val", "test")
    assert metrics["protocol"] == saved["protocol"] == "full"
    assert metrics["checkpoint"] == saved["best_checkpoint"]


def test_cli_writes_its_own_file_and_prints_the_table(run_dir: Path) -> None:
    before = (run_dir / "metrics.json").read_bytes()
    result = evaluate_cli(f"run={run_dir}")
    assert result.returncode == 0, result.stderr
    written = json.loads((run_dir / "evaluations" / "best_full.json").read_text())
    assert split_metrics(written, "test") == split_metrics(json.loads(before), "test")
    assert not split_metrics(written, "val")  # split=test by default
    assert "| test |" in result.stdout and "ndcg@10" in result.stdout
    assert (run_dir / "metrics.json").read_bytes() == before


def test_eval_option_gives_sampled_metrics(run_dir: Path) -> None:
    result = evaluate_cli(f"run={run_dir}", "eval=sampled", "eval.num_negatives=20", "ckpt=last")
    assert result.returncode == 0, result.stderr
    written = json.loads((run_dir / "evaluations" / "last_sampled-uniform-20.json").read_text())
    assert written["protocol"] == "sampled-uniform-20" and written["eval"]["protocol"] == "sampled"
    assert written["checkpoint"].endswith("last.ckpt")
    assert "test/hr@10" in written and not [k for k in written if k.startswith("test/coverage")]


def test_eval_config_in_process_matches_the_option(run_dir: Path) -> None:
    node = OmegaConf.merge(OmegaConf.load(Path(CONF_DIR) / "eval" / "default.yaml"), {"protocol": "sampled", "num_negatives": 20})
    metrics = evaluate_run(run_dir, "best", node, split="val")
    assert metrics["protocol"] == "sampled-uniform-20" and "val/ndcg@10" in metrics and "test/ndcg@10" not in metrics


def test_bad_checkpoint_path_is_a_clear_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="ckpt=.*no such checkpoint; use best, last or the path"):
        evaluate_run(run_dir, str(tmp_path / "missing.ckpt"))
    result = evaluate_cli(f"run={run_dir}", f"ckpt={tmp_path / 'missing.ckpt'}")
    assert result.returncode != 0
    assert "error: ckpt=" in result.stderr and "Traceback" not in result.stderr


def test_bad_split_and_out_are_refused(run_dir: Path) -> None:
    with pytest.raises(EvaluationError, match="split='train'"):
        evaluate_run(run_dir, split="train")
    with pytest.raises(EvaluationError, match="metrics.json holds what training measured"):
        output_path(run_dir, str(run_dir / "metrics.json"), "best", "full")


def test_evaluation_loads_without_lightning() -> None:
    code = (
        "import sys, train.serving.evaluate\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning') "
        "or m.startswith(('train.training', 'train.curriculum'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
