"""Sequence training batches: deterministic masks per batch key, padding trimmed safely."""
from __future__ import annotations

import numpy as np
import torch

from data_modules.batching import BatchKey
from data_modules.interactions import Histories
from data_modules.sequence_windows import SequenceTrainingSet
from data_modules.sequence_module import SequenceBatches
from recmodels.sasrec import SASRec


def _windows(max_len: int = 12) -> SequenceTrainingSet:
    lengths = np.array([3, 5, 4, 9])  # every history shorter than max_len: padding columns
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = np.arange(indptr[-1]) % 20
    return SequenceTrainingSet(Histories(indptr, items), max_len)


def test_masks_repeat_for_a_batch_key_and_change_across_epochs() -> None:
    batches = SequenceBatches(_windows(), "masked", mask_prob=0.4, last_item_prob=0.0)
    idx = np.arange(4)
    first = batches[BatchKey(0, 0, idx, 7)]
    again = batches[BatchKey(0, 0, idx, 7)]
    later = [batches[BatchKey(e, 0, idx, 7)] for e in range(1, 6)]
    assert torch.equal(first["history"], again["history"]) and torch.equal(first["targets"], again["targets"])
    assert any(not torch.equal(first["targets"], b["targets"]) for b in later)
    masked = first["targets"] >= 0
    assert (first["history"][masked] == -2).all()  # the model never sees a masked target


def test_trimmed_padding_gives_the_same_hidden_states() -> None:
    windows = _windows()
    batches = SequenceBatches(windows, "causal", mask_prob=0.2, last_item_prob=0.0)
    batch = batches[BatchKey(0, 0, np.arange(4), 0)]
    assert batch["history"].shape[1] == 9 - 1  # longest history minus its last item
    full = windows.__getitems__(list(range(4)))["sequence"][:, :-1]
    model = SASRec(num_items=20, hidden=8, num_blocks=1, max_len=12, dropout=0.0).eval()
    with torch.no_grad():
        trimmed_out = model(batch["history"])
        full_out = model(full)[:, -batch["history"].shape[1]:]
    real = batch["history"] >= 0
    torch.testing.assert_close(trimmed_out[real], full_out[real], rtol=1e-5, atol=1e-5)
