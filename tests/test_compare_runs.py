"""scripts/compare_runs.py: one line per run from plots/history.csv, a table of each run's best."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(folder: Path, ndcg: list[float], seconds: float = 2.0, model: str | None = None) -> Path:
    """A run folder with a history (epochs 0..n-1, ``seconds`` per epoch) and maybe a metrics.json."""
    (folder / "plots").mkdir(parents=True)
    lines = ["epoch,step,elapsed_s,train/loss,val/ndcg@10"]
    lines += [f"{e},{10 * (e + 1)},{seconds * (e + 1)},{1 - 0.1 * e},{v}" for e, v in enumerate(ndcg)]
    (folder / "plots" / "history.csv").write_text("\n".join(lines) + "\n")
    if model:
        (folder / "metrics.json").write_text(json.dumps({"model": model, "data": "ml-1m", "val/ndcg@10": max(ndcg)}))
    return folder


def table_rows(text: str) -> dict[str, list[str]]:
    """The printed table's cells by run label (columns are two or more spaces apart)."""
    lines = [re.split(r"\s{2,}", line) for line in text.splitlines()[1:] if line.strip() and not line.startswith("wrote")]
    return {cells[0]: cells[1:] for cells in lines}


def test_two_runs_give_one_picture_and_each_best(script, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = make_run(tmp_path / "a", [0.10, 0.30, 0.25], model="sasrec")
    b = make_run(tmp_path / "b", [0.20, 0.22, 0.28, 0.27])
    out = tmp_path / "out" / "cmp.png"
    script.main([str(a), str(b), "--out", str(out)])
    with Image.open(out) as image:
        assert image.size == (800, 480)
        assert np.asarray(image.convert("L"), dtype=float).var() > 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["a (sasrec on ml-1m)"] == ["0.3000", "1", "3", "4.0"]  # best, epoch, epochs, seconds to best
    assert rows["b"] == ["0.2800", "2", "4", "6.0"]


def test_time_axis_and_another_metric(script, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = make_run(tmp_path / "a", [0.1, 0.2], seconds=400.0)  # > 5 minutes: drawn in minutes
    script.main([str(a), "--metric", "train/loss", "--x", "time", "--out", str(tmp_path / "t.png")])
    assert (tmp_path / "t.png").exists()
    assert "best train/loss" in capsys.readouterr().out
    assert script.curve(a, script.read_history(a), "val/ndcg@10", "time") == ([400.0, 800.0], [0.1, 0.2])


def test_a_folder_without_history_is_named(script, tmp_path: Path) -> None:
    good = make_run(tmp_path / "good", [0.1])
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(SystemExit, match="not_a_run has no plots/history.csv"):
        script.main([str(good), str(empty), "--out", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_an_unknown_metric_lists_the_known_ones(script, tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", [0.1])
    with pytest.raises(SystemExit, match=r"has no val/hr@10; it has val/ndcg@10"):
        script.main([str(run), "--metric", "val/hr@10", "--out", str(tmp_path / "x.png")])


def test_folders_with_one_name_are_told_apart(script, tmp_path: Path) -> None:
    runs = [make_run(tmp_path / parent / "run", [0.1]) for parent in ("x", "y")]
    assert script.labels(runs) == ["x/run", "y/run"]
