"""Each loss against a direct computation written out element by element."""
from __future__ import annotations

import math

import pytest
import torch

from recmodels.losses import (
    BinaryCrossEntropy,
    GeneralizedBCE,
    SampledSoftmax,
    make_loss,
    select_targets,
)

I, D, N = 12, 4, 6


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g, dtype=torch.float64).float()
    table = torch.randn(I, D, generator=g).float()
    bias = torch.randn(I, generator=g)
    targets = torch.tensor([0, 3, 3, 11, 7, 5])
    return hidden, table, bias, targets


def dot(hidden: torch.Tensor, table: torch.Tensor, bias: torch.Tensor | None, n: int, i: int) -> float:
    value = sum(float(hidden[n, c]) * float(table[i, c]) for c in range(D))
    return value + (float(bias[i]) if bias is not None else 0.0)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def item_sources(table: torch.Tensor) -> list:
    return [table, lambda ids: table[ids]]  # a plain table and an encoder-like callable


@pytest.mark.parametrize("chunk_rows", ["auto", 0, 4])
@pytest.mark.parametrize("with_bias", [False, True])
def test_full_cross_entropy(chunk_rows, with_bias: bool) -> None:
    hidden, table, bias, targets = tiny()
    bias = bias if with_bias else None
    expected = 0.0
    for n in range(N):
        scores = [dot(hidden, table, bias, n, i) for i in range(I)]
        top = max(scores)
        expected += top + math.log(sum(math.exp(s - top) for s in scores)) - scores[int(targets[n])]
    expected /= N
    loss = make_loss("ce", I, chunk_rows=chunk_rows)
    for items in item_sources(table):
        assert float(loss(hidden, targets, items, bias)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("chunk_rows", [0, 4, 5])  # 5: the last block is shorter
@pytest.mark.parametrize("with_bias", [False, True])
def test_full_cross_entropy_gradients_match_autograd_reference(chunk_rows, with_bias: bool) -> None:
    hidden, table, bias, targets = tiny()
    sources = (hidden, table, bias) if with_bias else (hidden, table)
    params = [t.clone().double().requires_grad_(True) for t in sources]
    h, w, b = (*params, torch.zeros(I, dtype=torch.float64))[:3]
    reference = (torch.logsumexp(h @ w.T + b, 1) - ((h * w[targets]).sum(1) + b[targets])).mean()
    want = torch.autograd.grad(reference, params)
    mine = [t.clone().requires_grad_(True) for t in sources]
    value = make_loss("ce", I, chunk_rows=chunk_rows)(mine[0], targets, mine[1], *mine[2:])
    got = torch.autograd.grad(value, mine)
    for g, r in zip(got, want):
        torch.testing.assert_close(g.double(), r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk_rows", [0, 4])
def test_full_cross_entropy_stays_exact_for_hopeless_rows(chunk_rows) -> None:
    """A target scored hundreds below the best item has a probability that underflows in
    fp32; its loss is still logsumexp - target score (a float64 reference)."""
    hidden, table, bias, targets = tiny()
    hidden = hidden.clone()
    hidden[1] *= 400.0  # huge scores: the row's target probability is 0 in fp32
    scores = hidden.double() @ table.double().T
    assert float(torch.softmax(scores.float(), 1)[1, targets[1]]) < 1e-30
    expected = float((torch.logsumexp(scores, 1) - scores.gather(1, targets[:, None]).squeeze(1)).mean())
    value = float(make_loss("ce", I, chunk_rows=chunk_rows)(hidden, targets, table))
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-5)


def test_full_cross_entropy_under_bf16_autocast_is_close() -> None:
    hidden, table, bias, targets = tiny()
    loss = make_loss("ce", I)
    exact = float(loss(hidden, targets, table, bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(hidden, targets, table, bias)
    assert low.dtype == torch.float32
    assert float(low) == pytest.approx(exact, rel=2e-2)


@pytest.mark.parametrize("num_negatives", [1, 3, 5])  # 5 * D > I: the score-all-then-gather path
@pytest.mark.parametrize("with_bias", [False, True])
def test_bce_with_given_negatives(num_negatives: int, with_bias: bool) -> None:
    hidden, table, bias, targets = tiny()
    bias = bias if with_bias else None
    negatives = torch.stack([(targets + 1 + j) % I for j in range(num_negatives)], 1)
    expected = 0.0
    for n in range(N):
        expected -= log_sigmoid(dot(hidden, table, bias, n, int(targets[n])))
        for j in range(num_negatives):
            expected -= log_sigmoid(-dot(hidden, table, bias, n, int(negatives[n, j])))
    expected /= N
    loss = BinaryCrossEntropy(I, num_negatives=num_negatives)
    loss.sample_negatives = lambda t: negatives
    for items in item_sources(table):
        assert float(loss(hidden, targets, items, bias)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("exclude_positive", [True, False])
def test_uniform_negative_sampling(exclude_positive: bool) -> None:
    targets = torch.full((40_000,), 4)
    loss = BinaryCrossEntropy(5, num_negatives=2, exclude_positive=exclude_positive,
                              generator=torch.Generator().manual_seed(0))
    draws = loss.sample_negatives(targets)
    assert draws.shape == (40_000, 2)
    counts = torch.bincount(draws.flatten(), minlength=5).float() / draws.numel()
    expected = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0]) if exclude_positive else torch.full((5,), 0.2)
    assert (counts - expected).abs().max() < 0.01


def sampled_softmax_by_hand(hidden, table, bias, targets, negatives_per_row, q) -> float:
    """Mean over rows of -log softmax(positive) among the positive and the row's negatives,
    every logit minus log q, accidental hits (a negative equal to the target) dropped."""
    total = 0.0
    for n in range(N):
        t = int(targets[n])
        logits = [dot(hidden, table, bias, n, t) - math.log(q[t])]
        logits += [dot(hidden, table, bias, n, j) - math.log(q[j]) for j in negatives_per_row[n] if j != t]
        top = max(logits)
        total += top + math.log(sum(math.exp(x - top) for x in logits)) - logits[0]
    return total / N


def test_sampled_softmax_with_logq_correction_and_accidental_hits() -> None:
    hidden, table, bias, targets = tiny()
    counts = torch.arange(I, dtype=torch.float64) * 3
    loss = SampledSoftmax(I, num_negatives=4, proposal="popularity", item_counts=counts, power=0.75,
                          smoothing=1.0)
    negatives = torch.tensor([3, 9, 3, 0])  # hits target 3 (rows 1, 2) and target 0 (row 0)
    loss.sample_negatives = lambda device: negatives
    weights = [(float(c) + 1.0) ** 0.75 for c in counts]
    q = [w / sum(weights) for w in weights]
    for with_bias in (False, True):
        b = bias if with_bias else None
        rows = [negatives.tolist()] * N  # one set, shared by every position
        expected = sampled_softmax_by_hand(hidden, table, b, targets, rows, q)
        for items in item_sources(table):
            assert float(loss(hidden, targets, items, b)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("num_negatives", [3, 5])  # 5 * D > I: the score-all-then-gather path
def test_sampled_softmax_per_position_negatives(num_negatives: int) -> None:
    hidden, table, bias, targets = tiny()
    counts = torch.arange(I, dtype=torch.float64) + 2
    loss = SampledSoftmax(I, num_negatives=num_negatives, proposal="popularity", item_counts=counts,
                          negatives="per_position")
    # Row n draws its own items; some equal the row's target (accidental hits).
    negatives = torch.stack([(targets * (j + 1) + j) % I for j in range(num_negatives)], 1)
    loss.sample_negatives = lambda device, rows: negatives
    q = [(float(c) + 1.0) / float((counts + 1.0).sum()) for c in counts]
    assert any(int(negatives[n, j]) == int(targets[n]) for n in range(N) for j in range(num_negatives))
    for with_bias in (False, True):
        b = bias if with_bias else None
        expected = sampled_softmax_by_hand(hidden, table, b, targets, negatives.tolist(), q)
        for items in item_sources(table):
            assert float(loss(hidden, targets, items, b)) == pytest.approx(expected, rel=1e-5)


def test_sampled_softmax_per_position_draws_one_set_per_row() -> None:
    loss = SampledSoftmax(50, num_negatives=7, negatives="per_position", generator=torch.Generator().manual_seed(0))
    drawn = loss.sample_negatives(torch.device("cpu"), 4000)
    assert drawn.shape == (4000, 7)
    assert not bool((drawn == drawn[0]).all(1).all())  # rows differ
    freq = torch.bincount(drawn.reshape(-1), minlength=50).float() / drawn.numel()
    assert (freq - 1 / 50).abs().max() < 0.005
    with pytest.raises(ValueError, match="negatives='everywhere'.*shared.*per_position"):
        SampledSoftmax(50, negatives="everywhere")


def test_sampled_softmax_proposals_and_validation() -> None:
    counts = torch.tensor([0.0, 10.0, 30.0, 60.0])
    loss = SampledSoftmax(4, num_negatives=50_000, proposal="popularity", item_counts=counts,
                          smoothing=0.0 + 1e-9, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(loss.sample_negatives(torch.device("cpu")), minlength=4).float() / 50_000
    assert (freq - counts / counts.sum()).abs().max() < 0.01
    uniform = SampledSoftmax(4, num_negatives=8)
    assert torch.allclose(uniform.log_q, torch.full((4,), math.log(0.25)))
    with pytest.raises(ValueError, match="item_counts"):
        SampledSoftmax(4, proposal="popularity")
    with pytest.raises(ValueError, match="proposal"):
        SampledSoftmax(4, proposal="zipf")


@pytest.mark.parametrize("t", [0.0, 0.5, 0.75, 1.0])
def test_gbce_matches_paper_formula(t: float) -> None:
    hidden, table, bias, targets = tiny()
    k = 3
    alpha = k / (I - 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    loss = GeneralizedBCE(I, num_negatives=k, t=t)
    assert loss.beta == pytest.approx(beta)
    negatives = torch.stack([(targets + 2 + j) % I for j in range(k)], 1)
    loss.sample_negatives = lambda targets_: negatives
    expected = 0.0
    official = 0.0  # gSASRec code: transform the positive logit, then mean BCE over k+1
    for n in range(N):
        s_pos = dot(hidden, table, None, n, int(targets[n]))
        sig = 1 / (1 + math.exp(-s_pos))
        term = math.log(sig**beta)
        s_negs = [dot(hidden, table, None, n, int(j)) for j in negatives[n]]
        term += sum(math.log(1 - 1 / (1 + math.exp(-s))) for s in s_negs)
        expected += -term / (k + 1)
        transformed = math.log(1 / (sig ** (-beta) - 1))
        bce = -log_sigmoid(transformed) - sum(log_sigmoid(-s) for s in s_negs)
        official += bce / (k + 1)
    expected /= N
    official /= N
    assert official == pytest.approx(expected, rel=1e-9)
    for items in item_sources(table):
        assert float(loss(hidden, targets, items)) == pytest.approx(expected, rel=1e-5)


def test_gbce_limits_and_validation() -> None:
    assert GeneralizedBCE(101, num_negatives=10, t=0.0).beta == pytest.approx(1.0)
    assert GeneralizedBCE(101, num_negatives=10, t=1.0).beta == pytest.approx(0.1)
    with pytest.raises(ValueError, match="calibration"):
        GeneralizedBCE(10, num_negatives=3, t=1.5)
    with pytest.raises(ValueError, match="num_negatives"):
        GeneralizedBCE(10, num_negatives=10)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bce_is_gbce_at_t0_times_k_plus_one(k: int, with_bias: bool) -> None:
    hidden, table, bias, targets = tiny(seed=3)
    bias = bias if with_bias else None
    bce = make_loss("bce", I, num_negatives=k, generator=torch.Generator().manual_seed(5))
    gbce = make_loss("gbce", I, num_negatives=k, t=0.0, generator=torch.Generator().manual_seed(5))
    # The same seeded draws: both losses see the same negatives.
    assert torch.equal(bce.sample_negatives(targets), gbce.sample_negatives(targets))
    for items in item_sources(table):
        torch.testing.assert_close(bce(hidden, targets, items, bias), (k + 1) * gbce(hidden, targets, items, bias))
    with pytest.raises(ValueError, match="num_negatives"):
        BinaryCrossEntropy(I, num_negatives=0)


def test_make_loss_names_and_errors() -> None:
    assert isinstance(make_loss("gbce", 50, num_negatives=4, t=0.5), GeneralizedBCE)
    with pytest.raises(ValueError, match=r"unknown loss 'softmax'.*bce.*ce.*gbce.*sampled_softmax"):
        make_loss("softmax", 10)
    with pytest.raises(ValueError, match="bad arguments for loss 'ce'"):
        make_loss("ce", 10, num_negatives=3)


def test_select_targets_keeps_positions_with_targets_in_order() -> None:
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    targets = torch.tensor([[-1, 4, 5], [6, -1, 7]])
    h, t = select_targets(hidden, targets)
    assert t.tolist() == [4, 5, 6, 7]
    assert h.tolist() == [[2, 3], [4, 5], [6, 7], [10, 11]]
    with pytest.raises(ValueError, match="max_len"):
        select_targets(hidden, targets[:, 1:])


def test_all_losses_backpropagate_to_both_sides() -> None:
    hidden, table, bias, targets = tiny()
    for name, kw in [("bce", {}), ("ce", {}), ("sampled_softmax", {"num_negatives": 5}),
                     ("gbce", {"num_negatives": 5})]:
        h = hidden.clone().requires_grad_(True)
        w = table.clone().requires_grad_(True)
        b = bias.clone().requires_grad_(True)
        value = make_loss(name, I, generator=torch.Generator().manual_seed(0), **kw)(h, targets, w, b)
        value.backward()
        assert torch.isfinite(value)
        assert h.grad.abs().sum() > 0 and w.grad.abs().sum() > 0 and b.grad.abs().sum() > 0, name


def test_auto_chunk_rows_streams_only_what_would_not_fit() -> None:
    from recmodels.losses import FUSED_SCORES_BYTES, auto_chunk_rows

    assert auto_chunk_rows(10, 50, "cpu") == 128
    assert auto_chunk_rows(13_488, 3_416, "cuda") == 0  # ML-1M batch: 184 MB, one fused op
    rows = auto_chunk_rows(65_536, 10_000_000, "cuda")  # 2.6 TB as one matrix
    assert rows >= 1 and rows * 10_000_000 * 4 <= FUSED_SCORES_BYTES < (rows + 1) * 10_000_000 * 4
