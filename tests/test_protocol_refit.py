"""protocol=refit: the validation rows are trained on, a fixed number of epochs is run and
the last checkpoint is tested (the protocol of code that trains on all but the last item)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.preprocessing import PreprocessConfig, preprocess
from tests.helpers import tiny_config
from train.evaluation import evaluate
from train.runs.checkpoints import load_checkpoint
from train.serving import load_recommender
from train.training.config_checks import ConfigError, check_config
from train.training.run import train

EPOCHS = 3


def histories_table() -> pd.DataFrame:
    """Two users of five and four items, one of two (too short for validation)."""
    rows = [(1, f"a{t}", t) for t in range(5)] + [(2, f"b{t}", t) for t in range(4)] + [(3, "c0", 0), (3, "c1", 1)]
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def split_of(data) -> dict[str, list[int]]:
    rows = data.interactions
    return {
        str(data.user_ids[u]): rows.loc[rows["user"] == u, "split"].tolist() for u in range(data.num_users)
    }


def test_validation_train_folds_each_second_last_item_into_training() -> None:
    holdout = preprocess(histories_table())
    refit = preprocess(histories_table(), {"validation": "train"})
    assert split_of(holdout) == {"1": [TRAIN] * 3 + [VAL, TEST], "2": [TRAIN] * 2 + [VAL, TEST], "3": [TRAIN] * 2}
    assert split_of(refit) == {"1": [TRAIN] * 4 + [TEST], "2": [TRAIN] * 3 + [TEST], "3": [TRAIN] * 2}
    assert refit.report["split"]["validation_rows_trained_on"] == 2
    assert refit.report["split_counts"] == {"train": 9, "val": 0, "test": 2}
    # The test rows and their context are the same either way: only training gains rows.
    np.testing.assert_array_equal(refit.targets(TEST)[1], holdout.targets(TEST)[1])
    for user in range(refit.num_users):
        np.testing.assert_array_equal(
            refit.histories(TRAIN).of(user), holdout.histories(TRAIN, VAL).of(user)
        )


def test_validation_mode_is_checked_and_kept_out_of_old_cache_keys() -> None:
    with pytest.raises(ValueError, match="preprocess.validation='none' is unknown"):
        PreprocessConfig(validation="none")
    assert "validation" not in PreprocessConfig().cache_settings()  # caches built before it stay valid
    assert PreprocessConfig(validation="train").cache_settings()["validation"] == "train"


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("refit")
    cfg = tiny_config(
        run_dir, "model=sasrec", "protocol=refit", f"trainer.max_epochs={EPOCHS}", "num_threads=1",
        "trainer.check_val_every_n_epoch=2",  # as the experiments set it: saving must not wait for it
    )
    check_config(cfg)
    train(cfg)
    return run_dir


def test_refit_trains_every_epoch_and_tests_the_last_checkpoint(refit_run: Path) -> None:
    metrics = json.loads((refit_run / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS
    assert not [k for k in metrics if k.startswith("val/")]  # nothing was validated
    assert Path(metrics["best_checkpoint"]).name == f"epoch{EPOCHS - 1:03d}.ckpt"
    tested = load_checkpoint(Path(metrics["best_checkpoint"]))["state_dict"]
    last = load_checkpoint(refit_run / "checkpoints" / "last.ckpt")["state_dict"]
    assert tested.keys() == last.keys()
    assert all(torch.equal(tested[k], last[k]) for k in tested)
    # The run's data trained on every validation row, and the reported test metrics are
    # those of the final model, re-evaluated from scratch.
    model, run = load_recommender(refit_run)
    assert not (run.data.column("split") == VAL).any()
    assert run.data.report["split"]["validation_rows_trained_on"] > 0
    again = evaluate(model, run.data, "test", hydra.utils.instantiate(run.cfg.eval))
    assert again["ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)


def test_checkpoint_curve_refuses_to_choose_without_validation_rows(refit_run: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "checkpoint_curve.py"
    spec = importlib.util.spec_from_file_location("checkpoint_curve", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit, match="trained on its validation rows"):
        module.curve(refit_run, ["ndcg@10"])


def test_trained_on_validation_with_a_monitor_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=sasrec", "data.preprocess.validation=train")
    with pytest.raises(ConfigError, match="protocol=refit"):
        check_config(cfg)


@pytest.mark.parametrize("limit", ["0", "0.0"])
def test_validation_switched_off_with_a_monitor_is_refused(tmp_path: Path, limit: str) -> None:
    """Lightning would train an epoch, then fail in early stopping or the final validate."""
    cfg = tiny_config(tmp_path, "model=sasrec", f"trainer.limit_val_batches={limit}")
    with pytest.raises(ConfigError, match="limit_val_batches=0 switches validation off.*protocol=refit"):
        check_config(cfg)
    check_config(tiny_config(tmp_path, "model=sasrec", "trainer.limit_val_batches=0.5"))
    check_config(tiny_config(tmp_path, "model=sasrec", "protocol=refit"))  # sets it to 0, monitor null


def test_a_split_without_validation_rows_names_refit_before_training(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=sasrec", "data.preprocess.split=ratio", "data.preprocess.ratios=[0.9,0.0,0.1]")
    check_config(cfg)
    with pytest.raises(ConfigError, match="no validation rows.*protocol=refit"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # refused before an epoch was spent
