"""(user, item, label) batches for pointwise models such as NCF.

Each epoch visits every training positive once; its ``num_negatives`` negatives are
drawn fresh whenever the positive is visited (so they are resampled every epoch),
never from the user's training items.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data_modules.base import RecDataModule
from data_modules.batching import BatchKey, batch_generator
from data_modules.eval_spec import EvalSpec
from data_modules.interactions import TRAIN, InteractionData
from data_modules.negatives import DrawsNegatives, NegativeSampler


class PairTrainingSet(torch.utils.data.Dataset):
    """Positives plus freshly sampled negatives, built a whole batch at a time."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, num_negatives: int) -> None:
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1 for a pointwise objective, got {num_negatives}")
        self.users = users.astype(np.int64)
        self.items = items.astype(np.int64)
        self.num_negatives = num_negatives
        self.sampler: DrawsNegatives = NegativeSampler(self.users, self.items, num_items)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, key: BatchKey) -> dict[str, Tensor]:
        users, items = self.users[key.indices], self.items[key.indices]
        negatives = self.sampler.sample(users, self.num_negatives, batch_generator(key))
        all_users = np.concatenate([users, np.repeat(users, self.num_negatives)])
        all_items = np.concatenate([items, negatives.reshape(-1)])
        labels = np.concatenate([np.ones(len(users)), np.zeros(negatives.size)])
        return {
            "user": torch.from_numpy(all_users),
            "item": torch.from_numpy(all_items),
            "label": torch.from_numpy(labels.astype(np.float32)),
        }


class PairDataModule(RecDataModule):
    """Training pairs from the TRAIN split.

    ``batch_size`` counts training instances (positives and negatives), as in the NCF
    paper's code: 256 with 4 negatives is about 51 positives and 205 negatives a step.
    """

    def __init__(
        self,
        data: InteractionData,
        eval_spec: EvalSpec | None,
        batch_size: int = 256,
        num_negatives: int = 4,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 + num_negatives:
            raise ValueError(
                f"batch_size={batch_size} cannot hold one positive and its {num_negatives} negatives; "
                f"use batch_size >= {1 + num_negatives}"
            )
        super().__init__(data, eval_spec, batch_size // (1 + num_negatives), seed)
        rows = data.rows(TRAIN)
        self.train_set = PairTrainingSet(
            rows["user"].to_numpy(), rows["item"].to_numpy(), data.num_items, num_negatives
        )

    @property
    def negative_sampler(self) -> DrawsNegatives | None:
        """The sampler the training pairs draw their negatives from."""
        return self.train_set.sampler

    @negative_sampler.setter
    def negative_sampler(self, sampler: DrawsNegatives) -> None:
        self.train_set.sampler = sampler
