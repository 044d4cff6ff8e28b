"""User profiles: activity counts match the data, shares are hand-checkable, vectors are the model's."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from tests.serving_runs import trained_run
from train.serving import load_recommender, recommend_users
from train.serving.profiles import run_profile

K = 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("neumf") / "run", "neumf")


@pytest.fixture(scope="module")
def profiles(run_dir: Path, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("profiles") / "p.parquet"
    cfg = {"run": str(run_dir), "ckpt": None, "out": str(out), "k": K, "feature": None, "batch_size": 7, "device": "cpu"}
    run_profile(OmegaConf.create(cfg))
    return pd.read_parquet(out)


def test_activity_matches_the_data(run_dir: Path, profiles: pd.DataFrame) -> None:
    _, ctx = load_recommender(run_dir)
    frame = ctx.data.interactions
    raw_users = ctx.data.user_ids[frame["user"].to_numpy()]
    by_user = pd.DataFrame({"user": raw_users, "item": frame["item"], "ts": frame["timestamp"]}).groupby("user")
    expected = by_user.agg(n=("item", "size"), distinct=("item", "nunique"), first=("ts", "min"), last=("ts", "max"))
    got = profiles.set_index("user").loc[expected.index]
    assert len(profiles) == ctx.data.num_users
    np.testing.assert_array_equal(got["num_interactions"], expected["n"])
    np.testing.assert_array_equal(got["num_distinct_items"], expected["distinct"])
    np.testing.assert_array_equal(got["first_timestamp"], expected["first"])
    np.testing.assert_array_equal(got["last_timestamp"], expected["last"])


def genre_shares(genre_lists) -> dict[str, float]:
    counts = Counter(g for genres in genre_lists for g in genres)
    total = sum(counts.values())
    return {g: c / total for g, c in counts.items()}


def brute_force_top_k(model, data, k: int) -> np.ndarray:
    """[num_users, k]: every user's k best-scored items they never interacted with (any
    split), by a full stable sort of the model's raw scores."""
    with torch.no_grad():
        scores = model.score_all({"user": torch.arange(data.num_users)}).double()
    frame = data.interactions
    users, items = (torch.from_numpy(frame[c].to_numpy().copy()) for c in ("user", "item"))
    scores[users, items] = float("-inf")
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k].numpy()


def test_genre_shares_by_hand(run_dir: Path, profiles: pd.DataFrame) -> None:
    model, ctx = load_recommender(run_dir)
    genres = ctx.data.item_features["genres"]
    history_cols = [c for c in profiles.columns if c.startswith("history_share.genres.")]
    topk_cols = [c for c in profiles.columns if c.startswith("topk_share.genres.")]
    assert history_cols and len(history_cols) == len(topk_cols)
    frame = ctx.data.interactions
    top_k = brute_force_top_k(model, ctx.data, K)
    by_user = profiles.set_index("user")
    for user in range(ctx.data.num_users):
        profile = by_user.loc[ctx.data.user_ids[user]]
        hist = genre_shares(genres[i] for i in frame.loc[frame["user"] == user, "item"])
        top = genre_shares(genres[i] for i in top_k[user])
        for column in history_cols:
            assert profile[column] == pytest.approx(hist.get(column.split(".", 2)[2], 0.0)), (user, column)
        for column in topk_cols:
            assert profile[column] == pytest.approx(top.get(column.split(".", 2)[2], 0.0)), (user, column)
        assert profile["top_genres_history"] == max(sorted(hist), key=hist.get)


def test_representation_is_the_models(run_dir: Path, profiles: pd.DataFrame) -> None:
    model, ctx = load_recommender(run_dir)
    # NeuMF's user vector: its GMF and MLP user embedding rows side by side, read from the weights.
    expected = torch.cat([model.gmf.user_emb.weight, model.mlp.user_emb.weight], dim=1).detach().numpy()
    np.testing.assert_array_equal(profiles["user"], ctx.data.user_ids)  # rows in internal id order
    got = np.stack(profiles["representation"].to_numpy())
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)
