"""The int8-screened top-K equals the exact ranking: brute force on integer-valued tables
(every summation order exact, many ties), ``recommend`` without the index on float
tables, and the screening bound checked item by item."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import train.serving.quantized_index as quantized
from recmodels.base import Context, Recommender
from recmodels.bert4rec import BERT4Rec
from recmodels.sasrec import SASRec
from train.serving import NO_ITEM, recommend
from train.serving.quantized_index import QuantizedIndex, index_for

pytestmark = pytest.mark.skipif(not quantized.kernel_available(), reason="no int8 matrix kernel on this platform")


class DotModel(Recommender):
    """scores = users @ items.T (+ bias), through the generic dot-product range path."""

    inputs: ClassVar[frozenset[str]] = frozenset({"user"})

    def __init__(self, users: Tensor, items: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.num_items = len(items)
        self.users = nn.Parameter(users, requires_grad=False)
        self.items = nn.Parameter(items, requires_grad=False)
        self.output_bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def user_representation(self, context: Context) -> Tensor:
        return self.users[context["user"]]

    def item_table(self) -> Tensor:
        return self.items

    def score_all(self, context: Context) -> Tensor:
        scores = self.user_representation(context) @ self.items.T
        return scores if self.output_bias is None else scores + self.output_bias


def brute_force(users: Tensor, items: Tensor, bias: Tensor | None, k: int, seen: tuple[Tensor, Tensor]):
    """Top-k by (score desc, id asc) from float64 scores, one row at a time in numpy."""
    scores = users.double().numpy() @ items.double().numpy().T
    if bias is not None:
        scores = scores + bias.double().numpy()
    scores[seen[0].numpy(), seen[1].numpy()] = -np.inf
    k = min(k, items.shape[0])
    ids = np.full((len(users), k), NO_ITEM)
    for row, values in enumerate(scores):
        order = np.lexsort((np.arange(len(values)), -values))[:k]
        keep = values[order] > -np.inf
        ids[row, : keep.sum()] = order[keep]
    return torch.from_numpy(ids)


def random_seen(batch: int, num_items: int, per_row: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    items = torch.randint(0, num_items, (batch * per_row,), generator=gen)
    return torch.arange(batch).repeat_interleave(per_row), items


def screened(index: QuantizedIndex, users: Tensor, k: int, seen) -> tuple[Tensor, Tensor]:
    found = index.search(users, k, seen)
    assert found is not None, "the screen handed the request back"
    return found


@pytest.mark.parametrize("dim,with_bias", [(16, False), (24, True), (64, False)])
def test_integer_tables_with_ties_match_brute_force(dim: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(dim)
    items = torch.randint(-2, 3, (5000, dim), generator=gen).float()  # scores tie by the hundred
    users = torch.randint(-1, 2, (4, dim), generator=gen).float()
    bias = torch.randint(-3, 4, (5000,), generator=gen).float() if with_bias else None
    index = QuantizedIndex(items, bias, max_candidates=1.0)
    for k in (1, 10, 60):
        seen = random_seen(4, 5000, 300, gen)
        ids, values = screened(index, users, k, seen)
        expected = brute_force(users, items, bias, k, seen)
        assert torch.equal(ids, expected)
        exact = users.double() @ items.double().T + (0 if bias is None else bias.double())
        assert torch.equal(values.double(), exact.gather(1, ids))


def test_rows_with_one_huge_entry_are_still_exact() -> None:
    """A huge entry makes its row's scale large, so its other entries quantise to 0 and
    its screened score to 0: the bound must keep those rows, which here are user 0's
    best (32 tied rows, so the lower ids win)."""
    gen = torch.Generator().manual_seed(3)
    items = torch.randint(-4, 5, (4000, 32), generator=gen).float()
    users = torch.randint(-3, 4, (3, 32), generator=gen).float()
    users[:, 7] = 0.0  # the huge entries do not count, their rows' small ones do
    items[1000:1032] = 4 * users[0].sign()
    items[1000:1032, 7] = 100_000.0
    index = QuantizedIndex(items)
    seen = random_seen(3, 4000, 50, gen)
    ids, _ = screened(index, users, 20, seen)
    assert torch.equal(ids, brute_force(users, items, None, 20, seen))
    assert bool(((ids[0] >= 1000) & (ids[0] < 1032)).all())


def screen_and_bound(items: Tensor, bias: Tensor | None, users: Tensor) -> tuple[Tensor, Tensor]:
    """(screened scores, bounds) [B, items] as the search computes them."""
    index = QuantizedIndex(items, bias)
    query = torch.zeros(len(users), index.columns)
    query[:, : items.shape[1]] = users
    if bias is not None:
        query[:, items.shape[1]] = 1.0
    rounded = query.bfloat16()
    approx = torch._weight_int8pack_mm(rounded, index.codes, index.scales)[:, : len(items)].float()
    coefficient = index._coefficient(query, rounded).unsqueeze(1)
    return approx, quantized._bound(approx, index.scales[: len(items)].float(), coefficient)


def test_bound_covers_every_item() -> None:
    """|exact float32 score - screened score| <= b_i, item by item, over values spanning
    nine orders of magnitude, rows with one huge entry, and a bias."""
    gen = torch.Generator().manual_seed(4)
    items = torch.randn(3000, 48, generator=gen) * torch.logspace(-6, 3, 3000).unsqueeze(1)
    items[::3, 5] *= 1e4
    bias = torch.randn(3000, generator=gen) * 10
    users = torch.randn(3, 48, generator=gen) * torch.tensor([1e-5, 1.0, 1e3]).unsqueeze(1)
    approx, bound = screen_and_bound(items, bias, users)
    assert bool(((users @ items.T + bias - approx).abs() <= bound).all())


def test_bound_is_narrow_enough_to_screen() -> None:
    """On an ordinary table the bound is a fraction of the scores' standard deviation."""
    gen = torch.Generator().manual_seed(5)
    items, users = torch.randn(3000, 64, generator=gen), torch.randn(2, 64, generator=gen)
    approx, bound = screen_and_bound(items, None, users)
    exact = users @ items.T
    assert bool(((exact - approx).abs() <= bound).all())
    spread = exact.std(1, keepdim=True)
    assert bool((bound.median(1, keepdim=True).values <= 0.25 * spread).all())
    assert bool((bound <= 0.5 * spread).all())


@pytest.mark.parametrize("num_items,batch", [(5000, 1), (6007, 1), (6007, 3)])  # ragged tails
def test_float_tables_match_recommend_bit_for_bit(num_items: int, batch: int) -> None:
    gen = torch.Generator().manual_seed(num_items + batch)
    items = torch.randn(num_items, 50, generator=gen)
    items[-50:] *= 10  # most of the best items sit in the catalogue's ragged tail
    users = torch.randn(batch, 50, generator=gen)
    bias = torch.randn(num_items, generator=gen)
    model = DotModel(users, items, bias).eval()
    index = index_for(model)
    index.max_candidates = 1.0
    context, seen = {"user": torch.arange(batch)}, random_seen(batch, num_items, 40, gen)
    before = index.fallbacks
    for k in (10, 40):
        got = recommend(model, context, k, seen, index="quantized")
        want = recommend(model, context, k, seen, index="exact")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert index.fallbacks == before
    assert bool((got[0] >= num_items - 64).any())  # rescored from the tail block


def test_fewer_items_left_than_k_pads_like_recommend() -> None:
    gen = torch.Generator().manual_seed(5)
    items = torch.randint(-2, 3, (300, 16), generator=gen).float()
    users = torch.randint(-1, 2, (2, 16), generator=gen).float()
    keep = {0: [3, 50, 51, 299], 1: [7]}
    rows = [r for r, left in keep.items() for i in range(300) if i not in left]
    masked = [i for r, left in keep.items() for i in range(300) if i not in left]
    seen = torch.tensor(rows), torch.tensor(masked)
    ids, values = screened(QuantizedIndex(items), users, 10, seen)
    assert torch.equal(ids, brute_force(users, items, None, 10, seen))
    assert bool((ids[1, 1:] == NO_ITEM).all()) and bool(torch.isinf(values[1, 1:]).all())
    model = DotModel(users, items).eval()
    want = recommend(model, {"user": torch.arange(2)}, 10, seen, index="exact")
    assert torch.equal(ids, want[0]) and torch.equal(values, want[1])


def test_too_many_candidates_falls_back_to_the_exact_path() -> None:
    gen = torch.Generator().manual_seed(6)
    items, users = torch.randn(2000, 16, generator=gen), torch.randn(1, 16, generator=gen)
    index = QuantizedIndex(items, max_candidates=0.0)
    assert index.search(users, 10) is None
    assert (index.searches, index.fallbacks) == (1, 1)
    model = DotModel(users, items).eval()
    index_for(model).max_candidates = 0.0
    got = recommend(model, {"user": torch.tensor([0])}, 10, index="quantized")
    assert torch.equal(got[0], brute_force(users, items, None, 10, (torch.empty(0, dtype=torch.long),) * 2))
    assert index_for(model).fallbacks == 1


def test_codes_take_a_quarter_of_the_table() -> None:
    index = QuantizedIndex(torch.randn(4096, 64), width=16)
    assert index.codes.numel() == 4096 * 64 and index.codes.dtype == torch.int8
    assert index.nbytes < 4096 * 64 * 4 * 0.3


def test_modes_and_which_models_get_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(7)
    model = DotModel(torch.randn(2, 16, generator=gen), torch.randn(500, 16, generator=gen)).eval()
    context = {"user": torch.tensor([0])}
    with pytest.raises(ValueError, match="auto.*exact.*quantized"):
        recommend(model, context, 5, index="fast")
    recommend(model, context, 5)  # auto: a small catalogue takes the exact path
    recommend(model, context, 5, index="exact")
    assert model not in quantized._INDEXES
    recommend(model, context, 5, index="quantized")
    assert index_for(model).searches == 1

    class Overridden(DotModel):
        def item_scores(self, context: Context):
            return super().item_scores(context)

    assert index_for(Overridden(model.users.data, model.items.data)) is None
    monkeypatch.setattr(quantized, "kernel_available", lambda: False)
    assert index_for(DotModel(model.users.data, model.items.data)) is None


def test_index_is_rebuilt_when_the_weights_change() -> None:
    gen = torch.Generator().manual_seed(8)
    users, items = torch.randn(1, 16, generator=gen), torch.randn(800, 16, generator=gen)
    model = DotModel(users, items).eval()
    first = index_for(model)
    assert index_for(model) is first
    with torch.no_grad():
        model.items.copy_(-items)
    assert index_for(model) is not first
    got = recommend(model, {"user": torch.tensor([0])}, 5, index="quantized")
    want = recommend(model, {"user": torch.tensor([0])}, 5, index="exact")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("net", [SASRec, BERT4Rec])
def test_sequence_models_match_the_exact_path(net: type) -> None:
    torch.manual_seed(9)
    model = net(num_items=3000, hidden=16, num_blocks=1, num_heads=1, max_len=8).eval()
    if getattr(model, "output_bias", None) is not None:
        with torch.no_grad():
            model.output_bias.normal_()
    history = torch.randint(0, 3000, (2, 8))
    context, seen = {"history": history}, (torch.arange(2).repeat_interleave(8), history.flatten())
    got = recommend(model, context, 10, seen, index="quantized")
    want = recommend(model, context, 10, seen, index="exact")
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert index_for(model) is not None and index_for(model).searches == 1


def test_chunk_maxima_from_bit_patterns() -> None:
    """Maxima read from int16 bit patterns equal a float reduction, also in chunks that
    hold only negative values, -inf (excluded items), or signed zeros."""
    gen = torch.Generator().manual_seed(10)
    index = QuantizedIndex(torch.randn(64 * 16, 16, generator=gen), width=16)
    approx = torch.randn(2, 64 * 16, generator=gen)
    approx[:, :256] = -approx[:, :256].abs()  # 16 all-negative chunks per row
    approx[0, 256:272] = float("-inf")
    approx[1, 272:288] = -0.0
    approx[1, 288:304] = torch.tensor([0.0, -0.0] * 8)
    approx[0, 300:310] = float("-inf")
    approx = approx.bfloat16()
    expected = approx.float().view(2, 64, 16).amax(2)
    assert torch.equal(index._chunk_maxima(approx), expected)


def test_benchmark_compares_both_paths_on_the_same_requests() -> None:
    """scripts/bench_topk_scale.py at a tiny size: both paths answer, with equal results."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_topk_scale.py"
    spec = importlib.util.spec_from_file_location("bench_topk_scale", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = bench.MatrixFactorisation(50, 20_000, 32).eval()
    _, megabytes = bench.build_index(model)
    result = bench.bench_serving(model, requests=4, k=10, chunk_items=None, with_index=True)
    index = index_for(model)
    assert result["differ"] == 0 and index.searches == 6 and index.fallbacks == 0
    assert 0 < megabytes < 20_000 * 32 * 4 / 1e6 / 3
