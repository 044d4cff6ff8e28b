"""``a @ b.T`` in fp32 on CPU through oneDNN, the product the streamed cross-entropy runs most.

torch's CPU ``mm`` calls MKL's sgemm. At the full softmax's shapes (a 128-row block of
hidden states against a few thousand items, with an inner or outer width of d = 50),
MKL ran at about 140-147 GFLOP/s on a 2-core AVX-512 machine where oneDNN's inner
product primitive, which torch also ships (the one its compiler fuses linears into),
ran at 180-193 GFLOP/s, near the machine's large-square rate, with bit-identical or
last-bit results. Other devices, other dtypes, empty inputs and builds without oneDNN
use ``torch.mm``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def onednn_linear_available() -> bool:
    """Whether this torch build has oneDNN's fp32 linear op."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_ONEDNN = onednn_linear_available()


def product_nt(a: Tensor, b: Tensor, bias: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """``a @ b.T (+ bias)``: a [m, k], b [n, k] (any strides) -> [m, n].

    ``out`` is a buffer the ``torch.mm`` path writes into (saving an allocation); the
    oneDNN path returns a new tensor and leaves it untouched.
    """
    if _ONEDNN and _fits_onednn(a, b, bias):
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    if out is None:
        return a @ b.T if bias is None else torch.addmm(bias, a, b.T)
    if bias is None:
        return torch.mm(a, b.T, out=out)
    return torch.addmm(bias, a, b.T, out=out)


def _fits_onednn(a: Tensor, b: Tensor, bias: Tensor | None) -> bool:
    tensors = (a, b) if bias is None else (a, b, bias)
    return (
        all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and a.dim() == 2
        and b.dim() == 2
        and a.numel() > 0
        and b.numel() > 0
        and not torch.is_grad_enabled()
    )
