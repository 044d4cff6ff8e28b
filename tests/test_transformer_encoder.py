"""The shared self-attention encoder: masking, padding, length grouping, precision."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from recmodels.transformer import (
    Dropout,
    LayerNorm,
    SelfAttention,
    TransformerEncoder,
    causal_shift,
    cpu_keep_mask,
    length_groups,
    roll_rows,
)

D = 16


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (severe on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_encoder(causal: bool, pre_ln: bool = True, max_groups: int = 3, seed: int = 0) -> TransformerEncoder:
    torch.manual_seed(seed)
    enc = TransformerEncoder(
        D, num_blocks=2, num_heads=2, max_len=10, dropout=0.0, pre_ln=pre_ln, causal=causal,
        max_groups=max_groups,
    )
    return enc.eval()


def left_padded_batch(
    lengths: list[int], length: int = 8, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.arange(length)[None, :] >= (length - torch.tensor(lengths))[:, None]
    x = torch.randn(len(lengths), length, D, generator=g) * valid[..., None]
    return x, valid


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pre_ln", [True, False])
def test_shapes_and_padded_rows_zero(causal: bool, pre_ln: bool) -> None:
    enc = make_encoder(causal, pre_ln)
    x, valid = left_padded_batch([8, 3, 1, 5])
    out = enc(x, valid)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert (out[~valid] == 0).all()
    assert (out[valid].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_padded_inputs_never_reach_real_outputs(causal: bool) -> None:
    enc = make_encoder(causal)
    x, valid = left_padded_batch([8, 3, 1, 5])
    noisy = x + 100.0 * torch.randn_like(x) * (~valid)[..., None]
    torch.testing.assert_close(enc(noisy, valid)[valid], enc(x, valid)[valid])


def test_causal_future_items_do_not_change_earlier_outputs() -> None:
    enc = make_encoder(causal=True)
    x, valid = left_padded_batch([8, 6])
    changed = x.clone()
    # Position 5 is real in both rows; a random change (a constant shift vanishes in LayerNorm).
    changed[:, 5] += torch.randn(D)
    before, after = enc(x, valid), enc(changed, valid)
    torch.testing.assert_close(after[:, :5], before[:, :5])
    assert not torch.allclose(after[:, 5:], before[:, 5:])


def test_bidirectional_sees_future_items() -> None:
    enc = make_encoder(causal=False)
    x, valid = left_padded_batch([8, 6])
    changed = x.clone()
    changed[:, 7] += torch.randn(D)
    assert not torch.allclose(enc(changed, valid)[:, 3], enc(x, valid)[:, 3])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("max_groups", [1, 3])
def test_all_padding_rows_stay_finite_with_finite_gradients(causal: bool, max_groups: int) -> None:
    enc = make_encoder(causal, max_groups=max_groups).train()
    x, valid = left_padded_batch([0, 1, 8, 0])
    x.requires_grad_(True)
    out = enc(x, valid)
    assert torch.isfinite(out).all()
    assert (out[0] == 0).all() and (out[3] == 0).all()
    out.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()


def test_attention_matches_explicit_softmax_reference() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(D, num_heads=2).eval()
    x = torch.randn(2, 5, D)
    keep = torch.rand(2, 1, 5, 5) > 0.3
    keep |= torch.eye(5, dtype=torch.bool)  # every row keeps itself
    with torch.no_grad():
        out = attn(x, keep, is_causal=False)

    w_qkv, b_qkv = attn.qkv.weight.detach(), attn.qkv.bias.detach()
    dh = D // 2

    def project(vec: torch.Tensor, which: int, head: int) -> torch.Tensor:
        """which: 0 = query, 1 = key, 2 = value; rows of the fused projection for one head."""
        rows = slice(which * D + head * dh, which * D + (head + 1) * dh)
        return vec @ w_qkv[rows].T + b_qkv[rows]

    expected = torch.zeros(2, 5, D)
    for b, h, i in itertools.product(range(2), range(2), range(5)):
        q = project(x[b, i], 0, h)
        allowed = [j for j in range(5) if keep[b, 0, i, j]]
        logits = torch.tensor([float(q @ project(x[b, j], 1, h)) / math.sqrt(dh) for j in allowed])
        weights = torch.softmax(logits, 0)
        expected[b, i, h * dh : (h + 1) * dh] = sum(
            w * project(x[b, j], 2, h) for w, j in zip(weights, allowed)
        )
    with torch.no_grad():
        expected = attn.proj(expected)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
def test_length_grouping_is_exact_including_gradients(causal: bool) -> None:
    lengths = [10, 1, 2, 9, 3, 10, 4, 2]
    x, valid = left_padded_batch(lengths, length=10)
    results = []
    for groups in (1, 3):
        enc = make_encoder(causal, max_groups=groups, seed=3).train()  # dropout 0: deterministic
        xi = x.clone().requires_grad_(True)
        out = enc(xi, valid)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, xi.grad, [p.grad.clone() for p in enc.parameters()]))
    (o1, g1, p1), (o3, g3, p3) = results
    torch.testing.assert_close(o3, o1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g3, g1, atol=1e-5, rtol=1e-4)
    for a, b in zip(p3, p1):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert len(length_groups(valid, D, max_groups=3)) > 1  # the grouped path really ran


def masked_encode(enc: TransformerEncoder, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The encoder's blocks run on the unrolled batch with the explicit causal+padding mask."""
    mask, is_causal = enc.attention_mask(valid)
    for block in enc.blocks:
        x = block(x, mask, is_causal)
    return enc.norm(x).masked_fill(~valid[..., None], 0.0)


def test_rolled_causal_path_equals_the_masked_path_including_gradients() -> None:
    lengths = [10, 1, 0, 7, 3]
    x, valid = left_padded_batch(lengths, length=10)
    enc = make_encoder(causal=True, max_groups=1, seed=5)
    assert causal_shift(valid).tolist() == [0, 9, 0, 3, 7]  # the empty row stays put
    results = []
    for encode in (enc._encode, lambda a, v: masked_encode(enc, a, v)):
        xi = x.clone().requires_grad_(True)
        out = encode(xi, valid)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, xi.grad, [p.grad.clone() for p in enc.blocks.parameters()]))
        enc.zero_grad()
    (o1, g1, p1), (o2, g2, p2) = results
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_roll_rows_by_hand_and_back() -> None:
    x = torch.arange(12).view(3, 4)
    shift = torch.tensor([0, 1, 3])
    assert roll_rows(x, shift).tolist() == [[0, 1, 2, 3], [5, 6, 7, 4], [11, 8, 9, 10]]
    assert torch.equal(roll_rows(roll_rows(x, shift), -shift), x)


def test_rows_with_holes_or_no_padding_keep_the_explicit_mask() -> None:
    holes = torch.tensor([[False, True, False, True], [True, True, True, True]])
    assert causal_shift(holes) is None
    assert causal_shift(torch.ones(2, 4, dtype=torch.bool)) is None
    enc = make_encoder(causal=True, max_groups=1)
    x = torch.randn(2, 4, D) * holes[..., None]
    with torch.no_grad():
        torch.testing.assert_close(enc._encode(x, holes), masked_encode(enc, x, holes))


def test_length_groups_minimise_cost_by_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)

    def cost(rows: int, span: int) -> int:
        return rows * span * (span + 6 * 2)

    for _ in range(100):
        batch = int(torch.randint(1, 8, (1,), generator=gen))
        spans = torch.randint(0, 11, (batch,), generator=gen)
        valid = torch.arange(10)[None, :] >= (10 - spans)[:, None]
        groups = length_groups(valid, 2, max_groups=3, group_overhead=0.0)
        got = sum(cost(batch if rows is None else len(rows), span) for rows, span in groups)
        ordered = sorted(max(int(s), 1) for s in spans)
        best = min(
            sum(cost(b - a, ordered[b - 1]) for a, b in zip((0,) + cuts, cuts + (batch,)))
            for k in range(3)
            for cuts in itertools.combinations(range(1, batch), k)
        )
        assert got == best
        covered = sorted(itertools.chain.from_iterable(
            range(batch) if rows is None else rows.tolist() for rows, _ in groups
        ))
        assert covered == list(range(batch))
        for rows, span in groups:
            for r in range(batch) if rows is None else rows.tolist():
                assert max(int(spans[r]), 1) <= span


def test_longer_than_max_len_is_rejected() -> None:
    enc = make_encoder(causal=True)
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.zeros(1, 11, D), torch.ones(1, 11, dtype=torch.bool))


@pytest.mark.parametrize("causal", [True, False])
def test_bf16_autocast_runs_and_tracks_fp32(causal: bool) -> None:
    enc = make_encoder(causal)
    x, valid = left_padded_batch([8, 3, 5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = enc(x, valid)
    high = enc(x, valid)
    assert torch.isfinite(low).all()
    assert (low.float() - high).abs().max() < 0.1


def test_cpu_dropout_keeps_expected_fraction_and_scale() -> None:
    torch.manual_seed(0)
    drop = Dropout(0.3).train()
    out = drop(torch.ones(200_000))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert torch.equal(drop.eval()(torch.ones(10)), torch.ones(10))
    # The four 16-bit lanes of one draw are independent: no correlation between neighbours.
    mask = cpu_keep_mask(torch.Size([400_000]), 0.5).float()
    corr = torch.corrcoef(torch.stack([mask[0::4], mask[1::4], mask[2::4], mask[3::4]]))
    assert (corr - torch.eye(4)).abs().max() < 0.01


def test_layer_norm_split_affine_path_matches_fused() -> None:
    torch.manual_seed(0)
    mine, ref = LayerNorm(D), torch.nn.LayerNorm(D)
    with torch.no_grad():
        for p in (mine.weight, mine.bias):
            p.normal_()
    ref.load_state_dict(mine.state_dict())
    x = torch.randn(3, 7, D)
    torch.set_num_threads(2)  # the split path is taken on multi-threaded CPU only
    outs = []
    for module in (mine, ref):
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        out.backward(torch.ones_like(out) * torch.arange(D))
        outs.append((out, xi.grad, module.weight.grad, module.bias.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
