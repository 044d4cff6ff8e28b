"""Benchmark side features: each model with and without them, overall and on tail items.

For every model family (SASRec, NeuMF) it trains the id-only model and its feature
variant (``sasrec`` vs ``sasrec_features``, ``neumf`` vs ``neumf_features``) with
``python -m train`` under the same budget and settings, reloads the checkpoint chosen
on validation, and ranks the test split (full ranking, known items removed) on:

- **all** test rows;
- **tail<=N**: rows whose target has at most N training interactions (``--tail-max``,
  default 20 and 50): rarely seen items, where ids have little to learn from;
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

ROOT = Path(__file__).resolve().parents[1]  # training runs start from the checkout

VARIANTS = {"sasrec": ("sasrec", "sasrec_features"), "neumf": ("neumf", "neumf_features")}
# Settings shared by both variants of a family (SASRec as in conf/experiment/sasrec_ce_ml1m).
FAMILY_OVERRIDES = {
    "sasrec": ["model.net.hidden=64", "model.net.dropout=0.1", "model.task.loss.name=ce"],
    "neumf": [
        "model.datamodule.batch_size=1024", "model.net.mf_dim=8", "model.net.mlp_embed_dim=32",
        "model.net.layers=[64,32,16,8]",
    ],
}
KS = (10, 100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="sequence file (e.g. the SASRec ml-1m.txt), or 'synthetic'")
    parser.add_argument("--items", default=None, help="item features TSV (e.g. ml-1m.items.tsv)")
    parser.add_argument("--users", default=None, help="user features TSV (e.g. ml-1m.users.tsv)")
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-time", default="00:00:08:00", help="per-run trainer.max_time DD:HH:MM:SS ('none': no limit)")
    parser.add_argument("--max-epochs", type=int, default=200, help="per-run trainer.max_epochs")
    parser.add_argument("--tail-max", type=int, nargs="+", default=[20, 50],
                        help="tail slices: targets with <= N training interactions (one slice per N)")
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


def slice_masks(train_counts: np.ndarray, targets: np.ndarray, tail_max: list[int]) -> dict[str, np.ndarray]:
    """Boolean masks over the test rows, by the target's number of training interactions."""
    seen = train_counts[targets]
    masks = {"all": np.ones(len(targets), dtype=bool)}
    masks.update({f"tail<={n}": seen <= n for n in tail_max})
    masks["cold"] = seen == 0
    return masks


def slice_metrics(run_dir: Path, tail_max: list[int]) -> dict[str, dict[str, float]]:
    """Test metrics of the run's chosen checkpoint on each slice (plus its row count)."""
    import hydra

    from data_modules.interactions import TEST
    from train.evaluation.evaluator import evaluate
    from train.serving.loading import load_recommender

    model, ctx = load_recommender(run_dir)
    evaluator = hydra.utils.instantiate(ctx.cfg.eval, ks=list(KS))
    _, targets = ctx.data.targets(TEST)
    results = {}
    for name, mask in slice_masks(ctx.data.item_popularity(), targets, tail_max).items():
        metrics = evaluate(model, ctx.data, TEST, evaluator, rows=mask) if mask.any() else {}
        results[name] = {"rows": int(mask.sum()), **metrics}
    return results


# --- report ------------------------------------------------------------------------------

# Columns per slice: the whole split by NDCG/HR@10; rare targets also by HR@100 and MRR
# (few of them reach the top 10 in a short run, so those show whether they move up at all).
COLUMNS = {"all": ("ndcg@10", "hr@10"), "slice": ("ndcg@10", "hr@10", "hr@100", "mrr@100")}


def markdown_table(results: list[dict[str, Any]], budget: str) -> str:
    slices = results[0]["slices"] if results else {}
    shown = [name for name, m in slices.items() if m.get("rows", 0) > 0]
    header, cells = ["model", "features", "epochs", "train s"], []
    for name in shown:
        for metric in COLUMNS["all" if name == "all" else "slice"]:
            header.append(f"{metric.upper()} {name}")
    for r in results:
        row = [r["family"], "yes" if r["features"] else "no", str(r["epochs"]), str(r["train_seconds"])]
        for name in shown:
            metrics = r["slices"].get(name, {})
            for metric in COLUMNS["all" if name == "all" else "slice"]:
                row.append(f"{metrics[metric]:.4f}" if metric in metrics else "-")
        cells.append(row)
    empty = [name for name, m in slices.items() if m.get("rows", 0) == 0]
    lines = [
        f"Test split, full ranking (known items removed). Budget per run: {budget}. "
        "tail<=N: targets with at most N training interactions; cold: none"
        + (f" (empty here: {', '.join(empty)})." if empty else ".")
        + " Rows: " + ", ".join(f"{name} {slices[name]['rows']}" for name in shown) + ".",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in cells),
    ]
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
    table = markdown_table(results, budget)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps({"budget": budget, "results": results}, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
