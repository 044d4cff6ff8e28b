"""The curriculum benchmark's bookkeeping, on hand-written run outputs (no training)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import gpu_script_variable, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_curriculum", ROOT / "scripts" / "bench_curriculum.py")
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
    assert [(r.arm, r.seed) for r in runs] == [("none", 0), ("none", 1), ("popularity", 0), ("popularity", 1)]
    assert "curriculum=popularity" in runs[2].overrides and "~callbacks.early_stopping" in runs[2].overrides
    curves = {
        ("none", 0): [(10, 1.0, 0.10), (20, 2.0, 0.30), (30, 3.0, 0.25)],  # best 0.30
        ("none", 1): [(10, 1.0, 0.20), (20, 2.0, 0.40)],  # best 0.40
        ("popularity", 0): [(5, 0.5, 0.20), (15, 1.4, 0.31), (30, 3.0, 0.35)],  # reaches 0.30 at 1.4 s
        ("popularity", 1): [(5, 0.5, 0.10), (20, 2.0, 0.39)],  # never reaches 0.40
    }
    for run in runs:
        write_run(run.directory, curves[(run.arm, run.seed)], val=0.3, test=0.2)
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


@pytest.mark.parametrize("budget", [["--max-steps", "500"], ["--max-seconds", "3725"], ["--epochs", "3"]])
def test_budget_overrides_compose_with_the_project_config(tmp_path: Path, budget: list[str]) -> None:
    """Each budget is a plain override of a key the trainer config lists."""
    from train.training.config_checks import check_config

    cfg = tiny_config(tmp_path, "model=sasrec", *bench.budget_overrides(bench.parse_args(budget)))
    check_config(cfg)
    assert cfg.trainer.max_steps == (500 if budget[0] == "--max-steps" else -1)
    assert cfg.trainer.max_epochs == (3 if budget[0] == "--epochs" else -1)


def test_runs_interleave_seeds_so_compared_runs_share_the_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = bench.parse_args(["--out", str(tmp_path), "--models", "sasrec", "--curricula", "popularity", "--seeds", "2", "--jobs", "1"])
    started: list[tuple[str, int]] = []
    monkeypatch.setattr(bench, "execute", lambda run, force: started.append((run.arm, run.seed)))
    bench.execute_all(bench.plan(args), force=False, jobs=args.jobs)
    assert started == [("none", 0), ("popularity", 0), ("none", 1), ("popularity", 1)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--jobs", "0"])


def test_named_arms_carry_their_own_curriculum_and_overrides(tmp_path: Path) -> None:
    args = bench.parse_args([
        "--out", str(tmp_path), "--models", "sasrec", "--seeds", "1",
        "--curriculum-overrides", "curriculum.pacing.ramp_epochs=3",
        "--arm", "warmup_b512", "seq_length", "model.datamodule.batch_size=512",
        "--arm", "b512", "none", "model.datamodule.batch_size=512",
    ])
    runs = bench.plan(args)
    assert [r.arm for r in runs] == ["none", "warmup_b512", "b512"]
    baseline, warmup, big = runs
    assert "curriculum=none" in baseline.overrides and "model.datamodule.batch_size=512" not in baseline.overrides
    assert "curriculum.pacing.ramp_epochs=3" not in baseline.overrides
    assert "curriculum=seq_length" in warmup.overrides
    assert warmup.overrides[-2:] == ["curriculum.pacing.ramp_epochs=3", "model.datamodule.batch_size=512"]
    assert "curriculum=none" in big.overrides and big.overrides[-1] == "model.datamodule.batch_size=512"
    assert warmup.directory == tmp_path / "runs" / "sasrec" / "warmup_b512" / "seed0"


@pytest.mark.parametrize(
    "arm, message",
    [
        (["--arm", "x", "no_such_curriculum"], "unknown curriculum"),
        (["--arm", "none", "seq_length"], "baseline"),
        (["--arm", "a/b", "seq_length"], "letters, digits"),
        (["--arm", "x", "seq_length", "--arm", "x", "none"], "given twice"),
        (["--arm", "x"], "NAME CURRICULUM"),
        (["--arm", "x", "seq_length", "--curricula", "popularity"], "not both"),
    ],
)
def test_bad_arms_are_refused_with_the_reason(arm: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(arm)
    assert message in capsys.readouterr().err


def test_final_target_is_the_baseline_last_validation_during_fit(tmp_path: Path) -> None:
    args = bench.parse_args(["--out", str(tmp_path), "--models", "sasrec", "--seeds", "1", "--target", "final",
                             "--arm", "warmup", "seq_length"])
    runs = bench.plan(args)
    curves = {
        "none": [(10, 1.0, 0.10), (20, 2.0, 0.30), (30, 3.0, 0.25)],  # best 0.30, last 0.25
        "warmup": [(10, 0.8, 0.26), (20, 1.6, 0.29), (30, 2.4, 0.31)],  # 0.25 at 0.8 s, 0.30 at 2.4 s
    }
    for run in runs:
        write_run(run.directory, curves[run.arm], val=0.3, test=0.2)
    final = bench.collect(runs, args.target)
    assert final["sasrec/warmup/0"]["target"] == pytest.approx(0.25)
    assert final["sasrec/warmup/0"]["reach_s"] == pytest.approx(0.8)
    assert final["sasrec/none/0"]["reach_step"] == 20  # its last value (0.25) was passed earlier, at 0.30
    best = bench.collect(runs, "best")
    assert best["sasrec/warmup/0"]["reach_s"] == pytest.approx(2.4)
    rows = {row["curriculum"]: row for row in bench.summary_rows(final, "final")}
    assert rows["warmup"]["train s to baseline final"] == "0.8 ± 0.0"
    assert rows["warmup"]["steps to baseline final"] == "10 ± 0"
    assert bench.baseline_target([], "final") != bench.baseline_target([], "final")  # NaN: no baseline curve


def test_the_gpu_script_curriculum_arms_compose_into_valid_runs(tmp_path: Path) -> None:
    """Step 6 of scripts/gpu_checks.sh: every planned run's overrides compose and pass the checks."""
    from hydra import compose, initialize_config_dir

    from train.training.config_checks import check_config

    big = gpu_script_variable("LINEAR_512")
    args = bench.parse_args([
        "--data", "x.txt", "--models", "sasrec", "--seeds", "1", "--target", "final", "--out", str(tmp_path),
        "--extra", "experiment=sasrec_ce_ml1m", *gpu_script_variable("ON_GPU"),
        "--arm", "seq_length", "seq_length", "--arm", "seq_length_b512", "seq_length", *big, "--arm", "b512", "none", *big,
    ])
    composed = {}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for run in bench.plan(args):
            cfg = compose(config_name="train", overrides=run.overrides)
            check_config(cfg)
            composed[run.arm] = cfg
    for arm, cfg in composed.items():
        assert "early_stopping" not in cfg.callbacks and cfg.model.net.hidden == 64 and cfg.model.datamodule.device_batches
        assert cfg.model.datamodule.batch_size == (128 if arm in ("none", "seq_length") else 512)
    assert composed["none"].model.task.lr_scaling is None
    assert dict(composed["seq_length_b512"].model.task.lr_scaling) == {"rule": "linear", "reference_batch_size": 128}
    assert "knobs" in composed["seq_length_b512"].curriculum and "knobs" not in composed["b512"].curriculum
