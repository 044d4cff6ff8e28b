"""The Lightning callback end to end: pool sizes per epoch, logging, resume from a checkpoint."""
from __future__ import annotations

import math
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from data_modules.pairs import PairDataModule
from recmodels.ncf import GMF
from train.curriculum import CurriculumCallback, Difficulty, Knob, TargetPopularity, make_pacing
from train.evaluation import Evaluator
from train.training.tasks import PointwiseTask

CONF = Path(__file__).resolve().parents[1] / "conf" / "curriculum"
BATCH = 16
EPOCHS = 6


def interactions(num_users: int = 40, num_items: int = 50) -> InteractionData:
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, num_items + 1)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(5, 12)), replace=False, p=weights / weights.sum())
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(item), t, split) for t, (item, split) in enumerate(zip(items, splits))]
    return InteractionData(pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"]), np.arange(num_users), np.arange(num_items))


class BatchRecorder(pl.Callback):
    """Keeps every training batch's users and items, per epoch."""

    def __init__(self) -> None:
        self.batches: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pair = torch.stack([batch["user"], batch["item"]]).clone()
        self.batches.setdefault(trainer.current_epoch, []).append(pair)


def fit(tmp: Path, epochs: int, ckpt: str | None = None) -> tuple[BatchRecorder, CurriculumCallback, pl.Trainer]:
    pl.seed_everything(0, workers=True)
    data = interactions()
    evaluator = Evaluator(protocol="full", ks=(5,), metrics=("ndcg",))
    module = PairDataModule(data, evaluator.spec, batch_size=BATCH * 3, num_negatives=2, seed=1)
    task = PointwiseTask(GMF(data.num_users, data.num_items, 4), evaluator, optimizer=lambda params: torch.optim.Adam(params, lr=0.01))
    curriculum = CurriculumCallback({"name": "linear", "start": 0.25, "ramp_epochs": 2}, difficulty=TargetPopularity())
    recorder = BatchRecorder()
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp, save_last=True, save_top_k=0)
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[curriculum, recorder, checkpoints], logger=pl.loggers.CSVLogger(tmp, name="csv", version=""),
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
        use_distributed_sampler=False, accelerator="cpu", devices=1,
    )
    trainer.fit(task, datamodule=module, ckpt_path=ckpt)
    return recorder, curriculum, trainer


def test_epochs_follow_the_pool_and_resume_continues_the_schedule(tmp_path: Path) -> None:
    straight, callback, trainer = fit(tmp_path / "a", epochs=EPOCHS)
    n = len(interactions().rows(TRAIN))
    full_steps = math.ceil(n / BATCH)
    ramp = 2 * full_steps  # ramp_epochs counts passes over the whole data
    step, expected = 0, []
    for _ in range(EPOCHS):  # pool fixed at each epoch start from the global step there
        competence = min(1.0, 0.25 + 0.75 * step / ramp)
        batches = math.ceil(math.ceil(competence * n - 1e-9) / BATCH)
        expected.append(batches)
        step += batches
    assert [len(straight.batches[e]) for e in range(EPOCHS)] == expected
    assert expected[0] < expected[-1] == full_steps
    assert trainer.global_step == step
    logged = pd.read_csv(tmp_path / "a" / "csv" / "metrics.csv")
    assert logged["curriculum/competence"].dropna().iloc[-1] == pytest.approx(1.0)
    assert logged["curriculum/active_fraction"].dropna().min() == pytest.approx(math.ceil(0.25 * n - 1e-9) / n, abs=0.01)

    fit(tmp_path / "b", epochs=2)
    resumed, callback, _ = fit(tmp_path / "c", epochs=EPOCHS, ckpt=str(tmp_path / "b" / "last.ckpt"))
    assert sorted(resumed.batches) == list(range(2, EPOCHS))
    for epoch in range(2, EPOCHS):
        assert len(resumed.batches[epoch]) == len(straight.batches[epoch])
        for a, b in zip(straight.batches[epoch], resumed.batches[epoch]):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["none", "seq_length", "popularity", "negatives", "self_paced", "mask_ratio"])
def test_configs_instantiate(name: str) -> None:
    node = OmegaConf.load(CONF / f"{name}.yaml")
    if name == "none":
        assert "_target_" not in node  # no curriculum: no callback, no overhead
        return
    callback = hydra.utils.instantiate(node)
    assert isinstance(callback, CurriculumCallback)
    curriculum = callback.curriculum
    assert curriculum.difficulty is None or isinstance(curriculum.difficulty, Difficulty)
    assert all(isinstance(knob, Knob) for knob in curriculum.knobs)
    assert (curriculum.difficulty is not None) + len(curriculum.knobs) == 1  # one idea per config
    pacing = make_pacing(**curriculum.pacing_config, steps_per_epoch=10)
    assert pacing(0) == pytest.approx(pacing.start) and pacing(pacing.ramp_steps) == 1.0
