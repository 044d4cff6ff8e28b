"""Batch top-K for chosen users of a run, written by ``recflow-infer``.

Every chosen user gets the ``k`` best-scored items they have not interacted with,
with scores and raw ids, in a Parquet table (``user, rank, item, score``) or JSON
lines (``{"user", "items", "scores"}``). See conf/infer.yaml for all options.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from train.serving import RunContext, load_recommender, write_recommendations

ON_UNKNOWN = ("skip", "error")


def read_user_ids(path: str | Path) -> list:
    """Raw user ids from .txt (one per line), .csv or .parquet (column ``user``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"users={path}: no such file; give a file of raw user ids or users=all")
    if path.suffix in (".csv", ".parquet"):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        if "user" not in frame.columns:
            raise ValueError(f"users={path} needs a column named 'user' (has {list(frame.columns)})")
        return frame["user"].dropna().tolist()
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def select_users(ctx: RunContext, users: str, on_unknown: str) -> tuple[np.ndarray, list]:
    """(internal ids to rank, raw ids that are unknown)."""
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown={on_unknown!r}: use one of {ON_UNKNOWN}")
    if str(users) == "all":
        return np.arange(ctx.data.num_users, dtype=np.int64), []
    raw = read_user_ids(users)
    internal = ctx.users.to_internal(raw)
    unknown = np.asarray(raw, dtype=object)[internal < 0].tolist()
    if unknown and on_unknown == "error":
        raise ValueError(
            f"{len(unknown)} of {len(raw)} user ids in {users} are unknown to the run, e.g. "
            f"{unknown[:5]}; fix the file or pass on_unknown=skip"
        )
    return internal[internal >= 0], unknown


def default_out(ctx: RunContext, k: int) -> Path:
    return ctx.run_dir / "recommendations" / f"top{k}.parquet"


def run_infer(cfg: DictConfig) -> Path:
    k = int(cfg.k)
    if k <= 0:
        raise ValueError(f"k={k} must be a positive number of items")
    model, ctx = load_recommender(cfg.run, cfg.get("ckpt"), cfg.get("device", "cpu"))
    if k > ctx.data.num_items:
        raise ValueError(f"k={k} exceeds the catalogue of {ctx.data.num_items} items")
    users, unknown = select_users(ctx, cfg.users, cfg.on_unknown)
    out = Path(cfg.out) if cfg.get("out") else default_out(ctx, k)
    report = write_recommendations(
        model, ctx, users, k, out, int(cfg.batch_size), bool(cfg.exclude_seen), bool(cfg.progress)
    )
    report.unknown_users = unknown
    print(report.summary(out))
    return out
