"""Seconds per epoch, sequences/s and peak RSS of the real training loop (`python -m train`).

Each configuration runs as its own process for a few epochs (no validation during
fit) with train.training.timing.EpochTimer; the first epoch (warm-up) is left out of the median.

    python scripts/bench_train_speed.py --data PATH/ml-1m.txt            # every configuration
    python scripts/bench_train_speed.py --data FILE --epochs 4 -- num_threads=2 trainer.precision=bf16-mixed
    python scripts/bench_train_speed.py --data PATH/ml-1m.txt --only "sampled softmax"   # HSTU vs SASRec

Settings follow the usual comparison: max_len 200, d=50, 2 blocks, 1 head, batch 128,
one pass over the users per epoch. HSTU and SASRec are also timed with the same loss
(sampled softmax, 128 negatives), and their epoch-time ratio is printed.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = ["model.net.hidden=50", "model.net.num_blocks=2", "model.net.num_heads=1", "model.net.max_len=200",
          "model.datamodule.batch_size=128"]
CONFIGS = {
    "SASRec, full CE": ["model=sasrec", "model.task.loss.name=ce", *COMMON],
    "SASRec, BCE (1 negative)": ["model=sasrec", "model.task.loss.name=bce", *COMMON],
    "BERT4Rec, full CE": ["model=bert4rec", "model.task.loss.name=ce", *COMMON],
    "SASRec, sampled softmax (128 negatives)": [
        "model=sasrec", "model.task.loss.name=sampled_softmax", "+model.task.loss.num_negatives=128", *COMMON],
    "HSTU, sampled softmax (128 negatives)": [
        "model=hstu", "model.task.loss.name=sampled_softmax", "model.task.loss.num_negatives=128", *COMMON],
}
RATIO = ("HSTU, sampled softmax (128 negatives)", "SASRec, sampled softmax (128 negatives)")


def run(name: str, overrides: list[str], data: str, epochs: int, extra: list[str], out: Path) -> dict:
    run_dir = out / name.split(",")[0].replace(" ", "_").lower() / name.split(",")[1].strip().split(" ")[0].lower()
    cmd = [sys.executable, "-m", "train", "data=sequence_file", f"data.path={data}", *overrides,
           f"trainer.max_epochs={epochs}", "trainer.check_val_every_n_epoch=1000", "logger=csv",
           "~callbacks.early_stopping", "~callbacks.model_checkpoint", "trainer.enable_progress_bar=false",
           "~callbacks.plots", f"hydra.run.dir={run_dir}", *extra]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [r for r in csv.DictReader(open(run_dir / "csv" / "metrics.csv")) if r.get("time/epoch_s")]
    epoch_s = [float(r["time/epoch_s"]) for r in rows]
    speed = [float(r["time/examples_per_s"]) for r in rows]
    steady = slice(1, None) if len(rows) > 1 else slice(None)
    return {
        "epoch_s": statistics.median(epoch_s[steady]),
        "seq_per_s": statistics.median(speed[steady]),
        "peak_rss_mb": max(float(r["mem/peak_rss_mb"]) for r in rows),
        "epochs": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="sequence file, e.g. the SASRec ml-1m.txt")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", action="append", default=None, metavar="TEXT",
                        help="run the configurations whose name contains TEXT (case-insensitive; repeatable)")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_speed_"))
    data = str(Path(args.data).resolve())
    print(f"cores: {os.cpu_count()}, overrides: {' '.join(extra) or '(none)'}")
    print("| model, loss | s/epoch (median) | sequences/s | peak RSS MB | epochs |")
    print("|---|---|---|---|---|")
    chosen = selected(args.only)
    results = {}
    for name in chosen:
        r = results[name] = run(name, CONFIGS[name], data, args.epochs, extra, out)
        print(f"| {name} | {r['epoch_s']:.1f} | {r['seq_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['epochs']} |", flush=True)
    if all(name in results for name in RATIO):
        ratio = results[RATIO[0]]["epoch_s"] / results[RATIO[1]]["epoch_s"]
        print(f"\nHSTU / SASRec epoch time (same loss, same run): {ratio:.2f}x")


def selected(only: list[str] | None) -> list[str]:
    """Configuration names matching any of ``only`` (all when None); none matching is an error."""
    if not only:
        return list(CONFIGS)
    names = [n for n in CONFIGS if any(text.lower() in n.lower() for text in only)]
    if not names:
        raise SystemExit(f"--only {only} matches no configuration; names: {list(CONFIGS)}")
    return names


if __name__ == "__main__":
    main()
