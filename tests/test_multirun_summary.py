"""After recflow-train -m: one table of every job, printed and saved in the sweep folder."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import TINY_DATA
from train.runs.sweep import SUMMARY_CSV, SUMMARY_MD, find_jobs, summarize_sweep, swept_keys

ROOT = Path(__file__).resolve().parents[1]


def fake_job(sweep: Path, number: int, overrides: list[str], metrics: dict | None) -> None:
    hydra_dir = sweep / str(number) / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra_dir / "config.yaml").write_text("monitor: val/ndcg@10\noptimized_metric: null\n")
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": number}}}))
    if metrics is not None:
        (sweep / str(number) / "metrics.json").write_text(json.dumps(metrics))


def test_summary_keeps_failed_jobs_and_names_the_best(tmp_path: Path) -> None:
    for number, lr, value in ((0, "0.01", 0.2), (1, "0.1", 0.3)):
        fake_job(tmp_path, number, [f"lr={lr}", "seed=1"], {"val/ndcg@10": value, "test/ndcg@10": value - 0.1, "test/f1@10": 0.05})
    fake_job(tmp_path, 2, ["lr=1.0", "seed=1"], None)
    assert swept_keys(find_jobs(tmp_path)) == ["lr"]
    text = summarize_sweep(tmp_path)
    assert "3 jobs, 1 failed" in text and "Best by val/ndcg@10: job 1 (lr=0.1) 0.3000" in text
    assert "| job | lr | status | val/ndcg@10 | test/ndcg@10 |" in text  # f1 only in the CSV
    rows = list(csv.DictReader((tmp_path / SUMMARY_CSV).open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert rows[1]["monitor_value"] == "0.3" and rows[1]["test/f1@10"] == "0.05" and rows[2]["test/ndcg@10"] == ""
    assert (tmp_path / SUMMARY_MD).read_text().strip() == text


def test_multirun_writes_and_prints_the_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "train", "-m", "model=gmf,pop", *TINY_DATA, "trainer.max_epochs=1",
         "trainer.enable_progress_bar=false", "num_threads=1", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = list(csv.DictReader((sweep / SUMMARY_CSV).open()))
    assert [(r["job"], r["model"], r["status"]) for r in rows] == [("0", "gmf", "ok"), ("1", "pop", "ok")]
    for row in rows:
        saved = json.loads((Path(row["dir"]) / "metrics.json").read_text())
        assert float(row["monitor_value"]) == saved["val/ndcg@10"]
        assert float(row["test/ndcg@10"]) == saved["test/ndcg@10"]
    assert "Sweep summary: 2 jobs, 0 failed" in result.stdout and "| 1 | pop | ok |" in result.stdout
    assert (sweep / SUMMARY_MD).is_file()
