"""callbacks=averaged: an EMA of epoch-end weights is validated, checkpointed and tested."""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
import torch

from tests.helpers import tiny_config
from train.runs.checkpoints import load_checkpoint, load_weights, model_state
from train.evaluation import evaluate
from train.serving import load_recommender
from train.training.run import train
from train.training.weight_averaging import EpochEMA

DECAY = 0.5


def _checkpoints(run_dir: Path) -> list[dict]:
    files = sorted((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    return [load_checkpoint(f) for f in files]


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("averaged")
    cfg = tiny_config(
        run_dir, "model=gmf", "callbacks=averaged", f"callbacks.weight_averaging.decay={DECAY}",
        "trainer.max_epochs=4", "model.datamodule.batch_size=64",
        # Slow enough to improve every epoch, so the tested checkpoint is a real average.
        "model.task.optimizer.lr=0.0002",
        "callbacks.model_checkpoint.save_top_k=-1", "callbacks.early_stopping.patience=10",
    )
    train(cfg)
    return run_dir


def test_each_checkpoint_holds_the_ema_of_the_epoch_end_weights(averaged_run: Path) -> None:
    ckpts = _checkpoints(averaged_run)
    assert len(ckpts) == 4
    expected: dict[str, torch.Tensor] | None = None
    for epoch, ckpt in enumerate(ckpts):
        raw = ckpt["current_model_state"]  # the weights training had reached at this epoch's end
        expected = dict(raw) if expected is None else {k: DECAY * expected[k] + (1 - DECAY) * raw[k] for k in raw}
        for name, value in expected.items():
            torch.testing.assert_close(ckpt["state_dict"][name], value, msg=f"epoch {epoch}: {name}")
        if epoch > 0:  # the average really differs from the raw weights
            assert not torch.equal(ckpt["state_dict"]["model.user_emb.weight"], raw["model.user_emb.weight"])


def test_validation_and_test_score_the_averaged_weights(averaged_run: Path) -> None:
    model, run = load_recommender(averaged_run)
    evaluator = hydra.utils.instantiate(run.cfg.eval)
    for ckpt in _checkpoints(averaged_run):
        monitored = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
        model.load_state_dict(model_state(ckpt))
        # The epoch's own validation already saw that epoch's average (no off-by-one).
        assert evaluate(model, run.data, "val", evaluator)["ndcg@10"] == pytest.approx(
            float(monitored["current_score"]), abs=1e-6)
    saved = json.loads((averaged_run / "metrics.json").read_text())
    assert "epoch000" not in saved["best_checkpoint"]  # else average == raw weights
    load_weights(model, saved["best_checkpoint"])
    averaged = evaluate(model, run.data, "test", evaluator)
    assert averaged["ndcg@10"] == pytest.approx(saved["test/ndcg@10"], abs=1e-6)
    raw = load_checkpoint(saved["best_checkpoint"])["current_model_state"]
    model.load_state_dict(model_state(raw))
    # The raw weights score differently, so the run's test did load the average.
    assert evaluate(model, run.data, "test", evaluator)["ndcg@10"] != pytest.approx(averaged["ndcg@10"], abs=1e-6)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_outside_zero_one_is_refused_with_the_fix(decay: float) -> None:
    with pytest.raises(ValueError, match=r"weight_averaging.decay must be in \[0, 1\)"):
        EpochEMA(decay)


def test_resuming_a_fit_restores_the_average_and_the_raw_weights(averaged_run: Path, tmp_path: Path) -> None:
    last = load_checkpoint(averaged_run / "checkpoints" / "last.ckpt")
    cfg = tiny_config(
        tmp_path, "model=gmf", "callbacks=averaged", f"callbacks.weight_averaging.decay={DECAY}",
        "trainer.max_epochs=5", "model.datamodule.batch_size=64", "model.task.optimizer.lr=0.0002",
        "callbacks.model_checkpoint.save_top_k=-1", "callbacks.early_stopping.patience=10",
        f"ckpt_path={averaged_run / 'checkpoints' / 'last.ckpt'}",
    )
    train(cfg)
    resumed = load_checkpoint(tmp_path / "checkpoints" / "best-epoch004.ckpt")
    raw = resumed["current_model_state"]
    # One more epoch folds the new raw weights into the restored average.
    for name, value in raw.items():
        expected = DECAY * last["state_dict"][name] + (1 - DECAY) * value
        torch.testing.assert_close(resumed["state_dict"][name], expected, msg=name)
