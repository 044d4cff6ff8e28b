"""User profiles, one row per user, written by ``recflow-profile``.

Columns: the raw ``user`` id; ``representation`` (the model's user vector:
``Recommender.user_representation``, e.g. NCF's user embedding or a sequence model's
final hidden state); activity (``num_interactions``, ``num_distinct_items``,
``first_timestamp``, ``last_timestamp``); and, when the items have a multi-valued
feature such as genres, readable affinities: ``history_share.<feature>.<value>``
(share of the value among all values of the user's items) and
``topk_share.<feature>.<value>`` (the same over the model's top-``k`` unseen items),
plus ``top_<feature>_history`` / ``top_<feature>_topk`` (the largest share). Shares of a
user sum to 1 whenever the user's items carry any value.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig

from data_modules.interactions import InteractionData
from recmodels.base import Recommender
from train.serving import RunContext, load_recommender, recommend_users


@dataclass
class ItemTags:
    """A multi-valued item feature as a dense item x value indicator matrix."""

    feature: str
    values: list[str]
    matrix: torch.Tensor  # [num_items, num_values] float32, 1 where the item has the value


def activity(data: InteractionData) -> pd.DataFrame:
    """Per internal user: interaction count, distinct items, first/last timestamp."""
    frame = data.interactions
    users = frame["user"].to_numpy()
    counts = np.bincount(users, minlength=data.num_users)
    stamps = frame.groupby("user", sort=True)["timestamp"].agg(["min", "max"]).reindex(range(data.num_users))
    distinct = frame.groupby("user", sort=True)["item"].nunique().reindex(range(data.num_users), fill_value=0)
    return pd.DataFrame(
        {
            "num_interactions": counts.astype(np.int64),
            "num_distinct_items": distinct.to_numpy(dtype=np.int64),
            "first_timestamp": stamps["min"].to_numpy(),
            "last_timestamp": stamps["max"].to_numpy(),
        }
    )


def item_tags(data: InteractionData, feature: str | None = None) -> ItemTags | None:
    """The chosen (or first list-valued) item feature as an indicator matrix, if any."""
    features = data.item_features
    if features is None or features.empty:
        if feature:
            raise ValueError(f"feature={feature!r}: this run's data has no item features")
        return None
    if feature is None:
        listed = [c for c in features.columns if _is_list_valued(features[c])]
        if not listed:
            return None
        feature = listed[0]
    if feature not in features.columns:
        raise ValueError(f"feature={feature!r} is not an item feature; available: {list(features.columns)}")
    cells = features[feature].to_numpy(dtype=object)
    lists = [c if isinstance(c, (list, tuple, np.ndarray)) else ([] if _missing(c) else [c]) for c in cells]
    lengths = np.fromiter((len(c) for c in lists), dtype=np.int64, count=len(lists))
    flat = pd.Series([v for c in lists for v in c], dtype=object).astype(str)
    codes, values = pd.factorize(flat, sort=True)
    matrix = torch.zeros(data.num_items, len(values))
    if len(codes):
        matrix[torch.from_numpy(np.repeat(np.arange(len(lists)), lengths)), torch.from_numpy(codes)] = 1.0
    return ItemTags(feature, [str(v) for v in values], matrix)


def _is_list_valued(column: pd.Series) -> bool:
    sample = column.dropna()
    return len(sample) > 0 and isinstance(sample.iloc[0], (list, tuple, np.ndarray))


def _missing(cell: object) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell))


def shares(counts: torch.Tensor) -> torch.Tensor:
    """Rows normalised to sum 1; rows without any value stay all zero."""
    totals = counts.sum(1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp_min(1e-12), torch.zeros_like(counts))


def history_tag_counts(data: InteractionData, tags: ItemTags) -> torch.Tensor:
    """[num_users, num_values]: value counts over every interaction of each user."""
    frame = data.interactions
    index = torch.from_numpy(np.stack([frame["user"].to_numpy(), frame["item"].to_numpy()]).astype(np.int64))
    user_items = torch.sparse_coo_tensor(
        index, torch.ones(index.shape[1]), (data.num_users, data.num_items), check_invariants=True
    )
    return torch.sparse.mm(user_items.coalesce(), tags.matrix)


def representations(model: Recommender, ctx: RunContext, batch_size: int = 1024) -> np.ndarray | None:
    """[num_users, d] user vectors, or ``None`` for models without one (most-popular)."""
    out = []
    with torch.inference_mode():
        for start in range(0, ctx.data.num_users, batch_size):
            users = np.arange(start, min(start + batch_size, ctx.data.num_users))
            try:
                out.append(model.user_representation(ctx.user_context(users)).float().cpu().numpy())
            except NotImplementedError:
                return None
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def topk_tag_counts(model: Recommender, ctx: RunContext, tags: ItemTags, k: int, batch_size: int) -> torch.Tensor:
    """[num_users, num_values]: value counts over each user's top-``k`` unseen items."""
    counts = torch.zeros(ctx.data.num_users, len(tags.values))
    padded = torch.cat([tags.matrix, torch.zeros(1, len(tags.values))])  # row -1: short lists
    users = np.arange(ctx.data.num_users)
    for chunk in recommend_users(model, ctx, users, k, batch_size, progress=False):
        counts[torch.from_numpy(chunk.users)] = padded[torch.from_numpy(chunk.items)].sum(1)
    return counts


def build_profiles(
    model: Recommender, ctx: RunContext, k: int = 10, feature: str | None = None, batch_size: int = 1024
) -> pa.Table:
    """The profile table (see the module docstring)."""
    frame = activity(ctx.data)
    frame.insert(0, "user", ctx.users.to_raw(np.arange(ctx.data.num_users)))
    tags = item_tags(ctx.data, feature)
    if tags is not None:
        frame = pd.concat([frame, _share_columns(tags, history_tag_counts(ctx.data, tags), "history")], axis=1)
        topk = topk_tag_counts(model, ctx, tags, k, batch_size)
        frame = pd.concat([frame, _share_columns(tags, topk, "topk")], axis=1)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    vectors = representations(model, ctx, batch_size)
    if vectors is not None:
        flat = pa.array(vectors.astype(np.float32).reshape(-1))
        table = table.append_column("representation", pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]))
    return table


def _share_columns(tags: ItemTags, counts: torch.Tensor, source: str) -> pd.DataFrame:
    values = shares(counts).numpy()
    columns = {f"{source}_share.{tags.feature}.{v}": values[:, j] for j, v in enumerate(tags.values)}
    top = np.asarray(tags.values, dtype=object)[values.argmax(1)] if tags.values else np.array([], dtype=object)
    top = np.where(values.sum(1) > 0, top, None) if tags.values else np.full(len(values), None)
    columns[f"top_{tags.feature}_{source}"] = top
    return pd.DataFrame(columns)


def summary(table: pa.Table) -> str:
    frame = table.drop_columns([c for c in ("representation",) if c in table.column_names]).to_pandas()
    lines = [
        f"{len(frame)} users; interactions per user: mean {frame['num_interactions'].mean():.1f}, "
        f"median {frame['num_interactions'].median():.0f}; "
        f"timestamps {frame['first_timestamp'].min()}..{frame['last_timestamp'].max()}"
    ]
    if "representation" in table.column_names:
        lines.append(f"representation: {table.schema.field('representation').type.list_size} floats per user")
    else:
        lines.append("representation: none (this model has no user vector)")
    for source in ("history", "topk"):
        cols = [c for c in frame.columns if c.startswith(f"{source}_share.")]
        if cols:
            mean = frame[cols].mean().sort_values(ascending=False).head(3)
            shown = ", ".join(f"{c.split('.', 2)[2]} {v:.2f}" for c, v in mean.items())
            lines.append(f"mean {source} shares, top 3: {shown}")
    return "\n".join(lines)


def run_profile(cfg: DictConfig) -> Path:
    model, ctx = load_recommender(cfg.run, cfg.get("ckpt"), cfg.get("device", "cpu"))
    if int(cfg.k) <= 0 or int(cfg.k) > ctx.data.num_items:
        raise ValueError(f"k={cfg.k} must lie in 1..{ctx.data.num_items} (the catalogue size)")
    table = build_profiles(model, ctx, int(cfg.k), cfg.get("feature"), int(cfg.batch_size))
    out = Path(cfg.out) if cfg.get("out") else ctx.run_dir / "profiles" / "profiles.parquet"
    if out.suffix != ".parquet":
        raise ValueError(f"out={out}: profiles are written as Parquet; use a .parquet file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    print(summary(table))
    print(f"wrote {table.num_rows} profiles to {out}")
    return out
