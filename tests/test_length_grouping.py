"""group_by_length: batches of similar lengths, same examples per epoch, less padding."""
from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from data_modules.batching import BatchKey, EpochBatchSampler
from tests.helpers import tiny_config
from train.building import build_with_data

# Heavy-tailed history lengths, like real logs (most short, a few very long).
LENGTHS = np.minimum(np.random.default_rng(0).lognormal(3.0, 1.2, 1000).astype(int) + 2, 1025)


def _epoch(group: int, rank: int = 0, world: int = 1, epoch: int = 3, seed: int = 9) -> list[np.ndarray]:
    sampler = EpochBatchSampler(len(LENGTHS), 32, seed=seed, rank=rank, world_size=world,
                                lengths=LENGTHS if group else None, group_batches=group)
    sampler.set_epoch(epoch)
    batches = [key.indices for key in sampler]
    assert len(batches) == len(sampler)
    return batches


def _padded_cells(batches: list[np.ndarray], power: int = 1) -> int:
    """What a padded batch costs: rows x longest^power (1: tokens, 2: attention cells)."""
    return int(sum(len(b) * LENGTHS[b].max() ** power for b in batches))


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 3)])
def test_an_epoch_visits_the_same_examples_in_as_many_batches(rank: int, world: int) -> None:
    plain, grouped = _epoch(0, rank, world), _epoch(50, rank, world)
    assert len(grouped) == len(plain)
    np.testing.assert_array_equal(np.sort(np.concatenate(grouped)), np.sort(np.concatenate(plain)))
    assert sorted(map(len, grouped)) == sorted(map(len, plain))


def test_grouped_batches_are_sorted_runs_and_far_cheaper_to_pad() -> None:
    grouped, plain = _epoch(50), _epoch(0)
    real = int(LENGTHS.sum())
    # Within a run of 50 batches the lengths were sorted, so batches barely overlap:
    # each batch's shortest is at least the longest of the batches cut after it.
    spans = sorted((LENGTHS[b].min(), LENGTHS[b].max()) for b in grouped)
    overlapping = sum(1 for (lo, hi), (lo2, _) in zip(spans, spans[1:]) if hi > lo2)
    assert overlapping < len(grouped) // 2
    # Tokens: within 1.6x of the real ones (plain batches: 6.4x); attention cells 3.7x fewer.
    assert _padded_cells(grouped) < 1.6 * real < 0.3 * _padded_cells(plain)
    assert _padded_cells(grouped, 2) < 0.3 * _padded_cells(plain, 2)


def test_order_is_a_function_of_seed_and_epoch() -> None:
    same = [np.array_equal(a, b) for a, b in zip(_epoch(50), _epoch(50))]
    assert all(same)
    assert not np.array_equal(np.concatenate(_epoch(50)), np.concatenate(_epoch(50, epoch=4)))
    assert not np.array_equal(np.concatenate(_epoch(50)), np.concatenate(_epoch(50, seed=10)))


@pytest.mark.parametrize("value", [-1, 2.5, "50", True])
def test_bad_values_name_the_key(value: object) -> None:
    with pytest.raises(ValueError, match="group_by_length must be 0"):
        EpochBatchSampler(10, 2, lengths=np.ones(10), group_batches=value)


def test_the_data_module_groups_its_windows_and_trims_each_batch(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=sasrec", "data.min_length=3", "data.max_length=28", "model.net.max_len=30",
                      "model.datamodule.batch_size=8", "model.datamodule.group_by_length=4")
    data = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model.datamodule, _partial_=True)(data=data, eval_spec=None, seed=0)
    module.setup("fit")
    window_lengths = module.example_lengths()  # history positions: a window's items less its last target
    widths, grouped_cost = [], 0
    for batch in module.train_dataloader():
        history = batch["history"]
        rows_longest = int((history >= 0).sum(1).max())
        assert history.shape[1] == rows_longest  # trimmed to its longest row
        widths.append(history.shape[1])
        grouped_cost += history.numel()
    sampler = EpochBatchSampler(len(window_lengths), 8, seed=0)
    plain_cost = sum(len(k.indices) * window_lengths[k.indices].max() for k in sampler)
    assert grouped_cost < plain_cost
    assert len(set(widths)) > 1


def test_grouped_batches_carry_their_share_of_the_epochs_targets() -> None:
    keys = list(EpochBatchSampler(len(LENGTHS), 32, seed=9, lengths=LENGTHS, group_batches=50))
    targets = np.array([LENGTHS[k.indices].sum() for k in keys])
    np.testing.assert_allclose([k.weight for k in keys], targets * len(keys) / targets.sum())
    assert max(k.weight for k in keys) > 10 * min(k.weight for k in keys)  # short and long batches differ
    assert all(k.weight is None for k in EpochBatchSampler(len(LENGTHS), 32, seed=9))  # plain batches: no weight


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_weighted_grouped_losses_average_to_the_mean_over_every_target(tmp_path: Path) -> None:
    """An epoch of grouped batches, each loss times its weight, averages to the loss of
    one batch holding every window: each target counts once, whatever its batch."""
    cfg = tiny_config(tmp_path, "model=sasrec", "data.min_length=3", "data.max_length=28", "model.net.max_len=30",
                      "model.task.loss.name=ce", "model.datamodule.batch_size=8", "model.datamodule.group_by_length=6")
    data = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model.datamodule, _partial_=True)(data=data, eval_spec=None, seed=0)
    module.setup("fit")
    torch.manual_seed(0)
    model = build_with_data(cfg.model.net, data)
    task = build_with_data(cfg.model.task, data, model=model, evaluator=hydra.utils.instantiate(cfg.eval))
    task.setup("fit")
    with torch.no_grad():  # large random weights: targets' losses differ widely, as after training
        for parameter in model.parameters():
            parameter.normal_(0.0, 1.0)
    model.eval()  # no dropout: the same function for every batch
    with torch.no_grad():
        batches = list(module.train_dataloader())
        weighted = [float(task.training_step(b, i)) for i, b in enumerate(batches)]
        plain = [float(task.training_loss(b)) for b in batches]
        everything = module.train_set[BatchKey(0, 0, np.arange(module.num_train_examples()), 0)]
        expected = float(task.training_loss(everything))
    assert np.mean(weighted) == pytest.approx(expected, rel=1e-4)
    assert abs(np.mean(plain) - expected) > 1e-3 * expected  # a mean of batch means is not it


def test_other_modules_refuse_it(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=neumf")
    data = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.model.datamodule, _partial_=True)(data=data, eval_spec=None, seed=0)
    with pytest.raises(ValueError, match="group_by_length does not apply"):
        module.example_lengths()


def test_the_padding_benchmark_counts_real_items_by_hand(tmp_path: Path) -> None:
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    sizes = rng.integers(4, 60, 40)  # items per user; the last 2 are validation and test
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u + 1} {i + 1}\n" for u, n in enumerate(sizes) for i in range(n)))
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_length_grouping.py"
    result = subprocess.run([sys.executable, str(script), "--data", str(path), "--max-len", "20", "--batch-size", "4",
                             "--group", "5"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")}
    train = sizes - 2
    expected_real = int((np.minimum(train, 21) - 1).sum())  # window of max_len + 1, inputs all but the last
    assert int(rows["real items only"][1].replace(",", "")) == expected_real
    plain, grouped = (int(rows[k][1].replace(",", "")) for k in ("plain (shuffled)", "group_by_length=5"))
    assert expected_real <= grouped < plain
