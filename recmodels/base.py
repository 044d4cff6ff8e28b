"""The one scoring interface every model answers.

Evaluation, top-K inference, serving and export call only these methods, so ranking
code exists once. A *context* is a dict of tensors describing who we recommend for:
``"user"`` (LongTensor [B], internal user ids) and/or ``"history"`` (LongTensor [B, L],
left-padded with -1). Models use whichever keys they need and ignore the rest.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

Context = dict[str, Tensor]


class Recommender(nn.Module, ABC):
    """A model that scores items for a user context. Higher score = better item."""

    num_items: int

    @abstractmethod
    def score_all(self, context: Context) -> Tensor:
        """Scores over the whole catalogue: [B, num_items]."""

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        """Scores of given items [B, C]; models with a cheaper path override this."""
        return self.score_all(context).gather(1, candidates)

    def user_representation(self, context: Context) -> Tensor:
        """A vector per user context [B, d] (user embedding or final hidden state)."""
        raise NotImplementedError(f"{type(self).__name__} has no user representation")


class PairwiseRecommender(Recommender):
    """A model defined by ``forward(users, items) -> logits`` (NCF family).

    Candidates are scored by that pairwise forward; ``score_all`` stays model-specific
    because each model has its own way to avoid B x I network passes.
    """

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        users = context["user"].unsqueeze(1).expand_as(candidates)
        return self(users, candidates)


def history_mask(history: Tensor) -> Tensor:
    """True where a padded history holds a real item."""
    return history >= 0


def to_embedding_index(history: Tensor, pad_row: int) -> Tensor:
    """Map -1 padding to the model's padding row so an embedding lookup is valid."""
    return torch.where(history >= 0, history, torch.full_like(history, pad_row))
