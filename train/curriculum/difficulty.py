"""Difficulty scorers: one number per training example, lower = easier.

The sampler view serves the easiest ``ceil(c * N)`` examples at competence ``c``, so a
scorer only has to rank. Static scorers look at the data once; the self-paced scorer
asks the current model (in ``no_grad``) and is re-run when the pool is rebuilt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from data_modules.interactions import PAD
from recmodels.base import Recommender
from recmodels.modes import eval_mode
from train.curriculum.examples import TrainExamples, row_chunks


class Difficulty(ABC):
    """Base scorer. ``dynamic`` scorers need the model and are refreshed during training."""

    dynamic = False
    name = "difficulty"

    @abstractmethod
    def score(self, examples: TrainExamples, model: Recommender | None = None) -> np.ndarray:
        """[N] float64 difficulties."""


class SequenceLength(Difficulty):
    """Short histories first: fewer items to attend over, fewer targets to predict."""

    name = "length"

    def score(self, examples: TrainExamples, model: Recommender | None = None) -> np.ndarray:
        return examples.lengths.astype(np.float64)


class TargetPopularity(Difficulty):
    """Popular targets first, the long tail later.

    An example's difficulty is the mean surprisal ``-log(count / total)`` of its target
    items (one for a pair, all targets of a window for sequences); items never seen in
    training count as seen once.
    """

    name = "popularity"

    def score(self, examples: TrainExamples, model: Recommender | None = None) -> np.ndarray:
        counts = np.maximum(examples.item_counts.astype(np.float64), 1.0)
        surprisal = -np.log(counts / counts.sum())
        targets = examples.targets
        valid = targets >= 0
        per_target = np.where(valid, surprisal[np.where(valid, targets, 0)], 0.0)
        return per_target.sum(1) / np.maximum(valid.sum(1), 1)


LOSSES = ("auto", "softmax", "bce")


class SelfPacedLoss(Difficulty):
    """Self-paced learning: the current model's loss on each example's most recent target.

    ``softmax``: cross-entropy of the target over the whole catalogue (sequence models);
    ``bce``: ``softplus(-score)`` of the positive alone, one score per example (pointwise
    models, where a full softmax over every pair would be far too costly).
    ``auto`` picks ``softmax`` when examples carry a history, ``bce`` otherwise.
    Examples whose loss is below the competence quantile (a threshold that rises with
    competence) are served.
    """

    dynamic = True
    name = "self_paced"

    def __init__(self, loss: str = "auto", batch_size: int = 1024, refresh_epochs: int = 1) -> None:
        if loss not in LOSSES:
            raise ValueError(f"self-paced loss must be one of {LOSSES}, got {loss!r}")
        if batch_size <= 0 or refresh_epochs <= 0:
            raise ValueError(f"batch_size and refresh_epochs must be positive, got {batch_size}, {refresh_epochs}")
        self.loss = loss
        self.batch_size = batch_size
        self.refresh_epochs = refresh_epochs

    def _kind(self, examples: TrainExamples) -> str:
        if self.loss != "auto":
            return self.loss
        return "softmax" if examples.history is not None else "bce"

    @torch.no_grad()
    def score(self, examples: TrainExamples, model: Recommender | None = None) -> np.ndarray:
        if model is None:
            raise ValueError("the self-paced scorer needs the current model")
        kind = self._kind(examples)
        device = next(model.parameters()).device
        with eval_mode(model):
            chunks = row_chunks(len(examples), self.batch_size)
            losses = [self._batch_loss(model, examples, kind, rows, device) for rows in chunks]
        return np.concatenate(losses) if losses else np.zeros(0)

    @staticmethod
    def _batch_loss(
        model: Recommender, examples: TrainExamples, kind: str, rows: slice, device: torch.device
    ) -> np.ndarray:
        context = {"user": torch.as_tensor(examples.users[rows], device=device)}
        if examples.history is not None:
            context["history"] = torch.as_tensor(examples.history[rows], device=device)
        target = torch.as_tensor(examples.last_target[rows], device=device)
        if kind == "bce":
            scores = model.score_candidates(context, target.clamp_min(0)[:, None])[:, 0]
            loss = F.softplus(-scores.float())
        else:
            loss = F.cross_entropy(model.score_all(context).float(), target.clamp_min(0), reduction="none")
        loss = loss.masked_fill(target == PAD, 0.0)  # no target, nothing to learn: easiest
        return loss.cpu().numpy().astype(np.float64)
