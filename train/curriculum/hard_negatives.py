"""Negative-hardness curriculum: uniform negatives, then popularity-weighted, then hard ones.

Schedule over progress ``p`` in [0, 1]:

- proposal = ``(1 - m) * uniform + m * popularity^power`` with
  ``m = max_popularity_weight * min(1, p / hard_from)``;
- a fraction ``h = max_hard_fraction * clip((p - hard_from) / (1 - hard_from), 0, 1)``
  of each example's negatives is replaced by *hard* negatives: items the current model
  ranks highest among a cached candidate pool of the user's non-interacted items.

Every ``refresh_steps`` steps (while ``h > 0``) the miner draws ``candidates`` items per
user from the non-interacted ones, scores them with the model in ``no_grad`` and keeps
the ``top_k`` best as that user's hard set. Candidates come from the
:class:`~data_modules.negatives.NegativeSampler`, which rejects every training item of
the user, so a hard negative is never a positive.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from data_modules.curriculum_target import CurriculumTarget
from data_modules.interactions import PAD, TRAIN
from data_modules.negatives import NegativeSampler
from recmodels.base import Recommender
from recmodels.modes import eval_mode
from train.curriculum.examples import TrainExamples, row_chunks
from train.curriculum.knobs import Broadcast, Knob, interpolate

HISTORY_LEN = 200  # training items a context-based model sees when mining hard negatives


class HardNegativeMiner:
    """Per-user cache ``[num_users, top_k]`` of top-scored non-positive items (PAD = none)."""

    def __init__(
        self, sampler: NegativeSampler, candidates: int = 100, top_k: int = 10, batch_size: int = 1024, seed: int = 0
    ) -> None:
        if not 1 <= top_k <= candidates:
            raise ValueError(
                f"hard negatives need 1 <= top_k <= candidates, got top_k={top_k}, candidates={candidates}"
            )
        self.uniform = copy.copy(sampler)  # shares the known-pair keys, own proposal
        self.uniform.set_probs(None)
        self.candidates, self.top_k, self.batch_size, self.seed = candidates, top_k, batch_size, seed
        self.cache: np.ndarray | None = None

    @torch.no_grad()
    def mine(
        self, model: Recommender, users: np.ndarray, history: np.ndarray | None, num_users: int, step: int
    ) -> np.ndarray:
        """Refresh the cache for ``users`` (histories aligned with them) and return it."""
        rng = np.random.default_rng([self.seed, step])
        pool = np.sort(self.uniform.sample(users, self.candidates, rng), axis=1)
        repeat = np.zeros(pool.shape, dtype=bool)
        repeat[:, 1:] = pool[:, 1:] == pool[:, :-1]  # draws are with replacement
        device = next(model.parameters()).device
        with eval_mode(model):
            chunks = row_chunks(len(users), self.batch_size)
            best = [self._top(model, users, history, pool, repeat, rows, device) for rows in chunks]
        cache = np.full((num_users, self.top_k), PAD, dtype=np.int64)
        if len(users):
            cache[users] = np.concatenate(best)
        self.cache = cache
        return cache

    def _top(
        self, model: Recommender, users: np.ndarray, history: np.ndarray | None, pool: np.ndarray,
        repeat: np.ndarray, rows: slice, device: torch.device,
    ) -> np.ndarray:
        """Top-k distinct candidates of one chunk of users (repeats only fill short rows)."""
        context = {"user": torch.as_tensor(users[rows], device=device)}
        if history is not None:
            context["history"] = torch.as_tensor(history[rows], device=device)
        candidates = torch.as_tensor(pool[rows], device=device)
        scores = model.score_candidates(context, candidates).float()
        scores = scores.masked_fill(torch.as_tensor(repeat[rows], device=device), float("-inf"))
        top = scores.topk(self.top_k, dim=1).indices
        return candidates.gather(1, top).cpu().numpy()


class MixedNegativeSampler:
    """Drop-in for a dataset's ``NegativeSampler``: base draws, some swapped for hard ones."""

    def __init__(self, base: NegativeSampler) -> None:
        self.base = base
        self.num_items = base.num_items
        self.hard_fraction = 0.0
        self.cache: np.ndarray | None = None

    def is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.base.is_known(users, items)

    def sample(self, users: np.ndarray, num: int, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
        out = self.base.sample(users, num, rng, max_rounds)
        if self.cache is None or self.hard_fraction <= 0.0 or out.size == 0:
            return out
        users = np.asarray(users, dtype=np.int64)
        swap = rng.random(out.shape) < self.hard_fraction
        hard = self.cache[users[:, None], rng.integers(0, self.cache.shape[1], size=out.shape)]
        out = np.where(swap & (hard >= 0), hard, out)
        known = self.base.is_known(np.repeat(users, num), out.reshape(-1))
        if known.any():  # impossible by construction; never hand a positive out as a negative
            raise RuntimeError(
                f"{int(known.sum())} hard negatives are training positives; the cache is stale or corrupt"
            )
        return out


class NegativeHardness(Knob):
    """Knob driving the proposal mix and hard-negative share of a pair data set.

    Needs a data module whose ``negative_sampler`` is a
    :class:`~data_modules.negatives.NegativeSampler` (pairs for NCF). Sequence models
    that draw negatives inside their loss are not covered: the curriculum changes data,
    never the model or the loss.
    """

    name = "negatives"

    def __init__(
        self,
        popularity_power: float = 0.75,
        max_popularity_weight: float = 1.0,
        hard_from: float = 0.5,
        max_hard_fraction: float = 0.5,
        candidates: int = 100,
        top_k: int = 10,
        refresh_steps: int = 200,
        batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        if not 0.0 < hard_from <= 1.0:
            raise ValueError(f"hard_from must lie in (0, 1], got {hard_from}")
        for name, value in (("max_popularity_weight", max_popularity_weight), ("max_hard_fraction", max_hard_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if refresh_steps < 1:
            raise ValueError(f"refresh_steps must be >= 1, got {refresh_steps}")
        self.popularity_power = popularity_power
        self.max_popularity_weight = max_popularity_weight
        self.hard_from = hard_from
        self.max_hard_fraction = max_hard_fraction
        self.refresh_steps = refresh_steps
        self.miner_options = {"candidates": candidates, "top_k": top_k, "batch_size": batch_size, "seed": seed}
        self.sampler: MixedNegativeSampler | None = None
        self.miner: HardNegativeMiner | None = None
        self.last_refresh: int | None = None
        self._weight: float | None = None

    # -- schedule ---------------------------------------------------------------------
    def popularity_weight(self, progress: float) -> float:
        return self.max_popularity_weight * min(1.0, max(0.0, progress) / self.hard_from)

    def hard_fraction(self, progress: float) -> float:
        if self.hard_from >= 1.0:
            return 0.0
        return interpolate(0.0, self.max_hard_fraction, (progress - self.hard_from) / (1.0 - self.hard_from))

    # -- wiring -----------------------------------------------------------------------
    def attach(self, datamodule: CurriculumTarget, examples: TrainExamples | None) -> None:
        base = datamodule.negative_sampler
        if isinstance(base, MixedNegativeSampler):
            base = base.base
        if not isinstance(base, NegativeSampler):
            raise ValueError(
                f"the negatives curriculum needs a data module that draws negatives with a NegativeSampler "
                f"(`negative_sampler`), but {type(datamodule).__name__} has none; use it with pair data (NCF)"
            )
        counts = np.maximum(examples.item_counts.astype(np.float64), 0.0)
        self.popularity = counts**self.popularity_power
        if self.popularity.sum() <= 0:
            self.popularity = np.ones(base.num_items)
        self.uniform = np.full(base.num_items, 1.0 / base.num_items)
        self.sampler = MixedNegativeSampler(base)
        datamodule.negative_sampler = self.sampler
        self.miner = HardNegativeMiner(base, **self.miner_options)
        self.users = np.unique(examples.users)
        self.history = datamodule.data.histories(TRAIN).padded(self.users, HISTORY_LEN)
        self.num_users = datamodule.data.num_users

    def apply(self, progress: float, step: int, model: Recommender | None, broadcast: Broadcast) -> dict[str, float]:
        weight = self.popularity_weight(progress)
        if weight != self._weight:
            probs = (1.0 - weight) * self.uniform + weight * self.popularity / self.popularity.sum()
            self.sampler.base.set_probs(None if weight == 0.0 else probs)
            self._weight = weight
        hard = self.hard_fraction(progress)
        if hard > 0.0 and model is not None and self._refresh_due(step):
            self.sampler.cache = broadcast(self.miner.mine(model, self.users, self.history, self.num_users, step))
            self.last_refresh = step
        self.sampler.hard_fraction = hard if self.sampler.cache is not None else 0.0
        return {"neg_popularity_weight": weight, "neg_hard_fraction": self.sampler.hard_fraction}

    def _refresh_due(self, step: int) -> bool:
        return self.sampler.cache is None or self.last_refresh is None or step - self.last_refresh >= self.refresh_steps

    # -- checkpointing ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        cache = None if self.sampler is None or self.sampler.cache is None else torch.from_numpy(self.sampler.cache)
        return {"cache": cache, "last_refresh": self.last_refresh}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_refresh = state.get("last_refresh")
        cache = state.get("cache")
        self.sampler.cache = None if cache is None else np.asarray(cache.cpu().numpy(), dtype=np.int64)
