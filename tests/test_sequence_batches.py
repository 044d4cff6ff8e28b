"""Training windows and collates for sequence models, checked against brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_modules.interactions import PAD, Histories
from data_modules.sequence_windows import MASK, SequenceTrainingSet, causal_collate, masked_collate


def histories_of(seqs: list[list[int]]) -> Histories:
    indptr = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=indptr[1:])
    items = np.array([i for s in seqs for i in s], dtype=np.int64)
    return Histories(indptr=indptr, items=items)


def brute_force_windows(
    seqs: list[list[int]], max_len: int, stride: int | None
) -> list[tuple[int, list[int]]]:
    width = max_len + 1
    out = []
    for user, seq in enumerate(seqs):
        if len(seq) < 2:
            continue
        end = len(seq)
        while True:
            window = seq[max(0, end - width) : end]
            out.append((user, [PAD] * (width - len(window)) + window))
            if stride is None or end - width <= 0:
                break
            end -= stride
    return out


SEQS = [[5], [1, 2], list(range(10, 23)), [], [7, 8, 9, 4, 3], list(range(30, 37))]


@pytest.mark.parametrize("sliding", [False, True, 1, 2, 3])
def test_windows_match_brute_force(sliding) -> None:
    data = SequenceTrainingSet(histories_of(SEQS), max_len=4, sliding_windows=sliding)
    stride = None if sliding is False else (4 if sliding is True else sliding)
    expected = brute_force_windows(SEQS, 4, stride)
    got = sorted(zip(data.users.tolist(), data.sequences.tolist()))
    assert got == sorted(expected)
    assert data.report["skipped_users_fewer_than_2_items"] == 2
    assert data.report["examples"] == len(expected)


def test_stride_max_len_makes_every_item_but_the_first_a_target_once() -> None:
    data = SequenceTrainingSet(histories_of(SEQS), max_len=4, sliding_windows=True)
    batch = causal_collate(data.__getitems__(list(range(len(data)))))
    for user, seq in enumerate(SEQS):
        rows = batch["user"] == user
        targets = batch["targets"][rows]
        assert sorted(targets[targets >= 0].tolist()) == sorted(seq[1:])
    assert data.report["targets"] == sum(max(len(s) - 1, 0) for s in SEQS)


def test_bad_stride_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValueError, match="stride must be in 1..max_len"):
        SequenceTrainingSet(histories_of(SEQS), max_len=4, sliding_windows=5)


def test_causal_collate_shifts_and_masks_targets() -> None:
    data = SequenceTrainingSet(histories_of([[1, 2, 3], list(range(10, 20))]), max_len=4)
    batch = causal_collate(data.__getitems__([0, 1]))
    assert batch["user"].tolist() == [0, 1]
    assert batch["history"].tolist() == [[-1, -1, 1, 2], [15, 16, 17, 18]]
    assert batch["targets"].tolist() == [[-1, -1, 2, 3], [16, 17, 18, 19]]
    assert batch["history"].dtype == torch.long and batch["targets"].dtype == torch.long


def test_dataloader_fetches_whole_batches_and_list_fallback_agrees() -> None:
    data = SequenceTrainingSet(histories_of(SEQS), max_len=4, sliding_windows=True)
    loader = DataLoader(data, batch_size=3, shuffle=False, collate_fn=causal_collate)
    batches = list(loader)
    assert sum(len(b["user"]) for b in batches) == len(data)
    fallback = causal_collate([data[i] for i in range(3)])
    for key in ("user", "history", "targets"):
        assert torch.equal(batches[0][key], fallback[key])


def test_masked_collate_statistics() -> None:
    gen = np.random.default_rng(0)
    lengths = gen.integers(2, 30, size=400)
    seqs = [list(gen.integers(0, 50, size=n)) for n in lengths]
    data = SequenceTrainingSet(histories_of(seqs), max_len=20)
    p = 0.2
    collate = masked_collate(p, generator=torch.Generator().manual_seed(0))
    batch = collate(data.__getitems__(list(range(len(data)))))
    seq = data.sequences[:, 1:].long()
    real = seq >= 0
    masked = batch["history"] == MASK
    assert not (masked & ~real).any()  # padding is never masked
    assert (masked.sum(1) >= 1).all()  # at least one target per sequence
    torch.testing.assert_close(batch["targets"][masked], seq[masked])  # targets: the hidden items
    assert (batch["targets"][~masked] == PAD).all()
    torch.testing.assert_close(batch["history"][~masked], seq[~masked])  # everything else intact
    # Expected masked count per row: p*n plus a forced mask when none was drawn, (1-p)^n.
    n = real.sum(1).double()
    expected = (p * n + (1 - p) ** n).sum()
    assert abs(masked.sum().item() - expected.item()) < 4 * expected.sqrt().item()


def test_masked_collate_last_item_probability_and_validation() -> None:
    seqs = [list(range(1, 41))] * 2000
    data = SequenceTrainingSet(histories_of(seqs), max_len=30)
    collate = masked_collate(0.1, last_item_prob=0.5, generator=torch.Generator().manual_seed(1))
    masked_last = (collate(data.__getitems__(list(range(2000))))["history"][:, -1] == MASK).float().mean()
    assert abs(masked_last.item() - (0.1 + 0.9 * 0.5)) < 0.04
    with pytest.raises(ValueError, match="mask_prob"):
        masked_collate(1.5)
    with pytest.raises(ValueError, match="mask_token"):
        masked_collate(0.2, mask_token=-1)


def test_masked_collate_is_reproducible_with_a_generator() -> None:
    data = SequenceTrainingSet(histories_of(SEQS), max_len=4, sliding_windows=True)
    idx = list(range(len(data)))
    a = masked_collate(0.5, generator=torch.Generator().manual_seed(7))(data.__getitems__(idx))
    b = masked_collate(0.5, generator=torch.Generator().manual_seed(7))(data.__getitems__(idx))
    assert torch.equal(a["history"], b["history"]) and torch.equal(a["targets"], b["targets"])
