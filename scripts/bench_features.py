"""Benchmark side features: each model with and without them, overall and on tail items.

For every model family (SASRec, NeuMF) it trains the id-only model and its feature
variant (``sasrec`` vs ``sasrec_features``, ``neumf`` vs ``neumf_features``) with
``python -m train`` under the same budget and settings, reloads the checkpoint chosen
on validation, and ranks the test split (full ranking, known items removed) on:

- **all** test rows;
- **tail**: rows whose target has at most ``--tail-max`` training interactions
  (rarely seen items, where ids have little to learn from and features should help);
- **cold**: rows whose target has no training interaction at all (often empty).

Slices go through the project's one evaluator (``evaluate(..., rows=mask)``), so the
"all" column equals the run's own ``test/`` metrics. Writes ``results.md`` (a Markdown
table stating the budget) and ``results.json`` to ``--out``.

    python scripts/bench_features.py --max-time 00:00:08:00 --out outputs/bench_features
    python scripts/bench_features.py --max-time 00:01:00:00 --max-epochs 200 \\
        --extra trainer.accelerator=gpu            # a longer run on faster hardware
    python scripts/bench_features.py --data synthetic --max-epochs 3 --out /tmp/bf  # smoke test
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ML1M = Path("/work/shared/data/sasrec")
VARIANTS = {"sasrec": ("sasrec", "sasrec_features"), "neumf": ("neumf", "neumf_features")}
# Settings shared by both variants of a family (SASRec as in conf/experiment/sasrec_ce_ml1m).
FAMILY_OVERRIDES = {
    "sasrec": ["model.net.hidden=64", "model.net.dropout=0.1", "model.task.loss.name=ce"],
    "neumf": ["model.datamodule.batch_size=1024"],
}
KS = (10,)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ML1M / "ml-1m.txt"), help="sequence file, or 'synthetic'")
    parser.add_argument("--items", default=str(ML1M / "ml-1m.items.tsv"), help="item features TSV")
    parser.add_argument("--users", default=str(ML1M / "ml-1m.users.tsv"), help="user features TSV")
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-time", default="00:00:08:00", help="per-run trainer.max_time DD:HH:MM:SS ('none': no limit)")
    parser.add_argument("--max-epochs", type=int, default=200, help="per-run trainer.max_epochs")
    parser.add_argument("--tail-max", type=int, default=20, help="tail = targets with <= this many training interactions")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run, e.g. trainer.accelerator=gpu")
    parser.add_argument("--out", default="outputs/bench_features")
    parser.add_argument("--reuse", action="store_true", help="skip runs whose metrics.json exists")
    return parser.parse_args(argv)


# --- runs --------------------------------------------------------------------------------


def data_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    if args.data == "synthetic":
        return ["data=synthetic"]
    overrides = ["data=sequence_file", f"data.path={args.data}", f"data.cache_dir={out / 'cache'}"]
    if args.items:
        overrides.append(f"data.item_features_path={args.items}")
    if args.users:
        overrides.append(f"data.user_features_path={args.users}")
    return overrides


def budget_overrides(args: argparse.Namespace) -> list[str]:
    max_time = "null" if args.max_time.lower() == "none" else args.max_time
    return [f"trainer.max_time={max_time}", f"trainer.max_epochs={args.max_epochs}"]


def run_training(model: str, family: str, args: argparse.Namespace, out: Path) -> Path:
    """Train one model with ``python -m train``; its run directory."""
    run_dir = (out / "runs" / model).resolve()
    if args.reuse and (run_dir / "metrics.json").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "train", f"model={model}", *data_overrides(args, out),
        *FAMILY_OVERRIDES[family], *budget_overrides(args), "logger=none", f"seed={args.seed}",
        "trainer.enable_progress_bar=false", *args.extra, f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    print(f"[{time.strftime('%H:%M:%S')}] training {model}: {' '.join(command[2:])}", flush=True)
    with open(run_dir / "train.log", "w") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{model} failed (exit {result.returncode}); see {run_dir / 'train.log'}")
    return run_dir


# --- slices ------------------------------------------------------------------------------


def slice_masks(train_counts: np.ndarray, targets: np.ndarray, tail_max: int) -> dict[str, np.ndarray]:
    """Boolean masks over the test rows, by the target's number of training interactions."""
    seen = train_counts[targets]
    return {"all": np.ones(len(targets), dtype=bool), "tail": seen <= tail_max, "cold": seen == 0}


def slice_metrics(run_dir: Path, tail_max: int) -> dict[str, dict[str, float]]:
    """Test metrics of the run's chosen checkpoint on each slice (plus its row count)."""
    import hydra

    from data_modules.interactions import TEST
    from train.evaluation.evaluator import evaluate
    from train.inference.loading import load_recommender

    model, ctx = load_recommender(run_dir)
    evaluator = hydra.utils.instantiate(ctx.cfg.eval)
    _, targets = ctx.data.targets(TEST)
    results = {}
    for name, mask in slice_masks(ctx.data.item_popularity(), targets, tail_max).items():
        metrics = evaluate(model, ctx.data, TEST, evaluator, rows=mask) if mask.any() else {}
        results[name] = {"rows": int(mask.sum()), **{k: v for k, v in metrics.items() if "@" in k}}
    return results


# --- report ------------------------------------------------------------------------------


def _cell(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.4f}" if key in metrics else "-"


def markdown_table(results: list[dict[str, Any]], budget: str, tail_max: int) -> str:
    first = results[0]["slices"] if results else {}
    rows = {name: first.get(name, {}).get("rows", 0) for name in ("all", "tail", "cold")}
    lines = [
        f"Test split, full ranking (known items removed). Budget per run: {budget}. "
        f"Tail = targets with <= {tail_max} training interactions.",
        "",
        f"| model | features | epochs | train s | NDCG@10 all (n={rows['all']}) | HR@10 all "
        f"| NDCG@10 tail (n={rows['tail']}) | HR@10 tail | NDCG@10 cold (n={rows['cold']}) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["slices"]
        lines.append(
            f"| {r['family']} | {'yes' if r['features'] else 'no'} | {r['epochs']} | {r['train_seconds']} "
            f"| {_cell(s['all'], 'ndcg@10')} | {_cell(s['all'], 'hr@10')} "
            f"| {_cell(s['tail'], 'ndcg@10')} | {_cell(s['tail'], 'hr@10')} | {_cell(s['cold'], 'ndcg@10')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = f"trainer.max_time={args.max_time}, trainer.max_epochs={args.max_epochs}" + (
        f", {' '.join(args.extra)}" if args.extra else ""
    )
    results = []
    for family in args.models:
        for model in VARIANTS[family]:
            run_dir = run_training(model, family, args, out)
            run = json.loads((run_dir / "metrics.json").read_text())
            results.append(
                {
                    "family": family,
                    "model": model,
                    "features": model.endswith("_features"),
                    "epochs": run.get("epochs"),
                    "train_seconds": run.get("train_seconds"),
                    "run_dir": str(run_dir),
                    "slices": slice_metrics(run_dir, args.tail_max),
                }
            )
            print(json.dumps(results[-1]["slices"]["all"]), flush=True)
    table = markdown_table(results, budget, args.tail_max)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"budget": budget, "results": results}, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
