"""Negative candidates for the sampled evaluation protocol.

Each evaluated row gets ``N`` distinct negatives that the user never interacted
with in *any* split (train, val and test targets alike), as in the SASRec paper;
``popularity`` draws them proportionally to training counts (the BERT4Rec
protocol); ``given`` reads fixed lists shipped with the data (NCF's test.negative).

Sampling is successive sampling without replacement from the weights restricted
to the user's allowed pool. It runs without a per-user Python loop: draw many
items per row at once, reject known items with a sorted-key membership test, keep
the first distinct survivors, and repeat for the few rows that ran short. Rows
whose allowed pool is a small part of the catalogue finish with an exact
Gumbel-top-k pass over the catalogue instead of endless redraws.

The result depends only on (data, split, sampler, N, seed), never on the number
of processes, so every rank ranks the same candidates and results are repeatable.
"""
from __future__ import annotations

import warnings

import numpy as np

from data_modules.interactions import TEST, VAL, InteractionData
from data_modules.known_pairs import KnownPairs, contains_sorted

SAMPLERS = ("uniform", "popularity", "given")
SPLIT_NAMES = {VAL: "val", TEST: "test"}
_CHUNK_DRAWS = 4_000_000  # flat draws per vectorised step (bounds memory)
_EXACT_CELLS = 4_000_000  # rows x items per Gumbel-top-k step
_ROUNDS = 4  # oversampling rounds before the exact pass


def known_keys(data: InteractionData) -> np.ndarray:
    """Sorted unique ``user * num_items + item`` over all splits (what we must never sample)."""
    frame = data.interactions
    return KnownPairs(frame["user"].to_numpy(), frame["item"].to_numpy(), data.num_items).keys


def _first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct key (a stable sort, no hashing:
    ``np.unique`` takes a slow hash path on large int arrays in recent numpy)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    return order[np.r_[True, ordered[1:] != ordered[:-1]]] if len(keys) else order


def _allowed_pool(
    users: np.ndarray, known: np.ndarray, weights: np.ndarray, num_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many items may be drawn, and the share of weight they carry."""
    num_items = len(weights)
    k_users, k_items = known // num_items, known % num_items
    positive = weights > 0
    blocked = np.bincount(k_users, weights=positive[k_items], minlength=num_users)
    blocked_mass = np.bincount(k_users, weights=weights[k_items], minlength=num_users)
    pool = int(positive.sum()) - blocked[users].astype(np.int64)
    share = 1.0 - blocked_mass[users] / float(weights.sum())
    return pool, share


def sample_negatives(
    users: np.ndarray,
    known: np.ndarray,
    weights: np.ndarray,
    num_negatives: int,
    rng: np.random.Generator,
    num_users: int | None = None,
) -> np.ndarray:
    """``[len(users), num_negatives]`` distinct items per row, drawn proportionally to
    integer ``weights`` [num_items] among items with ``user*num_items+item`` not in ``known``."""
    users = np.asarray(users, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.int64)
    if (weights < 0).any() or weights.sum() == 0:
        raise ValueError("sampling weights must be non-negative with a positive total")
    n = int(num_negatives)
    num_users = int(num_users if num_users is not None else (users.max(initial=-1) + 1))
    pool, share = _allowed_pool(users, known, weights, num_users)
    short = pool < n
    if short.any():
        worst = int(np.argmin(pool))
        raise ValueError(
            f"{int(short.sum())} of {len(users)} evaluated rows have fewer than {n} items "
            f"to sample as negatives (e.g. user {int(users[worst])} has only {int(pool[worst])} "
            "unseen items with non-zero sampling weight); lower eval.num_negatives or use "
            "eval.protocol=full"
        )
    out = np.full((len(users), n), -1, dtype=np.int64)
    filled = np.zeros(len(users), dtype=np.int64)
    cdf = None if (weights == 1).all() else np.cumsum(weights)  # None: uniform
    pending = np.arange(len(users))
    for round_ in range(_ROUNDS):
        if len(pending) == 0:
            break
        need = n - filled[pending]
        draws = np.ceil((need * 1.5 + 8) * 2**round_ / np.maximum(share[pending], 1e-12))
        cheap = draws <= 2 * len(weights)  # else the exact pass is cheaper than redrawing
        rows, draws = pending[cheap], draws[cheap].astype(np.int64)
        for chunk in _chunks(draws, _CHUNK_DRAWS):
            _draw_round(rows[chunk], draws[chunk], users, known, cdf, len(weights), out, filled, rng)
        pending = np.flatnonzero(filled < n)
    if len(pending):
        _exact_fill(pending, users, known, weights, out, filled, rng)
    return out


def _chunks(sizes: np.ndarray, budget: int) -> list[slice]:
    """Consecutive slices whose ``sizes`` sum to about ``budget`` (at least one row each)."""
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(budget, sizes.sum() + budget, budget))
    starts = np.unique(np.concatenate([[0], bounds]))
    starts = starts[starts < len(sizes)]
    ends = np.append(starts[1:], len(sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts, ends) if b > a]


def _draw_round(rows, draws, users, known, cdf, num_items, out, filled, rng) -> None:
    """One oversample-and-reject step for ``rows``, appending to ``out`` in draw order.
    ``cdf`` is the cumulative integer weight, or None for uniform draws."""
    n = out.shape[1]
    local = np.repeat(np.arange(len(rows)), draws)
    if cdf is None:
        items = rng.integers(0, num_items, size=len(local))
    else:
        items = np.searchsorted(cdf, rng.integers(0, cdf[-1], size=len(local)), side="right")
    ok = ~contains_sorted(known, users[rows][local] * num_items + items)
    row_keys = local * num_items + items
    have = out[rows] >= 0
    chosen = np.sort((np.arange(len(rows))[:, None] * num_items + out[rows])[have])
    ok &= ~contains_sorted(chosen, row_keys)
    # First occurrence of each (row, item) among the surviving draws, in draw order.
    cand = np.flatnonzero(ok)
    first = _first_occurrences(row_keys[cand])
    keep = np.zeros(len(local), dtype=bool)
    keep[cand[first]] = True
    order = np.cumsum(keep)
    row_start = np.concatenate([[0], np.cumsum(draws)[:-1]])
    before = np.concatenate([[0], order])[row_start]
    slot = order - before[local] - 1 + filled[rows][local]
    keep &= slot < n
    out[rows[local[keep]], slot[keep]] = items[keep]
    filled[rows] += np.bincount(local[keep], minlength=len(rows))


def _exact_fill(pending, users, known, weights, out, filled, rng) -> None:
    """Finish rows with an exact weighted draw without replacement (Gumbel top-k),
    excluding known and already chosen items; vectorised over row blocks."""
    num_items = len(weights)
    n = out.shape[1]
    logw = np.log(np.where(weights > 0, weights, 1).astype(np.float64))
    block = max(1, _EXACT_CELLS // num_items)
    for start in range(0, len(pending), block):
        rows = pending[start : start + block]
        keys = logw[None, :] + rng.gumbel(size=(len(rows), num_items))
        keys[:, weights == 0] = -np.inf
        lo, hi = np.searchsorted(known, users[rows] * num_items), np.searchsorted(
            known, (users[rows] + 1) * num_items
        )
        lens = hi - lo
        r = np.repeat(np.arange(len(rows)), lens)
        idx = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(lo, lens)
        keys[r, known[idx] % num_items] = -np.inf
        have = out[rows] >= 0
        keys[np.nonzero(have)[0], out[rows][have]] = -np.inf
        need = n - filled[rows]
        top = np.argsort(-keys, axis=1, kind="stable")[:, : int(need.max())]
        cols = np.arange(top.shape[1])
        take = cols[None, :] < need[:, None]
        rr, cc = np.nonzero(take)
        out[rows[rr], filled[rows][rr] + cc] = top[rr, cc]
        filled[rows] = n


def given_negatives(data: InteractionData, split: int, users: np.ndarray) -> np.ndarray:
    """Rows of ``data.eval_negatives`` for an evaluation split, indexed by user id."""
    name = SPLIT_NAMES.get(split, str(split))
    table = data.eval_negatives.get(name, data.eval_negatives.get(split))  # type: ignore[call-overload]
    if table is None:
        raise ValueError(
            f"eval.sampler=given but {data.name} has no given negatives for split '{name}' "
            f"(has: {sorted(map(str, data.eval_negatives))}); use eval.sampler=uniform or "
            "popularity, or a loader that provides them"
        )
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[0] != data.num_users:
        raise ValueError(
            f"given negatives for '{name}' must be [num_users={data.num_users}, N], "
            f"got shape {table.shape}"
        )
    if not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"given negatives for '{name}' must be integer item ids, got {table.dtype}")
    if table.size and (table.min() < 0 or table.max() >= data.num_items):
        raise ValueError(
            f"given negatives for '{name}' hold item ids outside 0..{data.num_items - 1}"
        )
    return table[users].astype(np.int64)


def split_candidates(
    data: InteractionData, split: int, sampler: str, num_negatives: int, seed: int
) -> np.ndarray:
    """``[rows, 1 + N]`` candidates per evaluated row of ``split``, target in column 0."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}'; choose from {list(SAMPLERS)}")
    users, targets = data.targets(split)
    if sampler == "given":
        negatives = given_negatives(data, split, users)
        clash = int((negatives == targets[:, None]).any(axis=1).sum())
        if clash:
            warnings.warn(
                f"{clash} of {len(users)} rows list their target among the given negatives; "
                "those copies of the target are not counted as negatives",
                stacklevel=2,
            )
    else:
        if sampler == "popularity":
            weights = data.item_popularity().astype(np.int64)
        else:
            weights = np.ones(data.num_items, dtype=np.int64)
        rng = np.random.default_rng([int(seed), int(split)])
        negatives = sample_negatives(
            users, known_keys(data), weights, num_negatives, rng, num_users=data.num_users
        )
    return np.concatenate([targets[:, None], negatives], axis=1)
