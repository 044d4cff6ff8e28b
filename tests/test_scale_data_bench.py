"""scripts/bench_scale.py at a tiny size: every phase runs in its own process and the
cached load sees the rows the cold load kept."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_scale.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_sizes_broadcast_one_value_and_refuse_mismatched_lists() -> None:
    module = bench()
    args = module.parse_args(["--interactions", "1e3", "2e3", "--items", "50"])
    assert [(s.interactions, s.items, s.users) for s in module.sizes(args)] == [(1000, 50, 10), (2000, 50, 20)]
    with pytest.raises(SystemExit, match="--items"):
        module.sizes(module.parse_args(["--interactions", "1e3", "2e3", "--items", "5", "6", "7"]))


@pytest.mark.slow
def test_tiny_run_writes_results_for_every_phase(tmp_path: Path) -> None:
    module = bench()
    results = module.main([
        "--interactions", "5000", "--items", "300", "--phases", "load_cold", "load_cached",
        "--format", "parquet", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
    ])
    phases = {r["phase"]: r for r in results}
    assert set(phases) == {"generate", "load_cold", "load_cached"} and not any("error" in r for r in results)
    assert phases["load_cached"]["rows_kept"] == phases["load_cold"]["rows_kept"] > 0
    assert all(r["peak_rss_mib"] > 0 for r in results)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert "load_cached" in (tmp_path / "out" / "results.md").read_text()
