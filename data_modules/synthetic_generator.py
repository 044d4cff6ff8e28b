"""Seeded synthetic interaction data with structure a recommender can learn.

Why synthetic: the default config must train in about a minute on a laptop CPU with
no download, and a model that works must clearly beat most-popular on it. Structure:

- items belong to latent clusters and have Zipf-skewed popularity;
- every user has a home cluster and mostly picks popular items of that cluster
  (collaborative signal);
- each item has a few successors in its cluster, and the next pick is often a
  successor of the last (or second-last) item (sequential, Markov-like signal);
- a little global noise; users never repeat an item.

Side features correlate with the clusters: items have ``genres`` (a list: the
cluster's genre most of the time, sometimes a second one) and a numeric ``year``;
users have an ``age`` bucket (MovieLens codes) and a ``gender``-like flag. Everything
comes from one ``numpy.random.Generator`` seeded by ``seed``: same seed, same data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

AGE_BUCKETS = np.array([1, 18, 25, 35, 45, 50, 56])
START_TIME = 1_600_000_000  # seconds; only order and gaps matter


@dataclass(frozen=True)
class WalkProcess:
    """The generative step: a user's next-item weights from their home cluster and history.

    The walk samples every pick from :meth:`weights`; knowing it (and the user's cluster)
    gives the best ranking any model could learn, a ceiling for benchmarks.
    """

    transitions: np.ndarray  # [I, I] row-stochastic successor probabilities
    cluster_pop: np.ndarray  # [C, I] popularity within each cluster (rows sum to 1)
    popularity: np.ndarray  # [I] global popularity (sums to 1)
    p_sequential: float
    p_cluster: float

    def weights(self, home: np.ndarray, seen: np.ndarray, last: np.ndarray | None, before: np.ndarray | None) -> np.ndarray:
        """Unnormalised next-item weights [B, I]: zero on ``seen`` items.

        ``home`` [B, I] is each user's cluster popularity, ``last``/``before`` [B] their
        last and second-to-last picks (the last again for a one-item history; None for
        an empty history).
        """
        seq = home
        if last is not None:
            # Successors of the last two picks, kept inside the user's home cluster so a
            # noise pick does not drag the user into another cluster.
            recent = 0.75 * self.transitions[last]
            recent += 0.25 * self.transitions[before]
            recent[(home <= 0) | seen] = 0.0
            mass = recent.sum(axis=1, keepdims=True)
            seq = np.where(mass > 0, recent / np.maximum(mass, 1e-12), home)
        p_noise = 1.0 - self.p_sequential - self.p_cluster
        weights = self.p_sequential * seq + self.p_cluster * home + p_noise * self.popularity[None, :]
        weights[seen] = 0.0
        return weights


@dataclass
class SyntheticTables:
    """Raw table (raw ids) and raw-id-indexed side features, ready for preprocess()."""

    raw: pd.DataFrame
    item_features: pd.DataFrame
    user_features: pd.DataFrame
    user_cluster: np.ndarray
    item_cluster: np.ndarray
    process: WalkProcess


def generate(
    num_users: int = 1000,
    num_items: int = 500,
    num_clusters: int = 5,
    min_length: int = 30,
    max_length: int = 60,
    seed: int = 0,
    zipf_exponent: float = 1.0,
    p_sequential: float = 0.6,
    p_cluster: float = 0.3,
    num_successors: int = 3,
    num_genres: int = 8,
) -> SyntheticTables:
    """Generate interactions; the remaining ``1 - p_sequential - p_cluster`` is noise."""
    _check(num_users, num_items, num_clusters, min_length, max_length, p_sequential, p_cluster)
    rng = np.random.default_rng(seed)
    item_cluster = rng.permutation(np.arange(num_items) % num_clusters)
    popularity = 1.0 / (1.0 + rng.permutation(num_items)) ** zipf_exponent
    popularity /= popularity.sum()
    in_cluster = item_cluster[None, :] == np.arange(num_clusters)[:, None]
    cluster_pop = np.where(in_cluster, popularity[None, :], 0.0)
    cluster_pop /= cluster_pop.sum(axis=1, keepdims=True)
    transitions = _successors(rng, item_cluster, popularity, num_successors)
    user_cluster = rng.integers(0, num_clusters, num_users)
    lengths = rng.integers(min_length, max_length + 1, num_users)
    process = WalkProcess(transitions, cluster_pop, popularity, p_sequential, p_cluster)
    sequences = _walk(rng, process, user_cluster, lengths)
    users = np.repeat(np.arange(num_users), lengths)
    items = sequences[np.arange(max_length)[None, :] < lengths[:, None]]
    gaps = rng.exponential(86_400.0, len(items)).astype(np.int64) + 1  # strictly increasing
    total = np.cumsum(gaps)
    first = np.cumsum(lengths) - lengths
    offsets = total - np.repeat(total[first] - gaps[first], lengths)
    starts = START_TIME + rng.integers(0, 180 * 86_400, num_users)
    match = item_cluster[items] == user_cluster[users]
    rating = np.clip(np.rint(3.0 + match + rng.normal(0.0, 0.8, len(items))), 1, 5)
    raw = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "timestamp": np.repeat(starts, lengths) + offsets,
            "rating": rating.astype(np.float32),
        }
    )
    return SyntheticTables(
        raw=raw,
        item_features=_item_features(rng, item_cluster, num_clusters, num_genres),
        user_features=_user_features(rng, user_cluster, num_clusters),
        user_cluster=user_cluster,
        item_cluster=item_cluster,
        process=process,
    )


def _check(users, items, clusters, min_len, max_len, p_seq, p_clu) -> None:
    if not 1 <= clusters <= items:
        raise ValueError(f"num_clusters={clusters} must be between 1 and num_items={items}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_length ({min_len}) <= max_length ({max_len})")
    if max_len > items // 2:
        raise ValueError(
            f"max_length={max_len} must be at most num_items/2={items // 2}: users never repeat "
            "an item, so long sequences would exhaust the catalogue"
        )
    if users < 1:
        raise ValueError("num_users must be >= 1")
    if p_seq < 0 or p_clu < 0 or p_seq + p_clu > 1:
        raise ValueError("p_sequential and p_cluster must be >= 0 with p_sequential + p_cluster <= 1")


def _successors(
    rng: np.random.Generator, item_cluster: np.ndarray, popularity: np.ndarray, count: int
) -> np.ndarray:
    """Row-stochastic [I, I]: each item's next item among ``count`` same-cluster items."""
    num_items = len(item_cluster)
    weights = 0.5 ** np.arange(count)
    weights /= weights.sum()
    transitions = np.zeros((num_items, num_items))
    # Gumbel top-k: ``count`` distinct same-cluster items per row, leaning popular.
    keys = np.log(popularity)[None, :] + rng.gumbel(size=(num_items, num_items))
    keys[item_cluster[:, None] != item_cluster[None, :]] = -np.inf
    np.fill_diagonal(keys, -np.inf)
    top = np.argsort(-keys, axis=1)[:, :count]
    valid = np.isfinite(np.take_along_axis(keys, top, axis=1))
    rows = np.repeat(np.arange(num_items), count).reshape(num_items, count)
    transitions[rows[valid], top[valid]] = np.broadcast_to(weights, top.shape)[valid]
    sums = transitions.sum(axis=1, keepdims=True)
    return np.divide(transitions, sums, out=np.zeros_like(transitions), where=sums > 0)


def _walk(
    rng: np.random.Generator,
    process: WalkProcess,
    user_cluster: np.ndarray,
    lengths: np.ndarray,
    chunk_users: int = 1024,
) -> np.ndarray:
    """[U, max_len] item sequences, sampled step by step for blocks of users.

    All uniforms are drawn first (the same stream as one ``rng.random(num_users)`` per
    step), then users are walked in blocks, so memory is a few [block, I] arrays and not
    [U, I] ones, with the same result for every block size.
    """
    num_users = len(user_cluster)
    draws = rng.random((int(lengths.max()), num_users))
    out = np.zeros((num_users, draws.shape[0]), dtype=np.int64)
    for start in range(0, num_users, chunk_users):
        block = slice(start, start + chunk_users)
        steps = int(lengths[block].max())
        home = process.cluster_pop[user_cluster[block]]
        out[block, :steps] = _walk_block(process, home, draws[:steps, block])
    return out


def _walk_block(process: WalkProcess, home: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """[users, steps] item sequences of users with home-cluster popularity ``home``."""
    num_users, num_items = home.shape
    steps = draws.shape[0]
    seen = np.zeros((num_users, num_items), dtype=bool)
    out = np.zeros((num_users, steps), dtype=np.int64)
    rows = np.arange(num_users)
    for step in range(steps):
        last = out[:, step - 1] if step > 0 else None
        before = out[:, max(step - 2, 0)] if step > 0 else None
        cdf = np.cumsum(process.weights(home, seen, last, before), axis=1)
        choice = np.argmax(cdf > (draws[step] * cdf[:, -1])[:, None], axis=1)
        out[:, step] = choice
        seen[rows, choice] = True
    return out


def _item_features(
    rng: np.random.Generator, item_cluster: np.ndarray, num_clusters: int, num_genres: int
) -> pd.DataFrame:
    num_items = len(item_cluster)
    names = np.array([f"genre_{g}" for g in range(num_genres)], dtype=object)
    cluster_genre = rng.permutation(np.arange(num_clusters) % num_genres)
    primary = np.where(
        rng.random(num_items) < 0.8, cluster_genre[item_cluster], rng.integers(0, num_genres, num_items)
    )
    second = rng.integers(0, num_genres, num_items)
    has_second = (rng.random(num_items) < 0.3) & (second != primary)
    genres = [
        [names[p], names[s]] if two else [names[p]]
        for p, s, two in zip(primary, second, has_second)
    ]
    cluster_year = rng.integers(1950, 2015, num_clusters)
    year = np.clip(cluster_year[item_cluster] + np.rint(rng.normal(0, 5, num_items)), 1920, 2024)
    frame = pd.DataFrame(
        {"genres": pd.Series(genres, dtype=object), "year": year.astype(np.int64)},
        index=pd.Index(np.arange(num_items), name="item"),
    )
    return frame


def _user_features(
    rng: np.random.Generator, user_cluster: np.ndarray, num_clusters: int
) -> pd.DataFrame:
    num_users = len(user_cluster)
    preferred_age = rng.integers(0, len(AGE_BUCKETS), num_clusters)
    age_index = np.where(
        rng.random(num_users) < 0.5,
        preferred_age[user_cluster],
        rng.integers(0, len(AGE_BUCKETS), num_users),
    )
    female_share = rng.uniform(0.2, 0.8, num_clusters)
    gender = np.where(rng.random(num_users) < female_share[user_cluster], "F", "M")
    return pd.DataFrame(
        {"gender": gender, "age": AGE_BUCKETS[age_index]},
        index=pd.Index(np.arange(num_users), name="user"),
    )
