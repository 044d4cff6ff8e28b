"""Seconds per SASRec training step and peak memory as the catalogue grows: dense Adam
versus sparse item tables with row-wise Adam (``RowwiseAdam``).

Sampled softmax (uniform proposal, shared negatives), random histories over the whole
catalogue, no data files: what is timed is the step (forward, loss, backward, optimiser).
Each (catalogue, mode) runs in its own process so peak RSS belongs to it alone.

    python scripts/bench_sparse_step.py --items 10000 1000000 --steps 10 --out sparse.json
    python scripts/bench_sparse_step.py --items 10000 10000000 --device cuda --steps 60

Ratios are within one run: s/step at each size over s/step at the smallest size (per
mode), and dense over sparse at each size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

from recmodels.losses import SampledSoftmax, sequence_loss
from recmodels.sasrec import SASRec
from train.training.optimizers import RowwiseAdam

MODES = ("dense", "sparse")


def synthetic_batch(num_items: int, batch: int, max_len: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Full-length random histories; each position's target is the next item."""
    items = torch.randint(num_items, (batch, max_len + 1), generator=generator)
    return {"history": items[:, :-1], "targets": items[:, 1:]}


def measure(args: argparse.Namespace, num_items: int, mode: str) -> dict[str, float]:
    """One (catalogue, mode): mean s/step over ``args.steps`` after ``args.warmup`` steps."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sparse = mode == "sparse"
    model = SASRec(num_items, hidden=args.hidden, num_blocks=2, num_heads=1, max_len=args.max_len,
                   dropout=0.2, sparse_embeddings=sparse).to(device).train()
    loss = SampledSoftmax(num_items, num_negatives=args.negatives).to(device)
    optimizer = (RowwiseAdam if sparse else torch.optim.Adam)(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [synthetic_batch(num_items, args.batch, args.max_len, generator) for _ in range(4)]

    def step(i: int) -> None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[i % len(batches)].items()}
        loss.generator = torch.Generator(device=device).manual_seed(i)
        optimizer.zero_grad(set_to_none=True)
        sequence_loss(model, batch, loss).backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    result = {"items": num_items, "mode": mode, "s_per_step": seconds,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def child_command(args: argparse.Namespace, num_items: int, mode: str) -> list[str]:
    return [sys.executable, __file__, "--one", str(num_items), mode, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--batch", str(args.batch), "--max-len", str(args.max_len),
            "--hidden", str(args.hidden), "--negatives", str(args.negatives), "--device", args.device,
            "--threads", str(args.threads)]


def with_ratios(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """s/step relative to the smallest catalogue of the same mode, and dense / sparse."""
    smallest = min(row["items"] for row in rows)
    base = {row["mode"]: row["s_per_step"] for row in rows if row["items"] == smallest}
    by_key = {(row["items"], row["mode"]): row for row in rows}
    for row in rows:
        row["vs_smallest"] = row["s_per_step"] / base[row["mode"]]
        dense, sparse = by_key.get((row["items"], "dense")), by_key.get((row["items"], "sparse"))
        if dense and sparse:
            row["dense_over_sparse"] = dense["s_per_step"] / sparse["s_per_step"]
    return rows


def table(rows: list[dict[str, float]]) -> str:
    lines = [f"{'items':>12} {'mode':>7} {'s/step':>9} {'x smallest':>11} {'dense/sparse':>13} {'peak RSS GB':>12}"]
    for row in rows:
        lines.append(f"{row['items']:>12,} {row['mode']:>7} {row['s_per_step']:>9.4f} {row['vs_smallest']:>11.2f} "
                     f"{row.get('dense_over_sparse', float('nan')):>13.2f} {row['peak_rss_gb']:>12.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--one", nargs=2, metavar=("ITEMS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one measurement, as JSON on stdout
        print(json.dumps(measure(args, int(args.one[0]), args.one[1])))
        return
    rows = []
    for num_items in args.items:
        for mode in args.modes:
            done = subprocess.run(child_command(args, num_items, mode), capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"measured {num_items:,} items, {mode}: {rows[-1]['s_per_step']:.4f} s/step", file=sys.stderr)
    rows = with_ratios(rows)
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k not in ("out", "one")},
                                        "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
