"""Overlay runs' validation curves in one figure and print each run's best value and epoch.

Every training run writes ``<run dir>/plots/history.csv`` (one row per epoch); this reads
those files, so comparing runs needs neither a tracker nor the checkpoints:

    python scripts/compare_runs.py outputs/runs/A outputs/runs/B --metric val/ndcg@10 --out ndcg.png
    python scripts/compare_runs.py outputs/runs/* --metric val/hr@10 --x time   # against training time

Lines are labelled by the run folder's name, with the model and data from its
metrics.json when the run finished.
"""
from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

from train.extras import require

HISTORY = Path("plots") / "history.csv"
X_COLUMNS = {"epoch": "epoch", "time": "elapsed_s"}
Row = dict[str, float]


def read_history(run: Path) -> list[Row]:
    """The run's per-epoch rows; a folder without a history stops with its name."""
    path = run / HISTORY
    if not path.is_file():
        raise SystemExit(
            f"error: {run} has no {HISTORY.as_posix()} (training writes it unless callbacks.plots=null); "
            "is it a run folder?"
        )
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(handle)]


def run_label(run: Path) -> str:
    """``<folder> (<model> on <data>)``, or the folder's name before metrics.json exists."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return run.name
    model, data = metrics.get("model"), metrics.get("data")
    return f"{run.name} ({model} on {data})" if model and data else run.name


def labels(runs: Sequence[Path]) -> list[str]:
    """Each run's label, prefixed with its parent folder where two folders share a name."""
    names = [run_label(run) for run in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{run.resolve().parent.name}/{name}" for run, name in zip(runs, names)]


def curve(run: Path, rows: Sequence[Row], metric: str, x: str) -> tuple[list[float], list[float]]:
    """(x, metric) of the epochs that were validated; stops naming the run if either is missing."""
    column = X_COLUMNS[x]
    if not any(metric in row for row in rows):
        known = sorted({key for row in rows for key in row if key.startswith("val/")})
        raise SystemExit(f"error: {run / HISTORY} has no {metric}; it has {', '.join(known) or 'no val/ metrics'}")
    points = [(row[column], row[metric]) for row in rows if metric in row and column in row]
    if not points:
        raise SystemExit(f"error: {run / HISTORY} has no {column} column for --x {x}")
    return [p[0] for p in points], [p[1] for p in points]


def best(rows: Sequence[Row], metric: str) -> Row:
    """The first row with the highest value (the epoch ModelCheckpoint keeps with mode=max)."""
    scored = [row for row in rows if metric in row]
    return max(scored, key=lambda row: row[metric])


def table(runs: Sequence[tuple[str, Sequence[Row]]], metric: str) -> str:
    """Plain-text table: run, best value, its epoch, epochs recorded, seconds to the best."""
    header = ("run", f"best {metric}", "epoch", "epochs", "seconds to best")
    lines = [header]
    for label, rows in runs:
        top = best(rows, metric)
        seconds = f"{top['elapsed_s']:.1f}" if "elapsed_s" in top else "-"
        lines.append((label, f"{top[metric]:.4f}", str(int(top["epoch"])), str(len(rows)), seconds))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def plot(curves: Sequence[tuple[str, list[float], list[float]]], metric: str, x: str, out: Path) -> None:
    """One line per run, the best point of each starred."""
    figure = require("matplotlib.figure", "plots", "scripts/compare_runs.py", "matplotlib")
    agg = require("matplotlib.backends.backend_agg", "plots", "scripts/compare_runs.py", "matplotlib")
    fig = figure.Figure(figsize=(8, 4.8), dpi=100, layout="constrained")
    agg.FigureCanvasAgg(fig)
    ax = fig.subplots()
    minutes = x == "time" and max((max(xs) for _, xs, _ in curves if xs), default=0) > 300
    for label, xs, ys in curves:
        xs = [v / 60 for v in xs] if minutes else xs
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=label)
        i = max(range(len(ys)), key=ys.__getitem__)
        ax.plot([xs[i]], [ys[i]], marker="*", ms=12, color=line.get_color(), mec="black", ls="none")
    xlabel = {"epoch": "epoch", "time": f"training time ({'min' if minutes else 's'})"}[x]
    ax.set_title(f"{metric} {'per epoch' if x == 'epoch' else 'against training time'} (star: each run's best)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if x == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with plots/history.csv)")
    parser.add_argument("--metric", default="val/ndcg@10", help="a history.csv column (default: val/ndcg@10)")
    parser.add_argument("--x", choices=sorted(X_COLUMNS), default="epoch", help="x axis: epoch or training time")
    parser.add_argument("--out", type=Path, default=Path("compare_runs.png"), help="PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    histories = [(run, read_history(run)) for run in args.runs]  # every folder checked before drawing
    labelled = [(label, run, rows) for label, (run, rows) in zip(labels(args.runs), histories)]
    curves = [(label, *curve(run, rows, args.metric, args.x)) for label, run, rows in labelled]
    plot(curves, args.metric, args.x, args.out)
    print(table([(label, rows) for label, _, rows in labelled], args.metric))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
