"""Chunked ranking: top-K and target ranks equal brute force over one block, whatever the
chunk size, for every model's range scores, in the evaluator and across item shards."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_eval_support import random_data

from data_modules.interactions import TEST, VAL
from recmodels.base import DotProductScores, FullScores, ItemScores
from recmodels.bert4rec import BERT4Rec
from recmodels.ncf import GMF
from recmodels.pop import MostPopular
from recmodels.sasrec import SASRec
from train.evaluation import Evaluator, evaluate
from train.evaluation.chunked_ranking import (
    NO_ITEM,
    Ranking,
    merge_rankings,
    rank_items,
    rank_items_sharded,
    rank_range,
    shard_bounds,
)
from train.serving import recommend

INF = float("inf")


def quantised(rows: int, items: int, levels: int, seed: int) -> torch.Tensor:
    """Scores drawn from a few values, so ties are everywhere (also at every cut-off)."""
    return torch.randint(0, levels, (rows, items), generator=torch.Generator().manual_seed(seed)).float()


def random_pairs(rows: int, items: int, per_row: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_row[r]`` distinct excluded items of row r (some rows nearly all excluded)."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(r, int(i)) for r in range(rows) for i in torch.randperm(items, generator=g)[: per_row[r]]]
    return torch.tensor([r for r, _ in pairs]), torch.tensor([i for _, i in pairs])


def brute_top_k(table: torch.Tensor, excluded: set[tuple[int, int]], k: int) -> tuple[list, list]:
    """Per row: (score desc, id asc) over items not excluded, padded with -1 / -inf."""
    items, values = [], []
    for r, row in enumerate(table.tolist()):
        ranked = sorted((-s, i) for i, s in enumerate(row) if (r, i) not in excluded)[:k]
        pad = k - len(ranked)
        items.append([i for _, i in ranked] + [NO_ITEM] * pad)
        values.append([-s for s, _ in ranked] + [-INF] * pad)
    return items, values


def brute_ranks(table: torch.Tensor, excluded: set[tuple[int, int]], targets: list[int]) -> list[int]:
    """Other items whose (masked) score is >= the (masked) target score."""
    out = []
    for r, (row, t) in enumerate(zip(table.tolist(), targets)):
        masked = [-INF if (r, i) in excluded else s for i, s in enumerate(row)]
        out.append(sum(1 for i, s in enumerate(masked) if i != t and s >= masked[t]))
    return out


CHUNKS = [1, 3, 7, 23, None]  # chunk size 1, sizes that do not divide 23, one whole block


@pytest.mark.parametrize("chunk_items", CHUNKS)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_top_k_and_ranks_equal_brute_force(chunk_items, k) -> None:
    table = quantised(6, 23, levels=3, seed=k)
    rows, items = random_pairs(6, 23, per_row=[0, 2, 5, 15, 21, 23], seed=1)  # last rows run short of k
    excluded = set(zip(rows.tolist(), items.tolist()))
    targets = torch.tensor([0, 5, 22, 11, 7, 3])
    targets[3] = next(i for i in range(23) if (3, i) in excluded)  # a masked target ranks last
    got = rank_items(FullScores(table), 23, 6, k, (rows, items), targets, chunk_items)
    want_items, want_values = brute_top_k(table, excluded, k)
    assert got.items.tolist() == want_items and got.values.tolist() == want_values
    assert got.ranks.tolist() == brute_ranks(table, excluded, targets.tolist())


@pytest.mark.parametrize("levels", [3, 40, 10**6])
@pytest.mark.parametrize("chunk_items", [128, 320, None])
def test_wide_chunks_rank_only_their_best_column_groups_exactly(levels, chunk_items) -> None:
    """Chunks of >= 64 columns take the group-maxima path; few, some and no ties."""
    table = quantised(6, 1024, levels=levels, seed=levels)
    rows, items = random_pairs(6, 1024, per_row=[0, 50, 500, 1000, 1020, 1024], seed=4)
    excluded = set(zip(rows.tolist(), items.tolist()))
    targets = torch.tensor([0, 1023, 517, 3, 600, 64])
    for k in (1, 10, 50):
        got = rank_items(OffByOneGuess(table), 1024, 6, k, (rows, items), targets, chunk_items)
        want_items, want_values = brute_top_k(table, excluded, k)
        assert got.items.tolist() == want_items and got.values.tolist() == want_values
        assert got.ranks.tolist() == brute_ranks(table, excluded, targets.tolist())


def test_k_above_the_catalogue_and_no_exclusions() -> None:
    table = quantised(3, 4, levels=2, seed=0)
    got = rank_items(FullScores(table), 4, 3, 10, chunk_items=3)
    want_items, want_values = brute_top_k(table, set(), 4)
    assert got.items.tolist() == want_items and got.values.tolist() == want_values and got.ranks is None


class OffByOneGuess(ItemScores):
    """Range scores of a table, but ``at`` is wrong: ranks must come from the ranges."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def range(self, start: int, stop: int) -> torch.Tensor:
        return self.table[:, start:stop].clone()

    def at(self, items: torch.Tensor) -> torch.Tensor:
        return self.table.gather(1, items) + 1.0


@pytest.mark.parametrize("chunk_items", [4, None])
def test_a_wrong_target_score_read_is_corrected_by_the_target_column(chunk_items) -> None:
    table = quantised(5, 17, levels=4, seed=3)
    targets = torch.tensor([0, 16, 8, 3, 3])
    got = rank_items(OffByOneGuess(table), 17, 5, 0, targets=targets, chunk_items=chunk_items)
    assert got.ranks.tolist() == brute_ranks(table, set(), targets.tolist())


def test_nan_scores_and_bad_targets_are_errors() -> None:
    table = torch.zeros(2, 9)
    table[1, 6] = float("nan")
    with pytest.raises(ValueError, match="NaN scores for 1 of 2 rows"):
        rank_items(FullScores(table), 9, 2, 3, chunk_items=4)
    with pytest.raises(ValueError, match="target item ids must lie in 0..8"):
        rank_items(FullScores(torch.zeros(2, 9)), 9, 2, 3, targets=torch.tensor([0, 9]))
    with pytest.raises(ValueError, match="chunk_items must be a positive"):
        rank_items(FullScores(torch.zeros(2, 9)), 9, 2, 3, chunk_items=0)


def _integer_weights_(model: torch.nn.Module) -> torch.nn.Module:
    """Small whole-number weights: every score is exact in float32 and ties are common."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).float())
    return model


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "gmf": GMF(num_users=5, num_items=11, embed_dim=4),
        "pop": MostPopular(11),
        "sasrec": SASRec(11, hidden=8, num_blocks=1, num_heads=1, max_len=6, dropout=0.0),
        "bert4rec": BERT4Rec(11, hidden=8, num_blocks=1, num_heads=2, max_len=6, dropout=0.0, output_bias=True),
    }


@pytest.mark.parametrize("name", ["gmf", "pop", "sasrec", "bert4rec"])
def test_range_scores_equal_score_all_columns(name) -> None:
    model = _models()[name].eval()
    if name == "pop":
        model.fit(torch.arange(11.0) % 4)
    if name == "bert4rec":
        torch.nn.init.normal_(model.output_bias)
    context = {"user": torch.tensor([0, 3, 4]), "history": torch.tensor([[-1, 2, 5], [1, 2, 3], [-1, -1, 7]])}
    with torch.no_grad():
        full = model.score_all(context).float()
        scores = model.item_scores(context)
        assert name == "pop" or isinstance(scores, DotProductScores)
        assert torch.equal(scores.range(0, 11), full)  # one block: the same product
        for lo, hi in [(0, 4), (4, 5), (5, 11)]:  # a narrower product may round differently
            assert torch.allclose(scores.range(lo, hi), full[:, lo:hi], rtol=1e-6, atol=1e-6)
        items = torch.tensor([[3], [0], [10]])
        assert torch.allclose(scores.at(items), full.gather(1, items), atol=1e-6)
        scores.range(0, 11).fill_(-1.0)  # a range is the caller's own copy
        assert torch.equal(model.score_all(context).float(), full)


@pytest.mark.parametrize("split", [VAL, TEST])
def test_chunked_evaluator_equals_the_single_block(split) -> None:
    data = random_data(num_users=23, num_items=19, min_len=3, max_len=12, seed=2)
    model = _integer_weights_(GMF(data.num_users, data.num_items, embed_dim=3))
    pop = MostPopular(data.num_items)
    pop.fit(torch.arange(data.num_items, dtype=torch.float32) % 3)
    for net in (model, pop):
        def run(chunk_items):
            return evaluate(net, data, split, Evaluator("full", ks=(1, 5, 10), batch_size=8, chunk_items=chunk_items))

        single = run(19)
        assert all(run(chunk_items) == single for chunk_items in (1, 4, None))


def test_serving_top_k_is_chunk_independent() -> None:
    model = _integer_weights_(GMF(num_users=4, num_items=13, embed_dim=2))
    context = {"user": torch.arange(4)}
    exclude = (torch.tensor([0, 0, 2, 3]), torch.tensor([1, 12, 5, 0]))
    with torch.no_grad():
        table = model.score_all(context)
    want_items, want_values = brute_top_k(table, set(zip(*(t.tolist() for t in exclude))), 6)
    for chunk_items in (1, 5, None):
        items, values = recommend(model, context, 6, exclude, chunk_items=chunk_items)
        assert items.tolist() == want_items and values.tolist() == want_values


@pytest.mark.parametrize("cuts", [[0, 13, 14, 40], [0, 0, 20, 40], [0, 40]])
def test_merged_shards_equal_brute_force(cuts) -> None:
    """Disjoint item ranges ranked against the same target scores, merged: ties everywhere."""
    table = quantised(7, 40, levels=3, seed=len(cuts))
    rows, items = random_pairs(7, 40, per_row=[0, 3, 10, 30, 38, 39, 40], seed=2)
    excluded = set(zip(rows.tolist(), items.tolist()))
    targets = torch.tensor([1, 13, 14, 39, 0, 20, 7])
    masked = table.clone()
    masked[rows, items] = -INF
    guess = masked.gather(1, targets.unsqueeze(1))[:, 0]
    parts = [
        rank_range(FullScores(table), lo, hi, 7, 6, (rows, items), targets, guess, chunk_items=5)
        for lo, hi in zip(cuts[:-1], cuts[1:])
    ]
    got = merge_rankings(parts, 6)
    want_items, want_values = brute_top_k(table, excluded, 6)
    assert got.items.tolist() == want_items and got.values.tolist() == want_values
    assert got.ranks.tolist() == brute_ranks(table, excluded, targets.tolist())
    assert torch.equal(got.target_scores, guess)


def test_shard_bounds_cover_the_catalogue_once() -> None:
    for num_items, world in [(10, 3), (2, 4), (7, 1)]:
        bounds = [shard_bounds(num_items, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == num_items
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(bounds, bounds[1:]))
        assert max(hi - lo for lo, hi in bounds) <= math.ceil(num_items / world)


def _sharded_worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        table = quantised(5, 29, levels=3, seed=7)
        rows, items = random_pairs(5, 29, per_row=[0, 4, 27, 29, 1], seed=3)
        targets = torch.tensor([0, 28, 14, 15, 3])
        got = rank_items_sharded(OffByOneGuess(table), 29, 5, 8, (rows, items), targets, chunk_items=4)
        torch.save(got.__dict__, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_sharding_items_equal_one_process(tmp_path: Path) -> None:
    mp.start_processes(_sharded_worker, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    table = quantised(5, 29, levels=3, seed=7)
    rows, items = random_pairs(5, 29, per_row=[0, 4, 27, 29, 1], seed=3)
    targets = torch.tensor([0, 28, 14, 15, 3])
    want = rank_items(FullScores(table), 29, 5, 8, (rows, items), targets)
    assert want.ranks.tolist() == brute_ranks(table, set(zip(rows.tolist(), items.tolist())), targets.tolist())
    for rank in range(2):
        got = Ranking(**torch.load(tmp_path / f"rank{rank}.pt"))
        assert torch.equal(got.items, want.items) and torch.equal(got.values, want.values)
        assert torch.equal(got.ranks, want.ranks)
