"""Batch top-K recommendations for many users, streamed to Parquet, CSV or JSON lines.

Users are ranked ``batch_size`` at a time; :func:`recommend` scores the catalogue in item
chunks with a running top-K, so memory stays bounded whatever the catalogue size, and
each batch is written as soon as it is ranked, so memory does not grow with the number
of users.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from recmodels.base import Recommender
from train.serving.loading import RunContext
from train.serving.topk import NO_ITEM, known_pairs, recommend

FORMATS = (".parquet", ".csv", ".jsonl")
COLUMNS = ["user", "rank", "item", "score"]  # the long table of .parquet and .csv


@dataclass
class Chunk:
    """Top-K of a chunk of users (internal ids; ``items`` is -1 where a list ran short)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray


@dataclass
class BatchReport:
    """Counts shown after a batch run (nothing is dropped silently)."""

    users: int = 0
    rows: int = 0
    short_lists: int = 0  # users with fewer than k unseen items
    unknown_users: list[Any] = field(default_factory=list)

    def summary(self, out: Path) -> str:
        lines = [f"wrote {self.rows} recommendations for {self.users} users to {out}"]
        if self.short_lists:
            lines.append(f"{self.short_lists} user(s) had fewer than k unseen items (shorter lists)")
        if self.unknown_users:
            shown = ", ".join(map(repr, self.unknown_users[:5]))
            lines.append(f"skipped {len(self.unknown_users)} unknown user id(s), e.g. {shown}")
        return "\n".join(lines)


def recommend_users(
    model: Recommender,
    ctx: RunContext,
    users: np.ndarray,
    k: int,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    progress: bool = True,
) -> Iterator[Chunk]:
    """Top-``k`` unseen items of each internal user id, chunk by chunk, in input order."""
    users = np.asarray(users, dtype=np.int64)
    size = max(1, int(batch_size))
    with tqdm(total=len(users), desc="recommend", unit="user", disable=not progress) as bar:
        for start in range(0, len(users), size):
            batch = users[start : start + size]
            exclude = known_pairs(ctx.known, batch) if exclude_seen else None
            items, scores = recommend(model, ctx.user_context(batch), k, exclude)
            bar.update(len(batch))
            yield Chunk(batch, items.cpu().numpy(), scores.cpu().numpy())


def chunk_frame(chunk: Chunk, ctx: RunContext) -> pd.DataFrame:
    """Long format: one row per (user, rank) with raw ids; short-list slots left out."""
    valid = chunk.items != NO_ITEM
    rows, ranks = np.nonzero(valid)
    return pd.DataFrame(
        {
            "user": ctx.users.to_raw(chunk.users[rows]),
            "rank": (ranks + 1).astype(np.int32),
            "item": ctx.items.to_raw(chunk.items[rows, ranks]),
            "score": chunk.scores[rows, ranks].astype(np.float32),
        }
    )


class RecommendationWriter:
    """Writes chunks to ``.parquet`` or ``.csv`` (long table) or ``.jsonl`` (one user per line)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix not in FORMATS:
            raise ValueError(f"out={self.path}: use a file ending in {' or '.join(FORMATS)}")
        if self.path.is_dir():
            raise ValueError(f"out={self.path} is a folder; give a file name, e.g. {self.path}/top10.parquet")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._parquet: pq.ParquetWriter | None = None
        self._text = open(self._tmp, "w", newline="") if self.path.suffix != ".parquet" else None

    def write(self, frame: pd.DataFrame) -> None:
        if self.path.suffix == ".jsonl":
            self._write_jsonl(frame)
        elif self.path.suffix == ".csv":
            frame.to_csv(self._text, header=self._text.tell() == 0, index=False)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)

    def _write_jsonl(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        grouped = frame.groupby("user", sort=False).agg(items=("item", list), scores=("score", list))
        text = grouped.reset_index().to_json(orient="records", lines=True, double_precision=7)
        self._text.write(text if text.endswith("\n") else text + "\n")

    def close(self, frame_schema: pd.DataFrame | None = None) -> None:
        if self._text is not None:
            if self.path.suffix == ".csv" and self._text.tell() == 0:  # nothing written: still the header
                pd.DataFrame(columns=COLUMNS).to_csv(self._text, index=False)
            self._text.close()
        elif self._parquet is None:  # no rows at all: still write a valid empty table
            empty = frame_schema if frame_schema is not None else pd.DataFrame(columns=COLUMNS)
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), self._tmp)
        else:
            self._parquet.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        if self._text is not None:
            self._text.close()
        if self._parquet is not None:
            self._parquet.close()
        self._tmp.unlink(missing_ok=True)


def write_recommendations(
    model: Recommender,
    ctx: RunContext,
    users: np.ndarray,
    k: int,
    out: str | Path,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    progress: bool = True,
) -> BatchReport:
    """Rank ``users`` (internal ids) and write their top-``k`` to ``out``."""
    report = BatchReport(users=len(users))
    writer = RecommendationWriter(out)
    try:
        for chunk in recommend_users(model, ctx, users, k, batch_size, exclude_seen, progress):
            frame = chunk_frame(chunk, ctx)
            report.rows += len(frame)
            report.short_lists += int((chunk.items == NO_ITEM).any(axis=1).sum())
            writer.write(frame)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return report
