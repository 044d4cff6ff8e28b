"""Time to quality: wall time until validation NDCG@10 first reaches a threshold.

Each model trains alone (one process, nothing else on the device) with its experiment
config, validating every epoch; Lightning's EarlyStopping ``stopping_threshold`` ends
the run at the first validation at or above the threshold, and that checkpoint (the best
so far, by definition) is the one tested. Reported per model: the training wall time at
that validation (validations included, from the start of ``fit``), the whole process's
wall time (start-up, data loading and the final test included), the epoch, validation and
test NDCG@10, and every setting used.

    python scripts/bench_time_to_quality.py --data PATH/ml-1m.txt --device cpu --models sasrec_ce
    python scripts/bench_time_to_quality.py --data PATH/ml-1m.txt --device gpu   # all three
    python scripts/bench_time_to_quality.py --data FILE --models sasrec_ce --threshold 0.17 -- model.datamodule.batch_size=256

Published anchors on the same file (wall time to the reported quality): SASRec+ full CE
540 s to 0.1821, BERT4Rec 1,409 s (Klenitskiy & Vasilev, RecSys 2023); gSASRec 0.1726.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# model -> (experiment config, default validation NDCG@10 threshold)
MODELS = {
    "sasrec_ce": ("sasrec_ce_ml1m", 0.18),
    "bert4rec": ("bert4rec_ml1m", 0.15),
    "gsasrec": ("gsasrec_ml1m", 0.1726),
}
DEVICES = {
    "cpu": ["trainer.accelerator=cpu", "num_threads=auto"],
    "gpu": ["trainer.accelerator=gpu", "trainer.devices=1"],
}


def command(model: str, threshold: float, args: argparse.Namespace, run_dir: Path, extra: list[str]) -> list[str]:
    experiment, _ = MODELS[model]
    return [
        sys.executable, "-m", "train", f"experiment={experiment}", f"data.path={args.data}", "data.cache=false",
        f"seed={args.seed}", *DEVICES[args.device], "trainer.check_val_every_n_epoch=1",
        f"trainer.max_epochs={args.max_epochs}", f"++callbacks.early_stopping.stopping_threshold={threshold}",
        "eval.ks=[10]", "logger=csv", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *extra,
    ]


def first_reaching(history: Path, threshold: float, metric: str = "val/ndcg@10") -> dict | None:
    """The first history row whose ``metric`` is at or above ``threshold`` (None if none)."""
    with history.open() as handle:
        for row in csv.DictReader(handle):
            value = row.get(metric)
            if value not in (None, "") and float(value) >= threshold:
                return row
    return None


def measure(model: str, args: argparse.Namespace, extra: list[str]) -> dict:
    threshold = args.threshold if args.threshold is not None else MODELS[model][1]
    run_dir = args.out / f"{model}-{args.device}-s{args.seed}"
    cmd = command(model, threshold, args, run_dir, extra)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    process_s = time.perf_counter() - started
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reached = first_reaching(run_dir / "plots" / "history.csv", threshold)
    return {
        "model": model,
        "threshold": threshold,
        "reached": reached is not None,
        "train_s_to_threshold": float(reached["elapsed_s"]) if reached else None,
        "epoch": int(reached["epoch"]) if reached else None,
        "process_s": round(process_s, 1),
        "val_ndcg@10": metrics["val/ndcg@10"],
        "test_ndcg@10": metrics["test/ndcg@10"],
        "command": " ".join(cmd[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="the SASRec/BERT4Rec ml-1m.txt sequence file")
    parser.add_argument("--device", choices=sorted(DEVICES), default="cpu")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--threshold", type=float, default=None, help="overrides every model's default threshold")
    parser.add_argument("--max-epochs", type=int, default=200, help="give up after this many epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/time_to_quality"))
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file; pass the ml-1m.txt sequence file")
    args.data, args.out = args.data.resolve(), args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"device: {args.device}, seed {args.seed}, extra overrides: {' '.join(extra) or '(none)'}")
    print("| model | threshold | train s to threshold | epoch | process s | val NDCG@10 | test NDCG@10 |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for model in args.models:
        r = measure(model, args, extra)
        results.append(r)
        reached = f"{r['train_s_to_threshold']:.1f}" if r["reached"] else f"not reached in {args.max_epochs} epochs"
        print(f"| {model} | {r['threshold']} | {reached} | {r['epoch']} | {r['process_s']} "
              f"| {r['val_ndcg@10']:.4f} | {r['test_ndcg@10']:.4f} |", flush=True)
    for r in results:
        print(f"{r['model']}: python {r['command']}")
    (args.out / "time_to_quality.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
