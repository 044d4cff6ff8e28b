"""Checkpoint round trip: a resumed curriculum yields the same competence and batches."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from data_modules.pairs import PairDataModule
from recmodels.base import Recommender
from train.curriculum import Curriculum, NegativeHardness, SelfPacedLoss

PACING = {"name": "root", "start": 0.3, "ramp_steps": 30}


def data(num_users: int = 25, num_items: int = 30) -> InteractionData:
    rng = np.random.default_rng(0)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(5, 14)), replace=False)
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(item), t, split) for t, (item, split) in enumerate(zip(items, splits))]
    return InteractionData(pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"]), np.arange(num_users), np.arange(num_items))


class UserItemScores(Recommender):
    """A fixed score per (user, item); training is imitated by redrawing it every epoch."""

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.table = nn.Parameter(torch.zeros(num_users, num_items))

    def set_epoch(self, epoch: int) -> None:
        with torch.no_grad():
            self.table.copy_(torch.as_tensor(np.random.default_rng(epoch).normal(size=self.table.shape)))

    def score_all(self, context: dict[str, Tensor]) -> Tensor:
        return self.table[context["user"]]


def build(interactions: InteractionData) -> tuple[PairDataModule, Curriculum]:
    module = PairDataModule(interactions, eval_spec=None, batch_size=8, num_negatives=2, seed=4)
    knob = NegativeHardness(hard_from=0.3, max_hard_fraction=0.5, candidates=10, top_k=3, refresh_steps=4)
    curriculum = Curriculum(PACING, difficulty=SelfPacedLoss(refresh_epochs=2), knobs={"negatives": knob})
    return module, curriculum


def run_epochs(module: PairDataModule, curriculum: Curriculum, model: UserItemScores, epochs: range, step: int) -> tuple[list, int]:
    """Imitate the trainer: pool at epoch start, knobs before each batch, one step per batch."""
    record = []
    for epoch in epochs:
        model.set_epoch(epoch)
        module.set_train_pool(lambda: curriculum.epoch_pool(step, epoch, model))
        sampler = module.make_train_sampler()
        sampler.set_epoch(epoch)
        curriculum.step(step, model)
        for key in sampler:
            batch = module.train_set[key]
            record.append((epoch, step, curriculum.scheduler.competence, {k: v.clone() for k, v in batch.items()}))
            step += 1
            curriculum.step(step, model)
    return record, step


def test_resume_mid_curriculum_replays_the_same_schedule() -> None:
    interactions = data()
    model = UserItemScores(interactions.num_users, interactions.num_items)
    module, curriculum = build(interactions)
    curriculum.bind(module)
    straight, _ = run_epochs(module, curriculum, model, range(6), 0)
    competences = [c for _, _, c, _ in straight]
    assert competences[0] == 0.3 and competences[-1] == 1.0  # the run crosses the ramp

    module, curriculum = build(interactions)
    curriculum.bind(module)
    first, step = run_epochs(module, curriculum, model, range(3), 0)
    buffer = io.BytesIO()
    torch.save(curriculum.state_dict(), buffer)  # what a Lightning checkpoint stores
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    module, resumed = build(interactions)
    resumed.load_state_dict(state)  # Lightning may restore callbacks before setup()
    resumed.bind(module)
    assert resumed.scheduler.step == step and resumed.scheduler.competence == curriculum.scheduler.competence
    # epoch 3 is no self-paced refresh epoch (every 2): its pool comes from the stored scores
    second, _ = run_epochs(module, resumed, model, range(3, 6), step)
    assert len(first) + len(second) == len(straight)
    for (e1, s1, c1, b1), (e2, s2, c2, b2) in zip(straight, first + second):
        assert (e1, s1, c1) == (e2, s2, c2)
        for name in b1:
            torch.testing.assert_close(b1[name], b2[name])
