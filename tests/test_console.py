"""What a run prints: parameter summary, progress-bar metrics, one data summary, no known noise."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import ClassVar

import hydra
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities._pytree import _tree_flatten

from recmodels.ncf import GMF
from recmodels.sasrec import SASRec
from train.training.console import count_parameters, quiet_loggers, quiet_third_party, summary_table
from train.training.resolvers import register_resolvers
from train.training.run import train
from tests.helpers import tiny_config


class KeepBarMetrics(pl.Callback):
    """Records what the progress bar had when fitting ended."""

    seen: ClassVar[list[dict]] = []

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        KeepBarMetrics.seen.append(dict(trainer.progress_bar_metrics))


def tiny_run(tmp_path: Path, *overrides: str) -> dict:
    cfg = tiny_config(tmp_path, "model=gmf", "trainer.max_epochs=1", "num_threads=1", *overrides)
    return train(cfg)


# -- parameter summary ------------------------------------------------------------------
def test_gmf_counts_match_a_hand_count() -> None:
    users, items, dim = 10, 7, 4
    counts = count_parameters(GMF(users, items, dim))
    assert counts.embedding == users * dim + items * dim
    assert counts.dense == dim + 1  # the output layer's weights and bias
    assert counts.trainable == counts.total


def test_sasrec_counts_match_a_hand_count() -> None:
    items, d, blocks, max_len = 30, 8, 2, 12
    model = SASRec(items, hidden=d, num_blocks=blocks, num_heads=2, max_len=max_len)
    per_block = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + 2 * (d * d + d)  # 2 LN, qkv, proj, ffn
    counts = count_parameters(model)
    assert counts.embedding == (items + 1) * d + max_len * d  # item table with padding row, positions
    assert counts.dense == blocks * per_block + 2 * d  # blocks and the final LayerNorm
    assert counts.total == sum(p.numel() for p in model.parameters())


def test_a_tied_table_counts_once_and_frozen_parameters_are_not_trainable() -> None:
    model = torch.nn.Module()
    model.table = torch.nn.Embedding(5, 3)
    model.head = torch.nn.Linear(3, 5, bias=False)
    model.head.weight = model.table.weight  # tied
    model.norm = torch.nn.LayerNorm(3)
    model.norm.requires_grad_(False)
    counts = count_parameters(model)
    assert (counts.embedding, counts.dense, counts.trainable) == (15, 6, 15)


def test_summary_table_rows_add_up() -> None:
    text = summary_table(GMF(10, 7, 4))
    assert "user_emb (Embedding)" in text and "out (Linear)" in text
    assert "total" in text and "73" in text and "68" in text  # 68 embedding + 5 dense


# -- one run's console ------------------------------------------------------------------
def test_run_logs_data_and_parameter_summaries_once_and_bar_shows_the_monitor(tmp_path: Path, caplog) -> None:
    target = "tests.test_console.KeepBarMetrics"
    keeper = hydra.utils.get_class(target)  # the class Hydra instantiates (pytest may import this file twice)
    keeper.seen.clear()
    with caplog.at_level(logging.INFO):
        tiny_run(tmp_path, f"+callbacks.keep_bar._target_={target}")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("interactions (train" in m for m in messages) == 1, messages
    assert sum("GMF parameters" in m for m in messages) == 1, messages
    assert not any(m.startswith("💡 Tip") for m in messages)  # Lightning's product tip
    assert any(m.startswith("GPU available") for m in messages)  # its other messages stay
    [bar] = keeper.seen
    assert "val/ndcg@10" in bar and "train/loss_step" in bar
    assert "val/hr@10" not in bar  # only what the callbacks watch


def test_no_sync_dist_warning_under_a_distributed_strategy(tmp_path: Path, recwarn) -> None:
    """Epoch values logged without sync_dist under DDP/DeepSpeed make Lightning warn once
    per metric; the validation metrics are global already and the epoch loss is synced."""
    register_resolvers()  # ${recflow.precision:} in the DDP trainer config
    try:
        metrics = tiny_run(tmp_path, "trainer=ddp_cpu", "trainer.devices=1")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert 0.0 <= metrics["val/ndcg@10"] <= 1.0
    assert not [str(w.message) for w in recwarn if "sync_dist" in str(w.message)]


# -- silenced at the source, real warnings kept -----------------------------------------
def test_known_warnings_are_silenced_and_others_still_show() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tree_flatten(1)  # Lightning builds a deprecated LeafSpec
        assert any("LeafSpec" in str(w.message) for w in caught), "the source no longer warns: drop the filter"
        caught.clear()
        quiet_third_party()
        _tree_flatten(1)
        warnings.warn_explicit("`torch.distributed.all_gather_into_tensor` is deprecated. Use x.", FutureWarning,
                               "c10d_logger.py", 83, module="torch.distributed.c10d_logger")
        assert caught == []
        # The same category from the same module with another message, and a user's warning, still show.
        warnings.warn_explicit("something else is deprecated", FutureWarning, "_pytree.py", 21,
                               module="pytorch_lightning.utilities._pytree")
        warnings.warn("a real problem", UserWarning)
        assert [str(w.message) for w in caught] == ["something else is deprecated", "a real problem"]


def test_quiet_third_party_settings(monkeypatch) -> None:
    monkeypatch.setenv("DS_ACCELERATOR", "x")  # recorded, so the end of the test restores it
    monkeypatch.delenv("DS_ACCELERATOR")
    quiet_third_party()
    quiet_third_party()  # idempotent
    tips = logging.getLogger("pytorch_lightning.utilities.rank_zero").filters
    assert len(tips) == 1
    assert logging.getLogger("compilers").getEffectiveLevel() == logging.WARNING
    if not torch.cuda.is_available():
        assert os.environ["DS_ACCELERATOR"] == "cpu"  # DeepSpeed's "fell back to CPU" warning


def test_wandb_logger_loses_the_anonymous_setting(tmp_path: Path) -> None:
    logger = WandbLogger(project="p", save_dir=str(tmp_path), offline=True)
    assert "anonymous" in logger._wandb_init  # Lightning passes anonymous=None, W&B warns about it
    quiet_loggers([logger, object()])
    assert "anonymous" not in logger._wandb_init
    assert logger._wandb_init["project"] == "p"


@pytest.mark.parametrize("bad", ["0", "many"])
def test_bad_num_threads_fails_before_training(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        train(tiny_config(tmp_path, f"num_threads={bad}"))
