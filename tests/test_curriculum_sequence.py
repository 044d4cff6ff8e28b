"""Sequence curricula: max_len truncation, mask-ratio schedule, length/self-paced pools."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from data_modules.batching import BatchKey
from data_modules.interactions import PAD, TEST, TRAIN, VAL, InteractionData
from data_modules.sequence_windows import MASK
from data_modules.sequence_module import SequenceDataModule
from recmodels.base import Recommender
from train.curriculum import Curriculum, MaskRatio, MaxLength, SelfPacedLoss, SequenceLength

MAX_LEN = 12


def sequence_data(num_users: int = 20, num_items: int = 30, seed: int = 0) -> InteractionData:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(4, 25)), replace=False)
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(item), t, split) for t, (item, split) in enumerate(zip(items, splits))]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"])
    return InteractionData(frame, np.arange(num_users), np.arange(num_items), name="seq")


def module(data: InteractionData, objective: str = "causal", mask_prob: float = 0.5) -> SequenceDataModule:
    return SequenceDataModule(data, None, batch_size=4, max_len=MAX_LEN, objective=objective, mask_prob=mask_prob, seed=1)


def batch_of(dm: SequenceDataModule, rows: np.ndarray, number: int = 0) -> dict[str, Tensor]:
    return dm.train_set[BatchKey(epoch=0, number=number, indices=rows, seed=dm.seed)]


class ItemLogits(Recommender):
    """Same logits ``w`` for every user: the loss of target i is logsumexp(w) - w[i]."""

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.num_items = len(weights)
        self.w = nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))

    def score_all(self, context: dict[str, Tensor]) -> Tensor:
        return self.w.expand(len(context["user"]), -1).clone()


def test_max_len_schedule_truncates_to_the_most_recent_items() -> None:
    data = sequence_data()
    dm = module(data)
    knob = MaxLength(start=3, multiple_of=2)
    curriculum = Curriculum({"name": "linear", "start": 0.5, "ramp_steps": 10}, knobs={"max_len": knob})
    curriculum.bind(dm)
    assert knob.end == MAX_LEN
    histories = data.histories(TRAIN)
    users = dm.train_set.windows.users.numpy()
    # progress = step / 10; length = ceil(3 + 9 p) rounded up to even, capped at 12
    for step, length in ((0, 4), (3, 6), (5, 8), (9, 12), (10, 12)):
        assert curriculum.step(step)["max_len"] == length
        batch = batch_of(dm, np.arange(len(users)))
        # expectation from the raw histories: the last length+1 items, split into input/target
        window = torch.as_tensor(histories.padded(users, length + 1))
        history, targets = window[:, :-1], window[:, 1:].masked_fill(window[:, :-1] < 0, PAD)
        width = batch["history"].shape[1]
        assert width <= length and (history[:, : length - width] == PAD).all()  # only all-padding columns dropped
        torch.testing.assert_close(batch["history"], history[:, length - width :])
        torch.testing.assert_close(batch["targets"], targets[:, length - width :])


def test_mask_ratio_follows_the_schedule_under_truncation() -> None:
    data = sequence_data(num_users=200, seed=1)
    dm = module(data, objective="masked")
    knobs = {"max_len": MaxLength(start=6), "mask": MaskRatio(start=0.1, end=0.4)}
    curriculum = Curriculum({"name": "linear", "start": 0.2, "ramp_steps": 100}, knobs=knobs)
    curriculum.bind(dm)
    rows = np.arange(len(dm.train_set))
    for step, ratio in ((0, 0.1), (50, 0.25), (100, 0.4)):
        values = curriculum.step(step)
        assert values["mask_prob"] == pytest.approx(ratio) and dm.train_set.mask_prob == pytest.approx(ratio)
        batch = batch_of(dm, rows, number=step)
        masked = batch["history"] == MASK
        real = (batch["history"] >= 0) | masked
        assert batch["history"].shape[1] == values["max_len"]
        # each real item masked with the ratio, plus one forced mask in rows that drew none
        n = real.sum(1).double()
        expected = (n * ratio + (1 - ratio) ** n).sum() / n.sum()
        assert (masked.sum() / n.sum()).item() == pytest.approx(expected.item(), abs=0.03)
        assert torch.equal(masked, batch["targets"] >= 0)


def test_mask_ratio_needs_masked_batches() -> None:
    with pytest.raises(ValueError, match="mask_prob"):
        Curriculum({"name": "linear", "start": 0.5, "ramp_steps": 10}, knobs=[MaskRatio(0.1, 0.2)]).bind(module(sequence_data()))


def test_length_pool_serves_short_histories_first() -> None:
    data = sequence_data()
    curriculum = Curriculum({"name": "geometric", "start": 0.25, "ramp_steps": 8}, difficulty=SequenceLength())
    curriculum.bind(module(data))
    lengths = np.minimum(data.histories(TRAIN).lengths - 1, MAX_LEN)  # input items per window
    for step in (0, 4):
        pool = curriculum.epoch_pool(step, epoch=step)
        assert len(pool) == math.ceil(0.25 * 4 ** (step / 8) * len(lengths) - 1e-9)
        outside = np.setdiff1d(np.arange(len(lengths)), pool)
        assert lengths[pool].max() <= lengths[outside].min()


def test_self_paced_pool_is_the_lowest_loss_examples() -> None:
    data = sequence_data(seed=4)
    dm = module(data)
    weights = np.random.default_rng(0).normal(size=data.num_items)
    curriculum = Curriculum({"name": "linear", "start": 0.4, "ramp_steps": 10}, difficulty=SelfPacedLoss(batch_size=7))
    curriculum.bind(dm)
    pool = curriculum.epoch_pool(0, 0, ItemLogits(weights))
    last = dm.train_set.windows.sequences[:, -1].numpy()
    # softmax loss logsumexp(w) - w[target]: lowest loss = largest weight of the last target
    loss = np.log(np.exp(weights).sum()) - weights[last]
    np.testing.assert_allclose(curriculum.scores, loss, rtol=1e-5)
    outside = np.setdiff1d(np.arange(len(last)), pool)
    assert len(pool) == math.ceil(0.4 * len(last)) and weights[last[pool]].min() >= weights[last[outside]].max()


def test_data_modules_declare_what_a_curriculum_may_change() -> None:
    from data_modules.curriculum_target import CurriculumTarget
    from data_modules.negatives import NegativeSampler
    from data_modules.pairs import PairDataModule

    data = sequence_data()
    causal, masked = module(data), module(data, objective="masked", mask_prob=0.3)
    pairs = PairDataModule(data, None, batch_size=6, num_negatives=2)
    assert all(isinstance(dm, CurriculumTarget) for dm in (causal, masked, pairs))
    assert (causal.max_len, causal.mask_ratio, causal.negative_sampler) == (MAX_LEN, None, None)
    assert masked.mask_ratio == pytest.approx(0.3)
    masked.mask_ratio, masked.max_len = 0.4, 5
    assert masked.train_set.mask_prob == pytest.approx(0.4) and masked.train_set.max_len == 5
    assert isinstance(pairs.negative_sampler, NegativeSampler) and pairs.max_len is None
    with pytest.raises(ValueError, match="max_len"):
        causal.max_len = MAX_LEN + 1
    with pytest.raises(ValueError, match="mask_prob"):
        causal.mask_ratio = 0.2
    with pytest.raises(ValueError, match="no negatives"):
        causal.negative_sampler = pairs.negative_sampler
    with pytest.raises(ValueError, match="windows"):
        pairs.max_len = 4
    with pytest.raises(ValueError, match="target"):
        MaxLength(start=4, target="windows")
    with pytest.raises(ValueError, match="CurriculumTarget"):
        Curriculum({"name": "linear", "start": 0.5, "ramp_steps": 10}, difficulty=SequenceLength()).bind(object())
