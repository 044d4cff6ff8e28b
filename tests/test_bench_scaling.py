"""The scaling study: FLOP count by hand, the power-law fit, sizes, and one tiny real study."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_scaling", REPO / "scripts" / "bench_scaling.py")
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench
SPEC.loader.exec_module(bench)


def test_training_flops_count_dense_attention_and_output_by_hand() -> None:
    # Two users with 3 and 5 items, max_len 4 -> used lengths 3 and 4.
    lengths = np.array([3, 5])
    dense, d, blocks, items = 1000, 8, 2, 50
    tokens, targets = 3 + 4, 2 + 3
    attended = (1 + 2 + 3) + (1 + 2 + 3 + 4)
    expected_ce = 6 * dense * tokens + 12 * d * blocks * attended + 6 * d * items * targets
    assert bench.training_flops(dense, d, blocks, lengths, 4, items, "ce", 1) == expected_ce
    expected_sampled = 6 * dense * tokens + 12 * d * blocks * attended + 6 * d * (128 + 1) * targets
    assert bench.training_flops(dense, d, blocks, lengths, 4, items, "sampled_softmax", 128) == expected_sampled


def test_power_law_fit_recovers_exponent_and_prefactor() -> None:
    x = np.array([1e5, 3e5, 1e6, 1e7])
    a, b, r2 = bench.fit_power_law(x, 0.02 * x**0.15)
    assert a == pytest.approx(0.02, rel=1e-9) and b == pytest.approx(0.15, rel=1e-9) and r2 == pytest.approx(1.0)


def test_sizes_parse_with_model_default_heads_and_reject_nonsense() -> None:
    assert bench.parse_size("64x2", "sasrec") == bench.Size(64, 2, 1)
    assert bench.parse_size("64x2", "hstu") == bench.Size(64, 2, 2)
    assert bench.parse_size("50x2x5", "hstu") == bench.Size(50, 2, 5)
    assert bench.parse_size("25x1", "hstu").heads == 1  # 2 does not divide 25
    with pytest.raises(SystemExit, match="HIDDENxBLOCKS"):
        bench.parse_size("64-2", "sasrec")


@pytest.mark.slow
def test_tiny_study_trains_reads_back_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [f"{u} {int(i)}" for u in range(1, 41) for i in rng.integers(1, 30, size=12)]
    data = tmp_path / "seq.txt"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_scaling.py"), "--data", str(data), "--models", "sasrec",
           "--sizes", "8x1", "16x2", "--epochs", "1", "--val-every", "1", "--out", str(out),
           "--", "model.net.max_len=10", "num_threads=1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (out / "scaling.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("model,size,seed,dense_params")
    small, large = (r.split(",") for r in rows[1:])
    assert int(large[3]) > int(small[3])  # more blocks and width -> more dense parameters
    assert "N^" in (out / "scaling.md").read_text()
    assert (out / "scaling.png").stat().st_size > 0


@pytest.mark.slow
def test_generated_study_shares_one_loss_and_reports_the_ceiling(tmp_path: Path) -> None:
    """--data synthetic: one file for every run, --loss replaces HSTU's sampled loss whole,
    two runs at a time, and the generator's own odds as the ceiling."""
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_scaling.py"), "--data", "synthetic",
           "--generate", "num_users=60", "num_items=40", "min_length=6", "max_length=12",
           "--models", "sasrec", "hstu", "--sizes", "8x1", "--epochs", "1", "--val-every", "1",
           "--loss", "{name:ce}", "--parallel", "2", "--out", str(out), "--", "model.net.max_len=10", "num_threads=1"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (out / "runs" / "synthetic.txt").read_text().splitlines()
    assert 60 * 6 <= len(lines) <= 60 * 12
    for run in ("sasrec-d8-b1-h1-s0", "hstu-d8-b1-h2-s0"):
        overrides = (out / "runs" / run / ".hydra" / "overrides.yaml").read_text()
        assert "+model.task.loss={name:ce}" in overrides and f"data.path={out / 'runs' / 'synthetic.txt'}" in overrides
    summary = (out / "scaling.md").read_text()
    ceiling = float(summary.split("test NDCG@10 ")[-1])
    models = [float(r.split(",")[-1]) for r in (out / "scaling.csv").read_text().splitlines()[1:]]
    assert len(models) == 2 and 0 < max(models) < ceiling <= 1
    # The same study again reuses every run; other settings in that folder are refused.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "training sasrec" not in again.stdout and "training hstu" not in again.stdout
    other = [c if c != "num_users=60" else "num_users=61" for c in cmd]
    refused = subprocess.run(other, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "other settings" in refused.stderr
