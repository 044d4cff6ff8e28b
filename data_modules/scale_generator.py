"""Seeded interaction data at scale: ML-20M-shaped and catalogue-shaped sets.

Why generated: the data path (reading, preprocessing, cache, batches) must be measured
at 20M-100M interactions, and no such file ships with the project. The sets have the
shape that matters for that path, not learnable structure (see
:mod:`data_modules.synthetic_generator` for data a model can learn from):

- user history lengths are heavy-tailed (log-normal) above a minimum and sum exactly
  to the requested number of interactions;
- item popularity follows a Zipf law (the item of popularity rank ``r`` is drawn with
  probability proportional to ``r ** -zipf_exponent``); ranks are shuffled over ids;
- each user's timestamps increase (exponential gaps from a random start);
- ``repeats=False`` redraws an item a user already has, for a bounded number of
  rounds (the few left then are counted, and removed by preprocessing's dedup).

Rows are produced in blocks of whole users (about ``chunk_rows`` rows each) and written
block by block, as Parquet (``user``, ``item``, ``timestamp``) or as a SASRec ``user
item`` sequence file, so memory stays at a few arrays per user/item plus one block.
Ids are 1-based, as in SASRec's files. Same spec and seed, same bytes.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("parquet", "sequence")
CHUNK_ROWS = 4_000_000
REDRAW_ROUNDS = 30
START_TIME = 1_300_000_000  # seconds; only order and gaps matter
SPAN_SECONDS = 5 * 365 * 86_400
MEAN_GAP_SECONDS = 3_600.0


@dataclass(frozen=True)
class ScaleSpec:
    """Size and shape of a generated set (sizes are exact)."""

    num_users: int
    num_items: int
    num_interactions: int
    zipf_exponent: float = 1.0
    min_length: int = 5
    length_sigma: float = 1.0  # log-normal spread of the lengths above the minimum
    repeats: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_users, self.num_items, self.min_length) < 1:
            raise ValueError(f"num_users, num_items and min_length must be >= 1; got {self}")
        if self.num_interactions < self.num_users * self.min_length:
            raise ValueError(
                f"{self.num_interactions} interactions cannot give {self.num_users} users at least "
                f"min_length={self.min_length} each; raise num_interactions or lower num_users/min_length"
            )
        if max(self.num_users, self.num_items) >= np.iinfo(np.int32).max:
            raise ValueError("num_users and num_items must stay below 2**31 - 1")
        if self.zipf_exponent < 0 or self.length_sigma < 0:
            raise ValueError("zipf_exponent and length_sigma must be >= 0")


PRESETS = {
    # MovieLens-20M: 138,493 users with at least 20 ratings, 26,744 items, 20,000,263 ratings.
    "ml20m": ScaleSpec(138_493, 26_744, 20_000_263, zipf_exponent=0.9, min_length=20, length_sigma=1.2, repeats=False),
    # A large catalogue's click log: a million users, ten million items, repeats allowed.
    "catalogue": ScaleSpec(1_000_000, 10_000_000, 100_000_000, zipf_exponent=1.0, min_length=5, length_sigma=1.0),
}


def preset(name: str, **overrides: Any) -> ScaleSpec:
    """A preset with some fields replaced (``None`` values keep the preset's)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Block:
    """Rows of consecutive users: 1-based raw ids and timestamps, in history order."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray


def user_lengths(spec: ScaleSpec) -> np.ndarray:
    """History length per user: ``min_length`` plus a log-normal share of the rest,
    rounded so the lengths sum exactly to ``num_interactions``."""
    rng = np.random.default_rng([spec.seed, 0])
    weights = rng.lognormal(0.0, spec.length_sigma, spec.num_users)
    rest = spec.num_interactions - spec.num_users * spec.min_length
    share = rest * weights / weights.sum()
    extra = np.floor(share).astype(np.int64)
    missing = rest - int(extra.sum())  # < num_users: to the largest fractional parts
    if missing:
        extra[np.argpartition(extra - share, missing - 1)[:missing]] += 1
    return spec.min_length + extra


def zipf_cdf(num_items: int, exponent: float) -> np.ndarray:
    """Cumulative probabilities of popularity ranks ``1..num_items``."""
    weights = np.arange(1, num_items + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def blocks(spec: ScaleSpec, chunk_rows: int = CHUNK_ROWS) -> Iterator[Block]:
    """The whole set, block by block (each block holds whole users)."""
    lengths = user_lengths(spec)
    ends = np.cumsum(lengths)
    cdf = zipf_cdf(spec.num_items, spec.zipf_exponent)
    item_of_rank = np.random.default_rng([spec.seed, 1]).permutation(spec.num_items).astype(np.int32) + 1
    first = 0
    number = 0
    while first < spec.num_users:
        done = int(ends[first - 1]) if first else 0
        last = max(first + 1, int(np.searchsorted(ends, done + chunk_rows, side="right")))
        rng = np.random.default_rng([spec.seed, 2, number])
        yield _block(spec, rng, np.arange(first, last), lengths[first:last], cdf, item_of_rank)
        first, number = last, number + 1


def _block(
    spec: ScaleSpec,
    rng: np.random.Generator,
    users: np.ndarray,
    lengths: np.ndarray,
    cdf: np.ndarray,
    item_of_rank: np.ndarray,
) -> Block:
    rows = np.repeat(users.astype(np.int32), lengths)
    ranks = _draw_ranks(rng, cdf, len(rows))
    if not spec.repeats:
        _redraw_repeats(rng, cdf, rows, ranks)
    gaps = rng.exponential(MEAN_GAP_SECONDS, len(rows)).astype(np.int64) + 1
    elapsed = np.cumsum(gaps)
    begin = np.cumsum(lengths) - lengths  # each user's first row in the block
    elapsed -= np.repeat(elapsed[begin] - gaps[begin], lengths)
    starts = START_TIME + rng.integers(0, SPAN_SECONDS, len(users))
    return Block(rows + 1, item_of_rank[ranks], np.repeat(starts, lengths) + elapsed)


def _draw_ranks(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    ranks = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(ranks, len(cdf) - 1).astype(np.int32)


def _redraw_repeats(rng: np.random.Generator, cdf: np.ndarray, users: np.ndarray, ranks: np.ndarray) -> None:
    """Redraw (in place) rows whose item the user already has, for a few rounds."""
    for _ in range(REDRAW_ROUNDS):
        repeated = _repeated_rows(users, ranks)
        if not len(repeated):
            return
        ranks[repeated] = _draw_ranks(rng, cdf, len(repeated))


def _repeated_rows(users: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Rows whose (user, item) pair occurred on an earlier row."""
    keys = users.astype(np.int64) * (int(ranks.max()) + 1) + ranks
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    return order[1:][keys[1:] == keys[:-1]]


def write(spec: ScaleSpec, path: str | os.PathLike, format: str, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Write the set to ``path`` (``parquet`` or a ``sequence`` file of ``user item``
    lines); returns what was written. The file appears complete or not at all."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is unknown; use one of {FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    rows = repeats = 0
    writer = _ParquetBlocks(partial) if format == "parquet" else _SequenceBlocks(partial)
    try:
        for block in blocks(spec, chunk_rows):
            writer.write(block)
            rows += len(block.users)
            if not spec.repeats:
                repeats += len(_repeated_rows(block.users, block.items))
    finally:
        writer.close()
    os.replace(partial, path)
    return {"path": str(path), "format": format, "rows": rows, "repeated_pairs": repeats,
            "bytes": path.stat().st_size, **spec.__dict__}


class _ParquetBlocks:
    """One row group per block: int32 ids, int64 timestamps."""

    SCHEMA = pa.schema([("user", pa.int32()), ("item", pa.int32()), ("timestamp", pa.int64())])

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, self.SCHEMA)

    def write(self, block: Block) -> None:
        table = pa.table([block.users, block.items, block.timestamps], schema=self.SCHEMA)
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


class _SequenceBlocks:
    """SASRec's ``user item`` lines, each user's lines in time order."""

    SCHEMA = pa.schema([("user", pa.int32()), ("item", pa.int32())])

    def __init__(self, path: Path) -> None:
        options = pacsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none")
        self.writer = pacsv.CSVWriter(str(path), self.SCHEMA, write_options=options)

    def write(self, block: Block) -> None:
        self.writer.write_table(pa.table([block.users, block.items], schema=self.SCHEMA))

    def close(self) -> None:
        self.writer.close()
