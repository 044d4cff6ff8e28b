"""The one scoring interface every model answers.

Evaluation, top-K inference, serving and export call only these methods, so ranking
code exists once. A *context* is a dict of tensors describing who we recommend for:
``"user"`` (LongTensor [B], internal user ids) and/or ``"history"`` (LongTensor [B, L],
left-padded with -1). Models use whichever keys they need and ignore the rest, and
declare which those are in :attr:`Recommender.inputs`, so callers (serving, export)
know what to build without trying.

Whole-catalogue ranking reads scores an item range at a time through
:meth:`Recommender.item_scores`, so a 10M-item catalogue never needs a [B, num_items]
block: the user side is computed once per batch, then any range ``[start, stop)`` is
scored on demand.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
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

    def item_scores(self, context: Context) -> ItemScores:
        """Scores of this batch of contexts, readable an item range at a time.

        A model whose scores are ``user_representation @ item_table().T (+ output_bias)``
        (the sequence models) gets :class:`DotProductScores`: the user vectors are
        computed once here and each range costs one matrix product over its rows. Any
        other model falls back to :class:`FullScores` (``score_all`` once, then slices:
        correct, not cheaper); override this to give it a range path of its own. A model
        with an ``item_table`` that scores differently must override it too.
        """
        table = getattr(self, "item_table", None)
        if callable(table):
            return DotProductScores(self.user_representation(context), table(), getattr(self, "output_bias", None))
        return FullScores(self.score_all(context))


class ItemScores(ABC):
    """One batch's scores over the catalogue, read by item range.

    Every returned tensor is float32 and the caller's own (it may mask in place), so
    ranking code never writes into a model's parameters or shared views.
    ``whole_block`` is True when the scores already exist as one [B, num_items] block:
    reading them in chunks then saves no memory, so rankers take the block whole.
    """

    whole_block: ClassVar[bool] = False

    @abstractmethod
    def range(self, start: int, stop: int) -> Tensor:
        """Scores of items ``start..stop-1``: [B, stop - start]."""

    @abstractmethod
    def at(self, items: Tensor) -> Tensor:
        """Scores of given items per row: ``items`` [B, C] -> [B, C]."""


class FullScores(ItemScores):
    """Slices of one ``score_all`` result (the fallback every model supports)."""

    whole_block: ClassVar[bool] = True

    def __init__(self, scores: Tensor) -> None:
        self.scores = scores

    def range(self, start: int, stop: int) -> Tensor:
        block = self.scores[:, start:stop]
        # A private copy: ``score_all`` may return an expanded row or a parameter view.
        return block.float() if block.dtype != torch.float32 else block.clone(memory_format=torch.contiguous_format)

    def at(self, items: Tensor) -> Tensor:
        if items.numel() and int(items.max()) >= self.scores.shape[-1]:
            raise ValueError(
                f"score_all returned shape {tuple(self.scores.shape)}, which has no column for item "
                f"{int(items.max())}: the model and the data disagree on the catalogue size"
            )
        return self.scores.gather(1, items).float()


class DotProductScores(ItemScores):
    """``users @ table[start:stop].T + bias[start:stop]`` with the user side fixed.

    ``bias`` is per item ([num_items]), one shared scalar ([1]) or None. The product and
    the bias are separate operations with the same type promotion as the models'
    ``score_all`` (a bf16 product plus a float32 bias is float32), so the whole range
    gives ``score_all``'s numbers; a narrower product may round in the last bit.
    """

    def __init__(self, users: Tensor, table: Tensor, bias: Tensor | None = None) -> None:
        self.users, self.table, self.bias = users, table, bias

    def range(self, start: int, stop: int) -> Tensor:
        scores = self.users @ self.table[start:stop].T
        if self.bias is not None:
            scores = scores + (self.bias if self.bias.numel() == 1 else self.bias[start:stop])
        return scores.float()

    def at(self, items: Tensor) -> Tensor:
        # One matrix product over the listed rows (the kernel ``range`` uses), then each
        # row keeps its own columns: [B, B*C] is small for evaluation batches.
        flat = items.reshape(-1)
        scores = self.users @ self.table[flat].T
        if self.bias is not None:
            scores = scores + (self.bias if self.bias.numel() == 1 else self.bias[flat])
        width = items.shape[1]
        own = torch.arange(len(items), device=items.device).unsqueeze(1) * width + torch.arange(
            width, device=items.device
        )
        return scores.gather(1, own).float()


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
