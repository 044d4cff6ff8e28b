"""Pointwise attention scored in causal query blocks equals the one-block computation."""
from __future__ import annotations

import pytest
import torch

from recmodels.hstu_layers import MASKED_SCORE, PointwiseAttention, causal_blocks


@pytest.mark.parametrize(("length", "block"), [(200, 64), (13, 4), (5, 64), (1, 1), (7, 1)])
def test_causal_blocks_tile_the_queries_in_order(length: int, block: int) -> None:
    ranges = causal_blocks(length, block)
    assert ranges[0][0] == 0 and ranges[-1][1] == length
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(ranges, ranges[1:]))
    sizes = [stop - start for start, stop in ranges]
    assert min(sizes) >= 1
    assert len(ranges) == max(1, int(length / block + 0.5))


def padded_mask(lengths: list[int], length: int) -> torch.Tensor:
    """Additive [B,L,L] mask of left-padded rows: causal and padded keys masked."""
    valid = torch.arange(length)[None] >= length - torch.tensor(lengths)[:, None]
    keep = torch.ones(length, length, dtype=torch.bool).tril()[None] & valid[:, None, :]
    return torch.zeros(keep.shape).masked_fill_(~keep, MASKED_SCORE)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("shared_mask", [False, True])  # [B,L,L] or unpadded [1,L,L]
def test_blocked_attention_equals_one_block_with_gradients(heads: int, shared_mask: bool) -> None:
    torch.manual_seed(0)
    batch, length, dqk, dv = 3, 13, 4, 5
    blocked = PointwiseAttention(heads, dqk, dv, max_len=16, query_block=4)
    torch.nn.init.normal_(blocked.rel_bias.weight)
    whole = PointwiseAttention(heads, dqk, dv, max_len=16, query_block=10**6)
    whole.load_state_dict(blocked.state_dict())
    mask = padded_mask([13, 6, 1], length)[:1] if shared_mask else padded_mask([13, 6, 1], length)
    inputs = [torch.randn(batch, length, heads * d, requires_grad=True) for d in (dqk, dqk, dv)]
    grad_out = torch.randn(batch, length, heads * dv)

    def run(module: PointwiseAttention):
        for t in inputs:
            t.grad = None
        out = module(*inputs, mask)
        out.backward(grad_out)
        return out, [t.grad.clone() for t in inputs], module.rel_bias.weight.grad.clone()

    out_b, grads_b, bias_b = run(blocked)
    out_w, grads_w, bias_w = run(whole)
    assert len(causal_blocks(length, 4)) == 3
    torch.testing.assert_close(out_b, out_w, atol=1e-6, rtol=1e-5)
    for g_b, g_w in zip(grads_b, grads_w):
        torch.testing.assert_close(g_b, g_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bias_b, bias_w, atol=1e-6, rtol=1e-5)


def test_block_sizes_are_checked_and_chosen_by_device() -> None:
    with pytest.raises(ValueError, match="query_block and accelerator_query_block must be >= 1"):
        PointwiseAttention(1, 4, 4, max_len=8, query_block=0)
    attention = PointwiseAttention(1, 4, 4, max_len=8, query_block=3, accelerator_query_block=7)
    assert attention.block_rows(torch.device("cpu")) == 3
    assert attention.block_rows(torch.device("meta")) == 7  # any accelerator
    assert len(causal_blocks(200, attention.block_rows(torch.device("meta")))) == 29
