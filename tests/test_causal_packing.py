"""Packed causal groups (recmodels/causal_packing.py): the gather and output indices by
hand, and the packed encoder equal to the stepwise path (trim, roll, mask, pad)."""
from __future__ import annotations

import pytest
import torch

import recmodels.transformer as transformer
from recmodels.causal_packing import left_padded, packing_plan
from tests.test_transformer_encoder import left_padded_batch, make_encoder


def test_one_group_by_hand() -> None:
    # row 0: 5 items; row 1: items at positions 3, 4; row 2: empty.
    valid = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    (group,), output = packing_plan(valid, [(None, 5)])
    assert (group.rows, group.span) == (3, 5)
    # Items first, then the row's own padding (as rolling left by the padding does).
    assert group.source.view(3, 5).tolist() == [[0, 1, 2, 3, 4], [8, 9, 5, 6, 7], [10, 11, 12, 13, 14]]
    zero = 15  # the row after all groups
    assert output.view(3, 5).tolist() == [[0, 1, 2, 3, 4], [zero, zero, zero, 5, 6], [zero] * 5]


def test_two_trimmed_groups_by_hand() -> None:
    valid = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    groups = [(torch.tensor([2, 1]), 2), (torch.tensor([0]), 5)]
    (short, full), output = packing_plan(valid, groups)
    # Span 2 covers positions 3-4: the empty row keeps its (padding) positions, row 1 its items.
    assert short.source.view(2, 2).tolist() == [[13, 14], [8, 9]]
    assert full.source.tolist() == [0, 1, 2, 3, 4]
    zero = 2 * 2 + 5
    assert output.view(3, 5).tolist() == [[4, 5, 6, 7, 8], [zero, zero, zero, 2, 3], [zero] * 5]


def test_left_padded_by_hand() -> None:
    assert left_padded(torch.tensor([[0, 1, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.bool))
    assert not left_padded(torch.tensor([[0, 1, 0], [1, 1, 1]], dtype=torch.bool))  # a hole
    assert not left_padded(torch.tensor([[1, 1, 0]], dtype=torch.bool))  # right padding


@pytest.mark.parametrize("max_groups", [1, 3])
def test_packed_encoder_equals_the_stepwise_path(max_groups: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs, input gradients and parameter gradients, empty and full rows included."""
    x, valid = left_padded_batch([10, 1, 0, 9, 3, 10, 4, 2], length=10)
    weights = torch.linspace(-1, 1, x.numel()).view_as(x)
    enc = make_encoder(causal=True, max_groups=max_groups, seed=7).train()

    def run():
        enc.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = enc(xi, valid)
        (out * weights).sum().backward()
        return out.detach(), xi.grad, [p.grad.clone() for p in enc.parameters()]

    calls = []
    real_plan = transformer.packing_plan
    monkeypatch.setattr(transformer, "packing_plan", lambda *a: calls.append(1) or real_plan(*a))
    packed = run()
    assert calls  # the packed path ran
    monkeypatch.setattr(transformer, "left_padded", lambda valid: False)
    stepwise = run()
    assert torch.equal(packed[0][~valid], torch.zeros_like(packed[0][~valid]))  # padding is zero
    torch.testing.assert_close(packed[0], stepwise[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(packed[1], stepwise[1], atol=1e-6, rtol=1e-5)
    for a, b in zip(packed[2], stepwise[2]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
