"""Switching a model to eval mode for a block, whatever mode it was in before."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model.eval()`` and restore its previous train/eval mode after.

    Scoring between training steps (evaluation, curriculum scoring, hard-negative
    mining) must not leave dropout switched off for the steps that follow.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
