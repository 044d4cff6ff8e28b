"""a @ b.T through oneDNN on CPU (recmodels/cpu_products.py) against float64 products."""
from __future__ import annotations

import pytest
import torch

import recmodels.cpu_products as cpu_products
from recmodels.cpu_products import onednn_linear_available, product_nt


def operands(m: int, k: int, n: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """a [m, k] and b [n, k], each contiguous or a transposed view, as the streamed CE passes them."""
    g = torch.Generator().manual_seed(m * 131 + k * 7 + n)
    a = torch.randn(m, k, generator=g) if layout[0] == "c" else torch.randn(k, m, generator=g).T
    b = torch.randn(n, k, generator=g) if layout[1] == "c" else torch.randn(k, n, generator=g).T
    return a, b


@pytest.mark.parametrize("layout", ["cc", "tc", "ct", "tt"])
@pytest.mark.parametrize(("m", "k", "n"), [(128, 50, 3416), (50, 3416, 128), (50, 128, 3416), (1, 3, 2), (7, 1, 5)])
def test_product_equals_float64_reference(m: int, k: int, n: int, layout: str) -> None:
    a, b = operands(m, k, n, layout)
    with torch.no_grad():
        out = product_nt(a, b)
    assert out.shape == (m, n) and out.dtype == torch.float32
    expected = a.double() @ b.double().T
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5 * k**0.5)


@pytest.mark.parametrize("with_out", [False, True])
def test_bias_is_added_per_column_and_fallback_writes_into_out(with_out: bool, monkeypatch) -> None:
    a, b = operands(6, 4, 9, "cc")
    bias = torch.linspace(-1, 1, 9)
    expected = a.double() @ b.double().T + bias.double()
    for onednn in {False, onednn_linear_available()}:
        monkeypatch.setattr(cpu_products, "_ONEDNN", onednn)
        out = torch.empty(6, 9) if with_out else None
        with torch.no_grad():
            result = product_nt(a, b, bias, out=out)
        torch.testing.assert_close(result.double(), expected, rtol=1e-5, atol=1e-5)
        if with_out and not onednn:
            assert result.data_ptr() == out.data_ptr()  # the buffer really was reused


@pytest.mark.skipif(not onednn_linear_available(), reason="torch built without oneDNN")
def test_onednn_runs_only_where_it_fits(monkeypatch) -> None:
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    class Spy:
        def __call__(self, *args):
            calls.append(args[0].shape)
            return real(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", Spy())
    a, b = operands(4, 3, 5, "cc")
    with torch.no_grad():
        product_nt(a, b)
        assert len(calls) == 1
        product_nt(a.double(), b.double())  # not fp32
        product_nt(a[:0], b)  # empty
    product_nt(a, b)  # grad mode: the op has no autograd formula
    assert len(calls) == 1
    bf16 = product_nt(a.bfloat16(), b.bfloat16())
    assert bf16.dtype == torch.bfloat16


def test_product_keeps_autograd_where_grad_is_enabled() -> None:
    a, b = operands(3, 4, 5, "cc")
    a.requires_grad_(True)
    product_nt(a, b).sum().backward()
    torch.testing.assert_close(a.grad, b.sum(0).expand(3, 4))
