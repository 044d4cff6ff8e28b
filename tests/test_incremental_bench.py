"""scripts/bench_incremental.py end to end on small synthetic data (one epoch per run)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "bench_incremental", Path(__file__).resolve().parents[1] / "scripts" / "bench_incremental.py"
)
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench
SPEC.loader.exec_module(bench)


def test_bench_runs_the_protocol_and_writes_a_table(tmp_path: Path) -> None:
    results = bench.main([
        "--data", "synthetic", "--synthetic-users", "200", "--synthetic-items", "120", "--delta-days", "14",
        "--base-epochs", "1", "--update-epochs", "1", "--variants", "stale", "update-window",
        "--extra", "model.net.mf_dim=4", "model.net.mlp_embed_dim=8", "model.net.layers=[16,8]",
        "--out", str(tmp_path),
    ])
    assert [r["variant"] for r in results] == ["base", "stale", "update-window"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    for row in results[1:]:
        assert 0.0 <= row["ndcg@10"] <= row["hr@10"] <= 1.0
    assert results[1]["seconds"] == 0.0 and results[2]["seconds"] > 0.0
    assert results[1]["steps"] == 0 and results[2]["steps"] > 0
    # The update run's config points at the base run and records the warm start.
    config = (tmp_path / "runs" / "update-window" / "artifacts" / "config.yaml").read_text()
    assert f"init_from: {tmp_path / 'runs' / 'base'}" in config
    table = (tmp_path / "results.md").read_text()
    assert table.count("| synthetic | neumf |") == 3 and "users evaluated" in table
