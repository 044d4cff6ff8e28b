"""Exact top-K and target ranks over a catalogue of any size, one item chunk at a time.

The one ranking step behind full-ranking evaluation and top-K serving. Scores come
from :meth:`Recommender.item_scores` in chunks of ``chunk_items`` items; each chunk has
its excluded (user, item) pairs set to ``-inf``, adds to each row's target rank and is
merged into a running top-K, so memory is one [B, chunk] block however large the
catalogue.

Exact, ties included: equal scores are ordered by the lower item id, also at the
cut-off (a stable descending sort). Chunks are visited in id order, so an item can only
displace the running k-th entry by scoring strictly above it: a row whose chunk maximum
is not above its k-th score skips the chunk, and otherwise only the column groups whose
maxima can hold a new entry are ranked (:func:`_block_top_k`), a few dozen columns late
in the catalogue instead of the whole chunk.

Ranks are pessimistic (:func:`~train.evaluation.metrics.pessimistic_rank`): the number
of other items scoring ``>=`` the target, summed over chunks. With several chunks that
needs the target's score before its chunk is reached: it is read first with
:meth:`ItemScores.at` (the same matrix product for dot-product models) and checked
against the target's own column when its chunk comes; rows where the two differ are
counted again against the column's value. A single block reads its own column. The
ranks are therefore always those of the scores the chunks computed.

Chunk size (measured on CPU, d=64): a block of :data:`BLOCK_BUDGET` float32 scores
(8 MiB) keeps the element-wise passes (masking, ``>=`` counts, group maxima) in cache,
where they cost a fraction of the product; 32 MiB blocks were ~1.5x slower at 1M items.
Up to :data:`SINGLE_BLOCK` scores per batch (16 MiB: MovieLens-1M at batch 1024) the
whole catalogue is one block, the plain single-block path, which is faster there (each
chunk of a small catalogue still needs a full top-k and a merge). Scores that exist
only as one block (:class:`~recmodels.base.FullScores`) are never chunked unless asked.

Sharding by items over processes (:func:`rank_items_sharded`) merges the per-process
results exactly with :func:`merge_rankings`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from recmodels.base import ItemScores

NO_ITEM = -1
BLOCK_BUDGET = 2**21  # float32 scores in one [B, chunk] block (8 MiB)
SINGLE_BLOCK = 2**22  # up to this many scores a batch is ranked in one block (16 MiB)
MAX_CHUNK = 2**24  # items per chunk: float32 counts stay exact
ALIGN = 64  # automatic chunk widths are multiples of this (fast matrix products)
GROUP = 16  # columns per group maximum: a chunk's top-k reads only its best groups
Pairs = tuple[Tensor, Tensor]  # (batch rows, item ids) to exclude


@dataclass
class Ranking:
    """A batch's top-K and target ranks over an item range.

    ``values``/``items`` [B, k] are best first; slots past a row's last rankable item
    hold ``-inf`` and :data:`NO_ITEM`. ``ranks`` [B] counts the other items scoring at
    least the target's score (the pessimistic 0-based rank); ``target_scores`` [B] is the
    target's own score where the range holds the target, NaN elsewhere.
    """

    values: Tensor
    items: Tensor
    ranks: Tensor | None = None
    target_scores: Tensor | None = None


def chunk_width(num_items: int, batch: int, chunk_items: int | None = None) -> int:
    """Items per chunk: ``chunk_items`` if given; else the whole range when its block is at
    most :data:`SINGLE_BLOCK` scores, otherwise what keeps [batch, chunk] within
    :data:`BLOCK_BUDGET`. Never more than the range or :data:`MAX_CHUNK`."""
    if chunk_items is None:
        whole = int(batch) * int(num_items) <= SINGLE_BLOCK
        chunk_items = num_items if whole else BLOCK_BUDGET // max(int(batch), 1)
    elif int(chunk_items) < 1:
        raise ValueError(f"chunk_items must be a positive number of items, got {chunk_items}; or null for automatic")
    return max(1, min(int(chunk_items), int(num_items), MAX_CHUNK))


def chunk_edges(start: int, stop: int, width: int) -> list[int]:
    """Boundaries of chunks of ``width`` items covering ``start..stop-1``.

    Widths of :data:`ALIGN` items or more are rounded down to a multiple of it, and a
    tail shorter than that joins the chunk before: a matrix product whose output rows
    are not a multiple of 64 floats runs at about half speed on CPU, and a one-column
    product may take another kernel.
    """
    if width >= 2 * ALIGN:
        width -= width % ALIGN
    edges = list(range(start, stop, width))
    if width >= 2 * ALIGN and len(edges) > 1 and stop - edges[-1] < ALIGN:
        edges.pop()
    return edges + [stop] if edges else [start]


def plan_chunks(scores: ItemScores, start: int, stop: int, batch: int, chunk_items: int | None) -> list[int]:
    """Chunk boundaries for ranking ``start..stop-1`` (:func:`chunk_width`, :func:`chunk_edges`);
    scores that are already one block are taken whole unless ``chunk_items`` is given."""
    if chunk_items is None and scores.whole_block:
        chunk_items = max(stop - start, 1)  # chunks would only copy the block
    return chunk_edges(start, stop, chunk_width(stop - start, batch, chunk_items))


def mask_known(scores: Tensor, rows: Tensor, items: Tensor) -> None:
    """Set scores[rows, items] = -inf in place (a flat index_fill_ is ~10x faster than
    a 2-D index_put_ on CPU)."""
    scores.view(-1).index_fill_(0, rows * scores.shape[1] + items, float("-inf"))


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(items [B,k], scores [B,k]) of one score block, best first; ``-inf`` slots get
    item :data:`NO_ITEM`. Equal scores are ordered by the lower item id."""
    values, items = _sorted_top_k(scores, min(int(k), scores.shape[1]))
    return items.masked_fill(values == float("-inf"), NO_ITEM), values


def _sorted_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(values, column ids) [B, k] ordered by score then id.

    ``torch.topk`` alone does not promise the lower id among ties at the cut-off, and a
    full sort is ~50x slower, so only rows whose k-th and (k+1)-th scores tie take the
    exact path.
    """
    num_items = scores.shape[1]
    values, items = scores.topk(min(k + 1, num_items), dim=1)
    if k < num_items:
        boundary = (values[:, k - 1] == values[:, k]) & (values[:, k - 1] > float("-inf"))
        values, items = values[:, :k].clone(), items[:, :k].clone()
        rows = boundary.nonzero().squeeze(1)
        if rows.numel():
            items[rows], values[rows] = _exact_top_k(scores[rows], k)
    items, values = _order_by_score_then_id(items, values)
    return values, items


def _exact_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k where ties at the cut-off go to the lowest ids (few rows only)."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(1) <= need))
    items = chosen.nonzero()[:, 1].view(len(scores), k)
    return items, scores.gather(1, items)


def _order_by_score_then_id(items: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    by_id = items.argsort(dim=1)
    items, values = items.gather(1, by_id), values.gather(1, by_id)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    return items.gather(1, by_score), values.gather(1, by_score)


def merge_top_k(values: Tensor, items: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The best ``k`` of candidate lists [B, N] (distinct item ids per row, any order),
    ordered by score then lower id; ``-inf`` slots come back as :data:`NO_ITEM`."""
    items, values = _order_by_score_then_id(items, values)
    values, items = values[:, :k], items[:, :k]
    return values, items.masked_fill(values == float("-inf"), NO_ITEM)


def merge_rankings(parts: list[Ranking], k: int) -> Ranking:
    """One ranking from rankings of disjoint item ranges that used the same target scores:
    top-K merged exactly, rank counts summed, each target's score taken from its range."""
    values, items = merge_top_k(torch.cat([p.values for p in parts], 1), torch.cat([p.items for p in parts], 1), k)
    if parts[0].ranks is None:
        return Ranking(values, items)
    ranks = torch.stack([p.ranks for p in parts]).sum(0)
    own = parts[0].target_scores.clone()
    for part in parts[1:]:
        own = torch.where(torch.isnan(own), part.target_scores, own)
    return Ranking(values, items, ranks, own)


class _ExcludedPairs:
    """Excluded (row, item) pairs of items ``start..stop-1`` sorted by item, so each chunk
    finds its own by bisection (unsorted when there is one chunk: it takes them all)."""

    def __init__(self, pairs: Pairs | None, start: int, stop: int, sort: bool) -> None:
        rows, items = pairs if pairs is not None else (torch.empty(0, dtype=torch.long),) * 2
        self.rows, self.items, self.sorted = rows.long(), items.long(), sort
        if sort:
            order = torch.argsort(self.items)
            self.rows, self.items = self.rows[order], self.items[order]
        elif len(self.items) and (int(self.items.min()) < start or int(self.items.max()) >= stop):
            inside = (self.items >= start) & (self.items < stop)
            self.rows, self.items = self.rows[inside], self.items[inside]

    def bounds(self, edges: list[int]) -> list[int]:
        """Index of the first pair at or after each item id in ``edges`` (one call per range)."""
        if not self.sorted:
            return [0] * (len(edges) - 1) + [len(self.items)]
        edges_t = torch.tensor(edges, dtype=self.items.dtype, device=self.items.device)
        return torch.searchsorted(self.items, edges_t).tolist()

    def mask(self, block: Tensor, lo: int, first: int, last: int) -> None:
        if last <= first:
            return
        if self.rows.device != block.device:
            self.rows, self.items = self.rows.to(block.device), self.items.to(block.device)
        mask_known(block, self.rows[first:last], self.items[first:last] - lo)


def rank_range(
    scores: ItemScores,
    start: int,
    stop: int,
    batch: int,
    k: int,
    exclude: Pairs | None = None,
    targets: Tensor | None = None,
    target_scores: Tensor | None = None,
    chunk_items: int | None = None,
) -> Ranking:
    """Rank items ``start..stop-1`` chunk by chunk: top-``k`` (``k=0``: none) and, with
    ``targets``, the count of other items scoring ``>= target_scores``.

    ``target_scores=None`` reads each target's score from its own column, which needs
    the range in one chunk (see :func:`plan_chunks`) holding every target."""
    device = targets.device if targets is not None else None
    state = _RunningTopK(batch, k, device)
    counts = _TargetCounts(targets, target_scores) if targets is not None else None
    edges = plan_chunks(scores, start, stop, batch, chunk_items)
    pairs = _ExcludedPairs(exclude, start, stop, sort=len(edges) > 2)
    pair_bounds = pairs.bounds(edges)
    for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        block = scores.range(lo, hi).contiguous()
        if tuple(block.shape) != (batch, hi - lo):
            raise ValueError(
                f"score_all returned shape {tuple(block.shape)} for items {lo}..{hi - 1} (read through "
                f"item_scores), expected {(batch, hi - lo)}: check the model's output and num_items"
            )
        pairs.mask(block, lo, pair_bounds[j], pair_bounds[j + 1])
        groups = _group_maxima(block) if k else None
        best = (groups if groups is not None else block).amax(dim=1)  # NaN propagates: one cheap check
        if torch.isnan(best).any():
            raise ValueError(
                f"NaN scores for {int(torch.isnan(best).sum())} of {batch} rows (items {lo}..{hi - 1}): "
                "check the model weights (was training diverging?)"
            )
        if counts is not None:
            counts.add(block, lo, hi)
        state.add(block, groups, best, lo)
    values, items = state.result()
    if counts is None:
        return Ranking(values, items)
    return Ranking(values, items, counts.ranks, counts.own)


def _group_maxima(block: Tensor) -> Tensor | None:
    """Maxima of column groups [B, n / GROUP]: group ``j`` is columns ``j, j + n/GROUP, ...``
    (strided, so the reduction runs over contiguous rows at full vector speed)."""
    rows, width = block.shape
    if width % GROUP or width < 4 * GROUP:
        return None
    return block.view(rows, GROUP, width // GROUP).amax(dim=1)


class _RunningTopK:
    """Best ``k`` (values, ids) per row so far; ``-inf``/:data:`NO_ITEM` while empty."""

    def __init__(self, batch: int, k: int, device: torch.device | None) -> None:
        self.k = k
        self.values = torch.full((batch, k), float("-inf"), device=device)
        self.items = torch.full((batch, k), NO_ITEM, dtype=torch.long, device=device)

    def add(self, block: Tensor, groups: Tensor | None, best: Tensor, lo: int) -> None:
        if not self.k:
            return
        if self.values.device != block.device:
            self.values, self.items = self.values.to(block.device), self.items.to(block.device)
        # Earlier chunks hold lower ids, so a tie with the k-th entry never displaces it.
        rows = (best > self.values[:, -1]).nonzero().squeeze(1)
        if not rows.numel():
            return
        values, items = _block_top_k(block, groups, rows, self.k, self.values[rows, -1])
        merged_values, merged_items = merge_top_k(
            torch.cat([self.values[rows], values], 1), torch.cat([self.items[rows], items + lo], 1), self.k
        )
        self.values[rows], self.items[rows] = merged_values, merged_items

    def result(self) -> tuple[Tensor, Tensor]:
        return self.values, self.items.masked_fill(self.values == float("-inf"), NO_ITEM)


def _block_top_k(
    block: Tensor, groups: Tensor | None, rows: Tensor, k: int, floor: Tensor
) -> tuple[Tensor, Tensor]:
    """Exact top-``k`` (values, columns) of ``block[rows]`` among items above ``floor``
    (each row's running k-th score), ordered by score then column; may return fewer.

    With group maxima, only groups whose maximum is above the floor and reaches the
    row's k-th largest group maximum ``g`` are ranked: the k best groups hold k items
    ``>= g``, so every item of the top ``k`` is ``>= g``, and so is its group's maximum.
    Both conditions pick a row's best groups, so taking the same number of best groups
    for every row (the largest such count) only adds items that cannot enter. Late in
    the catalogue that is a group or two: a top-k over a few columns, not the chunk.
    """
    whole = rows.numel() == len(block)
    k = min(k, block.shape[1])
    if groups is None or groups.shape[1] <= 2 * k:
        return _sorted_top_k(block if whole else block[rows], k)
    groups = groups if whole else groups[rows]
    above = (groups > floor.unsqueeze(1)).sum(dim=1)
    wanted = int(above.max())
    if wanted > k:
        kth = groups.topk(k, dim=1).values[:, -1:]
        wanted = int(torch.minimum(above, (groups >= kth).sum(dim=1)).max())
    if wanted * GROUP * 4 > block.shape[1]:  # early in the catalogue: most of the chunk
        return _sorted_top_k(block if whole else block[rows], k)
    chosen = groups.topk(wanted, dim=1).indices.sort(dim=1).values
    # Column j + s * (n / GROUP) for each stride s, then each chosen j: ascending, so the
    # top-k's tie rule (lower column first) is the lower item id.
    stride = torch.arange(GROUP, device=block.device).unsqueeze(1) * groups.shape[1]
    columns = (chosen.unsqueeze(1) + stride).flatten(1)
    values, at = _sorted_top_k(block[rows.unsqueeze(1), columns], min(k, columns.shape[1]))
    return values, columns.gather(1, at)


class _TargetCounts:
    """Per row: other items scoring ``>=`` the target's score, and the target's own score.

    The comparison is written as 0/1 floats into one reused buffer and summed in
    float32: ~6x faster on CPU than summing a fresh bool tensor, and exact because a
    chunk holds at most :data:`MAX_CHUNK` (2^24) items. Without ``target_scores`` the
    first block must hold every target, and their own columns are the thresholds.
    """

    def __init__(self, targets: Tensor, target_scores: Tensor | None) -> None:
        self.targets = targets.long()
        self.threshold = None if target_scores is None else target_scores.float().unsqueeze(1)
        self.ranks = torch.zeros(len(targets), dtype=torch.long, device=targets.device)
        self.own = torch.full((len(targets),), float("nan"), device=targets.device)
        self.buffer = torch.empty(0, device=targets.device)

    def add(self, block: Tensor, lo: int, hi: int) -> None:
        if self.threshold is None:
            if len(self.targets) and not (lo <= int(self.targets.min()) and int(self.targets.max()) < hi):
                raise ValueError("ranking without target scores needs every target in one chunk")
            self.threshold = block.gather(1, (self.targets - lo).unsqueeze(1))
        if self.buffer.numel() < block.numel():
            self.buffer = torch.empty(block.numel(), device=block.device)
        at_least = torch.ge(block, self.threshold, out=self.buffer[: block.numel()].view(block.shape))
        self.ranks += at_least.sum(1).long()
        rows = ((self.targets >= lo) & (self.targets < hi)).nonzero().squeeze(1)
        if rows.numel():
            own = block[rows, self.targets[rows] - lo]
            self.own[rows] = own
            self.ranks[rows] -= (own >= self.threshold[rows, 0]).long()  # not itself


def rank_items(
    scores: ItemScores,
    num_items: int,
    batch: int,
    k: int,
    exclude: Pairs | None = None,
    targets: Tensor | None = None,
    chunk_items: int | None = None,
) -> Ranking:
    """Top-``k`` over the whole catalogue and, with ``targets``, each target's
    pessimistic rank, in one pass over the chunks (see the module docstring)."""
    k = min(int(k), int(num_items))
    _check_targets(targets, num_items)
    one_block = len(plan_chunks(scores, 0, num_items, batch, chunk_items)) <= 2
    guess = None if one_block else _target_guess(scores, targets, exclude)  # one block reads its own
    ranking = rank_range(scores, 0, num_items, batch, k, exclude, targets, guess, chunk_items)
    if guess is None:
        return ranking
    stale = ranking.target_scores != guess
    if bool(stale.any()):
        again = rank_range(scores, 0, num_items, batch, 0, exclude, targets, ranking.target_scores, chunk_items)
        ranking.ranks = torch.where(stale, again.ranks, ranking.ranks)
    return ranking


def _check_targets(targets: Tensor | None, num_items: int) -> None:
    if targets is not None and len(targets) and not (0 <= int(targets.min()) and int(targets.max()) < num_items):
        raise ValueError(
            f"target item ids must lie in 0..{num_items - 1} (the model's catalogue), got "
            f"{int(targets.min())}..{int(targets.max())}; were the model and the data built together?"
        )


def _target_guess(scores: ItemScores, targets: Tensor | None, exclude: Pairs | None) -> Tensor | None:
    """Each target's score read ahead of its chunk (``-inf`` where the target is excluded)."""
    if targets is None:
        return None
    guess = scores.at(targets.long().unsqueeze(1))[:, 0].float()
    if exclude is not None and len(exclude[0]):
        rows, items = (t.to(guess.device).long() for t in exclude)
        hit = items == targets.to(guess.device).long()[rows]
        guess[rows[hit]] = float("-inf")
    return guess


def shard_bounds(num_items: int, rank: int, world_size: int) -> tuple[int, int]:
    """This process's contiguous item range: near-equal shares, lower ids to lower ranks."""
    return num_items * rank // world_size, num_items * (rank + 1) // world_size


def rank_items_sharded(
    scores: ItemScores,
    num_items: int,
    batch: int,
    k: int,
    exclude: Pairs | None = None,
    targets: Tensor | None = None,
    chunk_items: int | None = None,
    group: dist.ProcessGroup | None = None,
) -> Ranking:
    """:func:`rank_items` with the catalogue split by items over the processes of
    ``group``: each ranks its own range (:func:`shard_bounds`), and every process gets
    the merged result. All processes pass the same batch; a process only ever calls
    ``scores.range`` on its own items, so it may hold just its share of the table."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    start, stop = shard_bounds(num_items, rank, world)
    k = min(int(k), int(num_items))
    _check_targets(targets, num_items)
    guess = _target_guess(scores, targets, exclude)
    part = rank_range(scores, start, stop, batch, k, exclude, targets, guess, chunk_items)
    merged = merge_rankings(_all_gather(part, group), k)
    if targets is None:
        return merged
    stale = (merged.target_scores != guess).long()
    dist.all_reduce(stale, dist.ReduceOp.MAX, group=group)  # one decision on every process
    if bool(stale.any()):
        again = rank_range(scores, start, stop, batch, 0, exclude, targets, merged.target_scores, chunk_items).ranks
        dist.all_reduce(again, group=group)
        merged.ranks = torch.where(stale.bool(), again, merged.ranks)
    return merged


def _all_gather(part: Ranking, group: dist.ProcessGroup | None) -> list[Ranking]:
    world = dist.get_world_size(group)
    fields = [part.values, part.items] + ([part.ranks, part.target_scores] if part.ranks is not None else [])
    gathered = []
    for tensor in fields:
        out = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(out, tensor.contiguous(), group=group)
        gathered.append(out)
    return [Ranking(*(field[r] for field in gathered)) for r in range(world)]
