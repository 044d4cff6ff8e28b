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


def _reference(q, k, v, grad):
    """Outputs and gradients of float64 SDPA with is_causal=True."""
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q64, k64, v64, is_causal=True)
    out.backward(grad.double())
    return out, (q64.grad, k64.grad, v64.grad)


@pytest.mark.parametrize("length", [1, 2, 99, 150, 200, 333])
def test_outputs_and_gradients_equal_float64_sdpa(length: int) -> None:
    torch.manual_seed(length)
    q, k, v = (torch.randn(3, 2, length, 8, requires_grad=True) for _ in range(3))
    grad = torch.randn(3, 2, length, 8)
    out = ca.causal_attention(q, k, v)
    out.backward(grad)
    expected, expected_grads = _reference(q, k, v, grad)
    torch.testing.assert_close(out.double(), expected, atol=2e-6, rtol=1e-5)
    for got, want in zip((q.grad, k.grad, v.grad), expected_grads):
        torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)


def test_a_query_never_sees_later_keys() -> None:
    """Changing the last key and value moves only the last output row."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 250, 4, requires_grad=True) for _ in range(3))
    before = ca.causal_attention(q, k, v).detach()
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[..., -1, :] += 5.0
    v2[..., -1, :] -= 5.0
    after = ca.causal_attention(q, k2.requires_grad_(), v2.requires_grad_()).detach()
    assert torch.equal(after[..., :-1, :], before[..., :-1, :])
    assert not torch.equal(after[..., -1, :], before[..., -1, :])


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
    return tuple(torch.randn(2, 1, length, 4, dtype=dtype, requires_grad=grad) for _ in range(3))


def test_fits_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ca.fits(*_qkv(), dropout_p=0.0)
    assert not ca.fits(*_qkv(grad=False), dropout_p=0.0)  # evaluation: nothing to keep
    with torch.no_grad():
        assert not ca.fits(*_qkv(), dropout_p=0.0)
    assert not ca.fits(*_qkv(), dropout_p=0.1)  # attention dropout: the fused kernel
    assert not ca.fits(*_qkv(dtype=torch.float64), dropout_p=0.0)
    q, k, v = _qkv(length=16)
    monkeypatch.setattr(ca, "SAVED_BYTES_LIMIT", ca.saved_floats(2, 16) * 4 - 1)
    assert not ca.fits(q, k, v, dropout_p=0.0)  # one float over the memory budget


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
    q, k, v = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))
    counter = FlopCounterMode(display=False, custom_mapping=module.flop_mapping())
    with counter:
        ca.causal_attention(q, k, v).sum().backward()
    pairs = length * (length + 1) // 2
    assert counter.get_total_flops() == 6 * 2 * batch * heads * pairs * dim
