"""Training batches built on the training device (``device_batches``): same batches, placed there."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor

from data_modules.interactions import PAD, TEST, TRAIN, VAL, InteractionData
from data_modules.sequence_module import SequenceDataModule
from data_modules.sequence_windows import MASK, SequenceTrainingSet
from tests.helpers import tiny_config

MAX_LEN = 12


def sequence_data(num_users: int = 40, num_items: int = 30, seed: int = 0) -> InteractionData:
    """Histories of 3..11 items, all shorter than the windows: batches have padding to trim."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(3, 12)), replace=False)
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(item), t, split) for t, (item, split) in enumerate(zip(items, splits))]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"])
    return InteractionData(frame, np.arange(num_users), np.arange(num_items), name="seq")


def fake_trainer(device: torch.device) -> SimpleNamespace:
    """What the data module reads from a trainer: the rank, the world and the root device."""
    return SimpleNamespace(global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=device))


def module(data: InteractionData, objective: str, **options: object) -> SequenceDataModule:
    return SequenceDataModule(
        data, None, batch_size=8, max_len=MAX_LEN, objective=objective, mask_prob=0.3,
        last_item_prob=0.3 if objective == "masked" else 0.0, seed=3, **options,
    )


def two_epochs(dm: SequenceDataModule) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Epoch 0 from a restricted pool; epoch 1 with a shorter max_len (and mask ratio)."""
    dm.set_train_pool(lambda: np.arange(0, dm.num_train_examples(), 2))
    first = list(dm.train_dataloader())
    dm.set_train_pool(None)
    dm.max_len = 5
    if dm.mask_ratio is not None:
        dm.mask_ratio = 0.5
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    return first, list(loader)


def windows_of(windows: SequenceTrainingSet, users: Tensor) -> Tensor:
    """The training windows of ``users`` (one window per user: no sliding windows here)."""
    row_of = {int(user): row for row, user in enumerate(windows.users)}
    return windows.sequences[[row_of[int(user)] for user in users]]


def expected_trim(batch: dict[str, Tensor], windows: Tensor, max_len: int, objective: str) -> None:
    """Brute force: the batch is the windows' collate with all-padding leading columns cut."""
    rows = windows[:, -(max_len + 1):].long()
    seq = rows[:, :-1] if objective == "causal" else rows[:, 1:]
    real_columns = (seq != PAD).any(0).nonzero()
    first = int(real_columns[0])
    width = batch["history"].shape[1]
    assert width == max_len - first
    history, targets = batch["history"], batch["targets"]
    if objective == "causal":
        assert torch.equal(history, seq[:, first:])
        assert torch.equal(targets, rows[:, first + 1:].masked_fill(history < 0, PAD))
    else:
        masked = targets != PAD
        assert torch.equal(targets[masked], seq[:, first:][masked])
        assert (history[masked] == MASK).all()
        assert torch.equal(history[~masked], seq[:, first:][~masked])


@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_device_batches_on_cpu_equal_the_default_batches(objective: str) -> None:
    data = sequence_data()
    default = module(data, objective)
    on_device = module(data, objective, device_batches=True)
    on_device.trainer = fake_trainer(torch.device("cpu"))
    expected, got = two_epochs(default), two_epochs(on_device)
    assert [len(epoch) for epoch in got] == [len(epoch) for epoch in expected] == [3, 5]
    for want, have in zip(expected[0] + expected[1], got[0] + got[1], strict=True):
        assert have.keys() == want.keys() == {"user", "history", "targets"}
        for key in want:
            assert have[key].device == torch.device("cpu")
            assert have[key].dtype == want[key].dtype and torch.equal(have[key], want[key]), key
    # ... and both are the plain collate of the sampled windows, padding columns trimmed
    for max_len, epoch in zip((MAX_LEN, 5), got):
        for batch in epoch:
            expected_trim(batch, windows_of(on_device.train_set.windows, batch["user"]), max_len, objective)


def test_windows_are_copied_once_to_the_trainers_root_device() -> None:
    data = sequence_data()
    default = module(data, "causal")
    on_meta = module(data, "causal", device_batches=True)
    on_meta.trainer = fake_trainer(torch.device("meta"))
    loader = on_meta.train_dataloader()
    source = on_meta.train_set.source
    assert source.sequences.device == source.users.device == torch.device("meta")
    host = on_meta.train_set.windows  # what a curriculum reads stays on the host
    assert host.sequences.device == host.users.device == torch.device("cpu")
    on_meta.train_dataloader()
    assert on_meta.train_set.source is source  # a second epoch's loader reuses the copy
    for want, have in zip(default.train_dataloader(), loader, strict=True):
        for key in want:
            assert have[key].device == torch.device("meta") and have[key].shape == want[key].shape


def test_without_a_trainer_batches_stay_on_the_cpu_and_the_default_never_moves() -> None:
    data = sequence_data(num_users=10)
    detached = module(data, "masked", device_batches=True)
    assert next(iter(detached.train_dataloader()))["history"].device == torch.device("cpu")
    default = module(data, "causal")
    default.trainer = fake_trainer(torch.device("meta"))
    assert next(iter(default.train_dataloader()))["history"].device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_cuda_batches_are_built_without_a_host_sync(objective: str) -> None:
    data = sequence_data()
    default = module(data, objective)
    on_cuda = module(data, objective, device_batches=True)
    on_cuda.trainer = fake_trainer(torch.device("cuda", torch.cuda.current_device()))
    loader = on_cuda.train_dataloader()
    torch.cuda.set_sync_debug_mode("error")  # any step that waits on the GPU raises
    try:
        got = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    windows = on_cuda.train_set.windows
    for want, have in zip(default.train_dataloader(), got, strict=True):
        assert all(have[key].is_cuda and have[key].shape == want[key].shape for key in want)
        have = {key: value.cpu() for key, value in have.items()}
        assert torch.equal(have["user"], want["user"])
        if objective == "causal":  # no randomness: the very same batch
            assert all(torch.equal(have[key], want[key]) for key in want)
        expected_trim(have, windows_of(windows, have["user"]), MAX_LEN, objective)


@pytest.mark.slow
def test_training_with_device_batches_gives_the_same_metrics(tmp_path: Path) -> None:
    from train.training.run import train

    small = ["model=sasrec", "trainer.max_epochs=2", "model.net.hidden=16", "model.net.num_blocks=1",
             "model.net.num_heads=2", "model.net.max_len=10", "eval.ks=[5,10]"]
    metrics = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        train(tiny_config(out, *small, f"model.datamodule.device_batches={flag}"))
        saved = json.loads((out / "metrics.json").read_text())
        metrics[flag] = {k: v for k, v in saved.items() if "/" in k}  # the metrics, not paths or timings
    assert metrics["true"] and metrics["true"] == metrics["false"]
