"""debug=fast_dev_run|overfit|limit|profiler: each composes and runs on tiny data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.helpers import CONF_DIR, tiny_config
from train.serving.loading import load_recommender
from train.training.config_checks import ConfigError, check_config
from train.training.overfit import OverfitBatches
from train.training.run import train

TINY = ("model=gmf", "num_threads=1")


def test_every_debug_option_is_tested() -> None:
    assert {p.stem for p in (Path(CONF_DIR) / "debug").glob("*.yaml")} == {"fast_dev_run", "overfit", "limit", "profiler"}


def test_debug_wins_over_an_experiment() -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=ncf_ml1m", "debug=limit"])
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 5


def test_fast_dev_run_runs_without_a_best_checkpoint(tmp_path: Path) -> None:
    metrics = train(tiny_config(tmp_path, *TINY, "debug=fast_dev_run"))
    assert metrics["best_checkpoint"] is None and 0.0 <= metrics["test/ndcg@10"] <= 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"] is None
    load_recommender(tmp_path)  # the run stays usable by infer/serve/evaluate


def test_overfit_trains_on_the_same_few_batches(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, *TINY, "debug=overfit", "trainer.max_epochs=6", "callbacks.overfit.batches=1",
                      "model.task.optimizer.lr=0.05")
    losses: list[float] = []
    report = OverfitBatches.on_train_end

    def keep_losses(self: OverfitBatches, trainer, module) -> None:  # the callback's record per epoch
        losses.extend(self.losses)
        report(self, trainer, module)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OverfitBatches, "on_train_end", keep_losses)
        metrics = train(cfg)
    assert metrics["epochs"] == 6 and len(losses) == 6
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("value", ["2", "0.5"])
def test_lightnings_overfit_batches_names_debug_overfit(tmp_path: Path, value: str) -> None:
    """Lightning's sampler swap would fail at the first batch with an AttributeError."""
    with pytest.raises(ConfigError, match=f"overfit_batches={value}.*debug=overfit"):
        check_config(tiny_config(tmp_path, *TINY, "model=sasrec", f"+trainer.overfit_batches={value}"))
    check_config(tiny_config(tmp_path, *TINY, "+trainer.overfit_batches=0"))


def test_limit_runs_one_short_epoch(tmp_path: Path) -> None:
    metrics = train(tiny_config(tmp_path, *TINY, "debug=limit", "trainer.limit_train_batches=2"))
    assert metrics["epochs"] == 1 and Path(metrics["best_checkpoint"]).is_file()


def test_profiler_writes_its_report_into_the_run_dir(tmp_path: Path) -> None:
    train(tiny_config(tmp_path, *TINY, "debug=profiler"))
    report = tmp_path / "fit-profiler.txt"
    assert report.is_file() and "run_training_epoch" in report.read_text()
