"""The one scoring interface every model answers.

Evaluation, top-K inference, serving and export call only these methods, so ranking
code exists once. A *context* is a dict of tensors describing who we recommend for:
``"user"`` (LongTensor [B], internal user ids) and/or ``"history"`` (LongTensor [B, L],
left-padded with -1). Models use whichever keys they need and ignore the rest, and
declare which those are in :attr:`Recommender.inputs`, so callers (serving, export)
know what to build without trying.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

Context = dict[str, Tensor]
CONTEXT_KEYS = frozenset({"user", "history"})


class Recommender(nn.Module, ABC):
    """A model that scores items for a user context. Higher score = better item.

    Every concrete model declares ``inputs``: the context keys whose values its scores
    depend on (a subset of :data:`CONTEXT_KEYS`; empty when scores ignore the user).
    There is no default, so a model that forgot it fails in :func:`declared_inputs`
    rather than being served with the wrong context.
    """

    inputs: ClassVar[frozenset[str]]
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

    inputs: ClassVar[frozenset[str]] = frozenset({"user"})

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        users = context["user"].unsqueeze(1).expand_as(candidates)
        return self(users, candidates)


def declared_inputs(model: Recommender) -> frozenset[str]:
    """The context keys ``model`` reads, checked: a missing or odd declaration is an error."""
    inputs = getattr(type(model), "inputs", None)
    if not isinstance(inputs, frozenset) or not inputs <= CONTEXT_KEYS:
        raise TypeError(
            f"{type(model).__name__}.inputs must be a frozenset of context keys from "
            f"{sorted(CONTEXT_KEYS)}, got {inputs!r}; declare the keys score_all reads"
        )
    return inputs
