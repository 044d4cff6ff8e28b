"""Incremental update vs full retrain under the time-window protocol.

Train on interactions before ``T``, update on ``[T, T+D)``, evaluate on ``[T+D, T+2D)``:
every user with a history before ``T+D`` who is active in the evaluation window has
their first interaction there (with an item seen before ``T+D``) ranked against the
whole catalogue, everything seen before ``T+D`` masked (``train.training.incremental.TimeWindowProtocol``).

Runs, all through ``train.training.run.train`` with the project's configs (fixed epoch budgets,
no early stopping, the last checkpoint is used: nothing is selected on the evaluation
window):

- ``base``: from scratch on ``t < T`` (``--base-epochs``); the model being updated;
- ``stale``: ``base`` grown for the new ids, not trained (what serving it unchanged gives);
- ``update-all``: warm start from ``base``, ``--update-epochs`` on all ``t < T+D``;
- ``update-window``: warm start, ``--update-epochs`` on ``[T, T+D)`` only;
- ``update-frozen``: as ``update-all`` with the old user/item rows frozen;
- ``retrain``: from scratch on all ``t < T+D`` (``--base-epochs``).

Writes ``results.md`` (a Markdown table) and ``results.json`` to ``--out``;
``--prepare-only`` just writes the windows as CSV files for runs by hand.

    python scripts/bench_incremental.py --data ml-100k --root /path/to/movielens --model neumf --out outputs/bench_incremental/ml100k-neumf
    python scripts/bench_incremental.py --data synthetic --model sasrec --out outputs/bench_incremental/synthetic-sasrec
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from data_modules.interactions import InteractionData
from data_modules.sources import movielens, synthetic
from train.building import build_with_data
from train.cli.configs import CONFIG_DIR
from train.evaluation import Evaluator
from train.serving import load_recommender
from train.training.incremental import TimeWindowProtocol, align_with_previous_run, warm_start

DAY = 86_400
MODELS = {
    "neumf": ["model=neumf"],
    "sasrec": [
        "model=sasrec", "model.net.hidden=32", "model.net.num_blocks=2", "model.net.num_heads=1",
        "model.net.max_len=50", "model.datamodule.sliding_windows=true",
    ],
}
VARIANTS = ("base", "stale", "update-all", "update-window", "update-frozen", "retrain")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=["ml-100k", "synthetic"], default="synthetic")
    p.add_argument("--root", default=None, help="MovieLens root (holds ml-100k/u.data); never written to")
    p.add_argument("--model", choices=sorted(MODELS), default="neumf")
    p.add_argument("--start-quantile", type=float, default=0.7, help="T = this quantile of all timestamps")
    p.add_argument("--delta-days", type=float, default=21.0, help="window length D in days")
    p.add_argument("--base-epochs", type=int, default=10, help="epochs of base and retrain")
    p.add_argument("--update-epochs", type=int, default=2, help="epochs of each warm-started update")
    p.add_argument("--lr-scale", type=float, default=1.0, help="init.lr_scale of the updates")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--synthetic-users", type=int, default=1000)
    p.add_argument("--synthetic-items", type=int, default=500)
    p.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every run")
    p.add_argument("--prepare-only", action="store_true",
                   help="only write the windows as CSV files (<out>/windows/{base,update,all,eval}.csv)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_incremental"))
    return p.parse_args(argv)


# --- data ------------------------------------------------------------------------------------


def raw_table(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """(raw user, item, timestamp) of the whole data set, and its name."""
    if args.data == "ml-100k":
        if not args.root:
            raise SystemExit("--data ml-100k needs --root (the folder holding ml-100k/)")
        data = movielens(name="ml-100k", root=args.root, download=False, features=False,
                         cache_dir=args.out / "cache", progress=False)
    else:
        data = synthetic(num_users=args.synthetic_users, num_items=args.synthetic_items, seed=0, progress=False)
    return to_raw(data), data.name


def to_raw(data: InteractionData) -> pd.DataFrame:
    frame = data.interactions
    return pd.DataFrame({
        "user": data.user_ids[frame["user"].to_numpy()],
        "item": data.item_ids[frame["item"].to_numpy()],
        "timestamp": frame["timestamp"].to_numpy(),
    })


def make_protocol(raw: pd.DataFrame, args: argparse.Namespace) -> TimeWindowProtocol:
    start = float(np.floor(np.quantile(raw["timestamp"].to_numpy(), args.start_quantile)))
    return TimeWindowProtocol(raw, start=start, delta=args.delta_days * DAY)


def write_windows(protocol: TimeWindowProtocol, folder: Path) -> dict[str, Path]:
    """Plain windows (user, item, timestamp) for training runs by hand (docs/incremental.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {stage: protocol.training_rows(stage) for stage in ("base", "update", "all")}
    tables["eval"] = protocol.rows(protocol.update_end, protocol.eval_end)
    paths = {}
    for stage, table in tables.items():
        paths[stage] = folder / f"{stage}.csv"
        table.to_csv(paths[stage], index=False)
    return paths


def write_stage(protocol: TimeWindowProtocol, stage: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stage}.csv"
    protocol.stage_table(stage).to_csv(path, index=False)
    return path


# --- runs ------------------------------------------------------------------------------------


def run_config(args: argparse.Namespace, protocol: TimeWindowProtocol, stage: str, csv: Path,
               output_dir: Path, *overrides: str) -> DictConfig:
    cutoffs = ",".join(repr(float(c)) for c in protocol.stage_cutoffs(stage))
    common = [
        "data=tabular", f"data.path={csv}", f"data.cache_dir={csv.parent / 'cache'}",
        "data.preprocess.split=time", f"data.preprocess.time_cutoffs=[{cutoffs}]",
        "logger=none", "~callbacks.early_stopping", "callbacks.model_checkpoint.monitor=null",
        "eval.ks=[10]", "eval.metrics=[hr,ndcg]", f"seed={args.seed}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*common, *MODELS[args.model], *args.extra, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.trainer.enable_progress_bar = False
    return cfg


def timed_train(cfg: DictConfig) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one whole run: data, warm start,
    fit, validation, test, artifacts. CPU time is the steadier number on a shared machine."""
    from train.training.run import train

    wall, cpu = time.perf_counter(), time.process_time()
    train(cfg)
    return time.perf_counter() - wall, time.process_time() - cpu


def trained_steps(run_dir: Path) -> int:
    """Optimiser steps of a finished run (its last checkpoint): a cost measure that, unlike
    seconds on a shared machine, does not depend on what else is running."""
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(checkpoint["global_step"])


def evaluate_run(protocol: TimeWindowProtocol, run_dir: Path, evaluator: Evaluator) -> dict[str, float]:
    model, context = load_recommender(run_dir)
    return protocol.evaluate(model, context.data.user_ids, context.data.item_ids, evaluator)


def evaluate_stale(protocol: TimeWindowProtocol, cfg: DictConfig, evaluator: Evaluator) -> dict[str, float]:
    """The base model grown for the ids of all data before T+D, without any training."""
    data = align_with_previous_run(hydra.utils.instantiate(cfg.data), cfg.init_from)
    model = warm_start(build_with_data(cfg.model.net, data), data, cfg)
    return protocol.evaluate(model, data.user_ids, data.item_ids, evaluator)


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    raw, name = raw_table(args)
    protocol = make_protocol(raw, args)
    work = args.out / "work"
    csv = {stage: write_stage(protocol, stage, work) for stage in ("base", "all", "update")}
    evaluator = Evaluator(ks=[10], metrics=["hr", "ndcg"])
    facts = window_facts(protocol)
    print(json.dumps({"data": name, **facts}, indent=1))
    base_dir = args.out / "runs" / "base"
    warm = [f"init_from={base_dir}", f"init.lr_scale={args.lr_scale}", f"trainer.max_epochs={args.update_epochs}"]
    plan = {
        "base": ("base", [f"trainer.max_epochs={args.base_epochs}"], "from scratch, t < T", args.base_epochs),
        "stale": ("all", warm, "base grown for new ids, no training", 0),
        "update-all": ("all", warm, "warm start, all t < T+D", args.update_epochs),
        "update-window": ("update", warm, "warm start, T <= t < T+D only", args.update_epochs),
        "update-frozen": ("all", [*warm, "init.freeze_old_rows=true"], "warm start, all t < T+D, old rows frozen",
                          args.update_epochs),
        "retrain": ("all", [f"trainer.max_epochs={args.base_epochs}"], "from scratch, all t < T+D", args.base_epochs),
    }
    wanted = ["base", *[v for v in args.variants if v != "base"]]  # every update needs base
    results = []
    for variant in wanted:
        stage, overrides, what, epochs = plan[variant]
        run_dir = args.out / "runs" / variant
        cfg = run_config(args, protocol, stage, csv[stage], run_dir, *overrides)
        if variant == "stale":
            (seconds, cpu, steps), metrics = (0.0, 0.0, 0), evaluate_stale(protocol, cfg, evaluator)
        else:
            seconds, cpu = timed_train(cfg)
            steps = trained_steps(run_dir)
            metrics = evaluate_run(protocol, run_dir, evaluator) if variant != "base" else {}
        row = {"data": name, "model": args.model, "variant": variant, "trains_on": what, "epochs": epochs,
               "steps": steps, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
               **{k: round(v, 4) for k, v in metrics.items()}}
        print(row, flush=True)
        results.append(row)
    return [{**r, **facts} for r in results]


def window_facts(protocol: TimeWindowProtocol) -> dict[str, Any]:
    base, update = protocol.training_rows("base"), protocol.training_rows("update")
    _, report = protocol.targets(protocol.update_end, protocol.eval_end)
    return {
        "T": int(protocol.start), "D_days": protocol.delta / DAY,
        "base_rows": len(base), "update_rows": len(update),
        "new_users": int((~update["user"].drop_duplicates().isin(base["user"])).sum()),
        "new_items": int((~update["item"].drop_duplicates().isin(base["item"])).sum()),
        "eval_users": report["users_evaluated"],
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| data | model | variant | trains on | epochs | steps | wall s | CPU s | NDCG@10 | HR@10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ndcg, hr = (_metric(r.get(k)) for k in ("ndcg@10", "hr@10"))
        lines.append(
            f"| {r['data']} | {r['model']} | {r['variant']} | {r['trains_on']} | {r['epochs']} | {r['steps']} | "
            f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {ndcg} | {hr} |"
        )
    first = results[0]
    lines.append("")
    lines.append(
        f"T = {first['T']}, D = {first['D_days']:g} days; base {first['base_rows']} rows, update window "
        f"{first['update_rows']} rows ({first['new_users']} new users, {first['new_items']} new items); "
        f"{first['eval_users']} users evaluated in [T+D, T+2D)."
    )
    return "\n".join(lines) + "\n"


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        raw, name = raw_table(args)
        protocol = make_protocol(raw, args)
        paths = write_windows(protocol, args.out / "windows")
        print(json.dumps({"data": name, **window_facts(protocol), **{k: str(v) for k, v in paths.items()}}, indent=1))
        return []
    results = run_all(args)
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + table)
    print(f"torch threads: {torch.get_num_threads()}; results in {args.out.resolve()}")
    return results


if __name__ == "__main__":
    main()
