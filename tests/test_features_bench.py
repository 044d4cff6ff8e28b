"""The feature benchmark's slicing and report (the training runs themselves are not tested here)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_features.py"
spec = importlib.util.spec_from_file_location("bench_features", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_slices_follow_the_targets_training_counts() -> None:
    counts = np.array([0, 3, 20, 21, 100])
    targets = np.array([4, 0, 2, 3, 1, 0])
    masks = bench.slice_masks(counts, targets, tail_max=[20, 50])
    assert list(masks) == ["all", "tail<=20", "tail<=50", "cold"]
    assert masks["all"].tolist() == [True] * 6
    assert masks["tail<=20"].tolist() == [False, True, True, False, True, True]
    assert masks["tail<=50"].tolist() == [False, True, True, True, True, True]
    assert masks["cold"].tolist() == [False, True, False, False, False, True]


def test_table_states_the_budget_and_leaves_out_empty_slices() -> None:
    slices = {
        "all": {"rows": 6, "ndcg@10": 0.5, "hr@10": 0.75},
        "tail<=20": {"rows": 4, "ndcg@10": 0.25, "hr@10": 0.5, "hr@100": 1.0},
        "cold": {"rows": 0},
    }
    results = [{"family": "neumf", "features": True, "epochs": 3, "train_seconds": 12.5, "slices": slices}]
    table = bench.markdown_table(results, "trainer.max_time=00:00:08:00")
    assert "Budget per run: trainer.max_time=00:00:08:00" in table and "(empty here: cold)" in table
    assert "| neumf | yes | 3 | 12.5 | 0.5000 | 0.7500 | 0.2500 | 0.5000 | 1.0000 | - |" in table
    assert "Rows: all 6, tail<=20 4." in table and "| NDCG@10 tail<=20 |" in table and "cold |" not in table
