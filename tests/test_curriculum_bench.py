"""The curriculum benchmark's bookkeeping, on hand-written run outputs (no training)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

SPEC = importlib.util.spec_from_file_location("bench_curriculum", Path(__file__).resolve().parents[1] / "scripts" / "bench_curriculum.py")
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench  # dataclasses look their module up while the class is built
SPEC.loader.exec_module(bench)


def write_run(directory: Path, curve: list[tuple[int, float, float]], val: float, test: float) -> None:
    """A run folder as `python -m train` leaves it: metrics.json and csv/metrics.csv."""
    (directory / "csv").mkdir(parents=True)
    rows = []
    for step, seconds, ndcg in curve:
        rows.append({"epoch": 0, "step": step, "time/step": step, "time/train_s": seconds, "time/wall_s": seconds + 1, "val/ndcg@10": ndcg})
        rows.append({"epoch": 0, "step": step, "train/loss_epoch": 0.5})  # a training row in between
    rows.append({"epoch": 9, "step": 99, "val/ndcg@10": val})  # the final validate() after fit: no time
    pd.DataFrame(rows).to_csv(directory / "csv" / "metrics.csv", index=False)
    (directory / "metrics.json").write_text(json.dumps({"val/ndcg@10": val, "test/ndcg@10": test, "train_seconds": 12.0}))


def test_time_to_reach_the_baseline_best_of_the_same_seed(tmp_path: Path) -> None:
    args = bench.parse_args(["--out", str(tmp_path), "--models", "sasrec", "--curricula", "popularity", "--seeds", "2"])
    runs = bench.plan(args)
    assert [(r.curriculum, r.seed) for r in runs] == [("none", 0), ("none", 1), ("popularity", 0), ("popularity", 1)]
    assert "curriculum=popularity" in runs[2].overrides and "~callbacks.early_stopping" in runs[2].overrides
    curves = {
        ("none", 0): [(10, 1.0, 0.10), (20, 2.0, 0.30), (30, 3.0, 0.25)],  # best 0.30
        ("none", 1): [(10, 1.0, 0.20), (20, 2.0, 0.40)],  # best 0.40
        ("popularity", 0): [(5, 0.5, 0.20), (15, 1.4, 0.31), (30, 3.0, 0.35)],  # reaches 0.30 at 1.4 s
        ("popularity", 1): [(5, 0.5, 0.10), (20, 2.0, 0.39)],  # never reaches 0.40
    }
    for run in runs:
        write_run(run.directory, curves[(run.curriculum, run.seed)], val=0.3, test=0.2)
    results = bench.collect(runs)
    assert results["sasrec/popularity/0"]["target"] == pytest.approx(0.30)
    assert results["sasrec/popularity/0"]["reach_s"] == pytest.approx(1.4)
    assert results["sasrec/popularity/0"]["reach_step"] == 15
    assert results["sasrec/popularity/1"]["reach_s"] is None
    assert results["sasrec/none/1"]["reach_s"] == pytest.approx(2.0)
    assert len(results["sasrec/none/0"]["curve"]) == 3  # the post-fit validate() row is not a curve point
    rows = {row["curriculum"]: row for row in bench.summary_rows(results)}
    assert rows["popularity"]["reached"] == "1/2"
    assert rows["popularity"]["train s to baseline best"] == "1.4 ± 0.0"
    assert rows["none"]["train s to baseline best"] == "2.0 ± 0.0"  # both seeds at 2.0 s
    table = bench.markdown(list(rows.values()), "## t")
    assert table.count("\n| sasrec |") == 2
    images = bench.plot(results, tmp_path)
    assert [p.name for p in images] == ["sasrec_val_vs_time.png", "sasrec_val_vs_step.png"]
    assert all(p.stat().st_size > 1000 for p in images)


def test_budget_and_data_overrides() -> None:
    assert bench.budget_overrides(bench.parse_args(["--max-steps", "500"])) == ["trainer.max_steps=500", "trainer.max_epochs=-1"]
    assert bench.budget_overrides(bench.parse_args(["--max-seconds", "3725"]))[0] == 'trainer.max_time="00:01:02:05"'
    args = bench.parse_args(["--data", "/d/ml-1m.txt", "--ncf-root", "/n", "--models"])
    assert [r.model for r in bench.plan(args)][0] == "neumf"
    assert bench.data_overrides(args, "neumf") == ["data=ncf_split", "data.root=/n"]
    assert bench.data_overrides(args, "sasrec") == ["data=sequence_file", "data.path=/d/ml-1m.txt"]
    assert bench.mean_std([1.0, 3.0, None]) == "2.0000 ± 1.4142"


def test_runs_interleave_seeds_so_compared_runs_share_the_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = bench.parse_args(["--out", str(tmp_path), "--models", "sasrec", "--curricula", "popularity", "--seeds", "2", "--jobs", "1"])
    started: list[tuple[str, int]] = []
    monkeypatch.setattr(bench, "execute", lambda run, force: started.append((run.curriculum, run.seed)))
    bench.execute_all(bench.plan(args), force=False, jobs=args.jobs)
    assert started == [("none", 0), ("popularity", 0), ("none", 1), ("popularity", 1)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--jobs", "0"])
