"""The best any model can do on generated data: rank by the generator's own next-item odds.

Generated data (:mod:`data_modules.synthetic_generator`) is drawn from a known process:
each pick mixes successors of the user's last two picks, their home cluster's popular
items and global noise. :class:`WalkOracle` knows that process and every user's cluster,
so its ranking is the Bayes-optimal one (up to not ranking seen items, which evaluation
removes anyway). Its metrics, computed by the same evaluator as any model's, are the
ceiling a scaling curve on that data can approach; the gap to it says how much a bigger
model could still gain.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from data_modules.synthetic_generator import WalkProcess
from recmodels.base import Context, Recommender


class WalkOracle(Recommender):
    """Scores = the generator's next-item weights for the user's cluster and history.

    ``process_items[i]`` is the generator's item number of internal item ``i`` and
    ``user_cluster[u]`` the home cluster of internal user ``u``. The history must be
    the user's whole history (evaluate with ``max_history`` >= the longest one), since
    the weights depend on every item already seen.
    """

    inputs: ClassVar[frozenset[str]] = frozenset({"user", "history"})

    def __init__(self, process: WalkProcess, process_items: np.ndarray, user_cluster: np.ndarray) -> None:
        super().__init__()
        self.process = process
        self.process_items = np.asarray(process_items, dtype=np.int64)
        self.user_cluster = np.asarray(user_cluster, dtype=np.int64)
        self.num_items = len(self.process_items)

    def score_all(self, context: Context) -> Tensor:
        users = context["user"].cpu().numpy()
        history = context["history"].cpu().numpy()
        home = self.process.cluster_pop[self.user_cluster[users]]
        seen = np.zeros_like(home, dtype=bool)
        rows, cols = np.nonzero(history >= 0)
        seen[rows, self.process_items[history[rows, cols]]] = True
        last, before = self._last_two(history)
        weights = self.process.weights(home, seen, last, before)
        return torch.from_numpy(weights[:, self.process_items]).to(context["user"].device)

    def _last_two(self, history: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Generator numbers of the last and second-to-last items (the walk's convention:
        the last one twice for a one-item history; None when no user has a history)."""
        present = history >= 0
        if not present[:, -1].any():
            return None, None
        if not present[:, -1].all():
            raise ValueError("WalkOracle scores users with a history only; one row has none")
        last = self.process_items[history[:, -1]]
        before = np.where(present[:, -2], history[:, -2], history[:, -1]) if history.shape[1] > 1 else history[:, -1]
        return last, self.process_items[before]
