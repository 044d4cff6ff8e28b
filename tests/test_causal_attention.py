"""Chunked causal attention (recmodels/causal_attention.py) against float64 SDPA, its
chunking and memory arithmetic by hand, where the encoder uses it, and its FLOP count."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from recmodels import causal_attention as ca
from recmodels.transformer import SelfAttention, TransformerEncoder

REPO = Path(__file__).resolve().parents[1]


def _heads(qkv: torch.Tensor, heads: int):
    """q, k, v [B, H, L, dh] of a fused projection [B, L, 3 H dh], as the encoder splits it."""
    batch, length, width = qkv.shape
    return qkv.view(batch, length, 3, heads, width // (3 * heads)).permute(2, 0, 3, 1, 4)


@pytest.mark.parametrize("length", [1, 2, 99, 150, 200, 333])
@pytest.mark.parametrize("heads", [1, 2])
def test_outputs_and_gradients_equal_float64_sdpa(length: int, heads: int) -> None:
    torch.manual_seed(length)
    qkv = torch.randn(3, length, 3 * heads * 8, requires_grad=True)
    grad = torch.randn(3, length, heads * 8)
    out = ca.causal_attention(qkv, heads)
    out.backward(grad)
    qkv64 = qkv.detach().double().requires_grad_()
    q, k, v = _heads(qkv64, heads)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(3, length, -1)
    expected.backward(grad.double())
    torch.testing.assert_close(out.double(), expected, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(qkv.grad.double(), qkv64.grad, atol=2e-5, rtol=1e-5)


def test_a_query_never_sees_later_keys() -> None:
    """Changing the last key and value moves only the last output row."""
    torch.manual_seed(0)
    qkv = torch.randn(1, 250, 12, requires_grad=True)
    before = ca.causal_attention(qkv, 1).detach()
    changed = qkv.detach().clone()
    changed[:, -1, 4:] += 5.0  # the last key and value
    after = ca.causal_attention(changed.requires_grad_(), 1).detach()
    assert torch.equal(after[:, :-1], before[:, :-1])
    assert not torch.equal(after[:, -1], before[:, -1])


@pytest.mark.parametrize(
    "length, bounds",
    [(1, [(0, 1)]), (149, [(0, 149)]), (150, [(0, 75), (75, 150)]), (200, [(0, 100), (100, 200)]),
     (300, [(0, 100), (100, 200), (200, 300)])],
)
def test_chunks_cover_the_rows_once(length: int, bounds: list[tuple[int, int]]) -> None:
    assert ca.chunk_bounds(length) == bounds


def test_kept_softmax_by_hand() -> None:
    # 200 positions, two chunks: rows 0-99 see 100 keys, rows 100-199 see 200.
    assert ca.saved_floats(batch=128, length=200) == 128 * (100 * 100 + 100 * 200)
    assert ca.saved_floats(batch=4, length=149) == 4 * 149 * 149


def _qkv(length: int = 16, dtype=torch.float32, grad: bool = True):
    return torch.randn(2, length, 12, dtype=dtype, requires_grad=grad)


def test_fits_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ca.fits(_qkv(), 1, dropout_p=0.0)
    assert not ca.fits(_qkv(grad=False), 1, dropout_p=0.0)  # evaluation: nothing to keep
    with torch.no_grad():
        assert not ca.fits(_qkv(), 1, dropout_p=0.0)
    assert not ca.fits(_qkv(), 1, dropout_p=0.1)  # attention dropout: the fused kernel
    assert not ca.fits(_qkv(dtype=torch.float64), 1, dropout_p=0.0)
    monkeypatch.setattr(ca, "SAVED_BYTES_LIMIT", ca.saved_floats(2 * 2, 16) * 4 - 1)
    assert ca.fits(_qkv(length=16), 1, dropout_p=0.0)
    assert not ca.fits(_qkv(length=16), 2, dropout_p=0.0)  # two heads: one float over the budget


class _Spy:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = ca.causal_attention

        def spy(*args):
            self.calls += 1
            return real(*args)

        monkeypatch.setattr(ca, "causal_attention", spy)


def test_encoder_trains_through_it_and_matches_the_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """A left-padded causal batch: the chunked route gives the fused kernel's outputs and
    gradients; evaluation keeps the fused kernel."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=8, num_blocks=2, num_heads=2, max_len=12, dropout=0.0)
    encoder.train()
    lengths = torch.tensor([12, 7, 3, 1])
    valid = torch.arange(12)[None, :] >= 12 - lengths[:, None]
    x = torch.randn(4, 12, 8) * valid[..., None]

    def run():
        encoder.zero_grad()
        out = encoder(x, valid)
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in encoder.parameters()]

    spy = _Spy(monkeypatch)
    chunked_out, chunked_grads = run()
    assert spy.calls > 0
    monkeypatch.setattr(ca, "fits", lambda *args: False)
    fused_out, fused_grads = run()
    torch.testing.assert_close(chunked_out, fused_out, atol=1e-5, rtol=1e-5)
    for got, want in zip(chunked_grads, fused_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_evaluation_uses_the_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    attention = SelfAttention(dim=8, num_heads=1).eval()
    spy = _Spy(monkeypatch)
    with torch.no_grad():
        attention(torch.randn(2, 5, 8), None, True)
    assert spy.calls == 0


def test_flop_count_is_the_pairs_attention_needs() -> None:
    """Counted as one op (the products inside are not seen), by profile_epoch's formula."""
    spec = importlib.util.spec_from_file_location("profile_epoch", REPO / "scripts" / "profile_epoch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    batch, heads, length, dim = 2, 3, 210, 4  # two chunks: the products cover 3/4 of the square
    qkv = torch.randn(batch, length, 3 * heads * dim, requires_grad=True)
    counter = FlopCounterMode(display=False, custom_mapping=module.flop_mapping())
    with counter:
        ca.causal_attention(qkv, heads).sum().backward()
    pairs = length * (length + 1) // 2
    assert counter.get_total_flops() == 6 * 2 * batch * heads * pairs * dim


def test_bf16_autocast_keeps_attention_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CPU bf16 autocast the chunked route runs in fp32, like the fused kernel there:
    its products are not cast down inside the op."""
    torch.manual_seed(0)
    attention = SelfAttention(dim=8, num_heads=2).train()
    x = torch.randn(3, 150, 8)

    def run():
        attention.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = attention(x, None, True)
        out.float().pow(2).sum().backward()
        return out.detach().float(), [p.grad.clone() for p in attention.parameters()]

    spy = _Spy(monkeypatch)
    chunked = run()
    assert spy.calls == 1
    monkeypatch.setattr(ca, "fits", lambda *args: False)
    fused = run()
    torch.testing.assert_close(chunked[0], fused[0], atol=1e-3, rtol=1e-3)
    for got, want in zip(chunked[1], fused[1]):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
