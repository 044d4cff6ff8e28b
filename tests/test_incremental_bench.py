"""scripts/bench_incremental.py end to end on small synthetic data (one epoch per run)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch

from data_modules.interactions import TRAIN
from data_modules.sources import synthetic
from train.runs.artifacts import load_run_artifacts
from train.serving import load_recommender

SPEC = importlib.util.spec_from_file_location(
    "bench_incremental", Path(__file__).resolve().parents[1] / "scripts" / "bench_incremental.py"
)
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench
SPEC.loader.exec_module(bench)


def test_bench_runs_the_protocol_and_writes_a_table(tmp_path: Path) -> None:
    started = time.perf_counter()
    results = bench.main([
        "--data", "synthetic", "--synthetic-users", "200", "--synthetic-items", "120", "--delta-days", "14",
        "--base-epochs", "1", "--update-epochs", "1", "--variants", "stale", "update-window",
        "--extra", "model.net.mf_dim=4", "model.net.mlp_embed_dim=8", "model.net.layers=[16,8]",
        "--out", str(tmp_path),
    ])
    wall = time.perf_counter() - started
    assert [r["variant"] for r in results] == ["base", "stale", "update-window"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    stale, update = results[1], results[2]
    assert stale["seconds"] == 0.0 and 0.0 < update["seconds"] <= wall
    assert stale["steps"] == 0 and update["steps"] == expected_steps(tmp_path / "runs" / "update-window")
    # The reported metrics equal a brute-force evaluation of the saved update run.
    hr, ndcg, users = brute_force_window_metrics(tmp_path / "runs" / "update-window", update["T"], update["D_days"])
    assert users == update["eval_users"] > 0
    assert update["hr@10"] == pytest.approx(hr, abs=1e-4) and update["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)
    # The update run's config points at the base run and records the warm start.
    config = (tmp_path / "runs" / "update-window" / "artifacts" / "config.yaml").read_text()
    assert f"init_from: {tmp_path / 'runs' / 'base'}" in config
    table = (tmp_path / "results.md").read_text()
    assert table.count("| synthetic | neumf |") == 3 and "users evaluated" in table


def expected_steps(run: Path) -> int:
    """One epoch over the run's training rows, ``batch_size // (1 + negatives)`` positives a step."""
    artifacts = load_run_artifacts(run)
    node = artifacts.cfg.model.datamodule
    per_step = int(node.batch_size) // (1 + int(node.num_negatives))
    return math.ceil(len(artifacts.data.rows(TRAIN)) / per_step) * int(artifacts.cfg.trainer.max_epochs)


def brute_force_window_metrics(run: Path, start: float, delta_days: float) -> tuple[float, float, int]:
    """HR@10/NDCG@10 on [T+D, T+2D): each user's first interaction there with an item seen
    before T+D, ranked (pessimistically) among all items, the user's earlier items masked."""
    raw = bench.to_raw(synthetic(num_users=200, num_items=120, seed=0, progress=False))
    end, stop = start + delta_days * 86_400, start + 2 * delta_days * 86_400
    before = raw[raw["timestamp"] < end]
    window = raw[(raw["timestamp"] >= end) & (raw["timestamp"] < stop)].sort_values(["user", "timestamp"], kind="stable")
    model, ctx = load_recommender(run)
    users, items = {u: i for i, u in enumerate(ctx.data.user_ids)}, {v: i for i, v in enumerate(ctx.data.item_ids)}
    hits, gains, count = 0.0, 0.0, 0
    for user, rows in window.groupby("user", sort=True):
        rows = rows[rows["item"].isin(before["item"])]
        if user not in set(before["user"]) or rows.empty:
            continue
        target = items[rows["item"].iloc[0]]
        with torch.no_grad():
            scores = model.score_all({"user": torch.tensor([users[user]])})[0].double()
        seen = {items[i] for i in before.loc[before["user"] == user, "item"]} - {target}
        scores[sorted(seen)] = float("-inf")
        rank = int((scores >= scores[target]).sum()) - 1
        hits += rank < 10
        gains += 1 / math.log2(rank + 2) if rank < 10 else 0.0
        count += 1
    return hits / count, gains / count, count
