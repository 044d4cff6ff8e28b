"""Time SASRec/BERT4Rec training steps on synthetic ML-1M-shaped data (CPU or GPU).

Histories mimic MovieLens-1M (6040 users, 3706 items, long-tailed lengths, >= 20 per
user), so per-step and per-epoch times approximate the real benchmark without the data.

    python scripts/bench_sequence_step.py --losses ce bce --precisions fp32 bf16
    python scripts/bench_sequence_step.py --epoch --losses ce bce   # full synthetic epoch
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from data_modules.interactions import Histories
from data_modules.sequence_windows import SequenceTrainingSet, causal_collate, masked_collate
from recmodels.bert4rec import BERT4Rec
from recmodels.losses import make_loss, sequence_loss
from recmodels.sasrec import SASRec


def synthetic_histories(num_users: int, num_items: int, seed: int = 0) -> Histories:
    """Long-tailed lengths (median ~96, mean ~165 like ML-1M) and Zipf-like items."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=4.6, sigma=0.95, size=num_users), 20, 2300).astype(np.int64)
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    items = rng.choice(num_items, size=int(indptr[-1]), p=popularity / popularity.sum())
    return Histories(indptr=indptr, items=items.astype(np.int64))


def build(args: argparse.Namespace, model_name: str, num_items: int) -> torch.nn.Module:
    if model_name == "sasrec":
        return SASRec(num_items, hidden=args.hidden, num_blocks=args.blocks, num_heads=args.heads,
                      max_len=args.max_len, dropout=args.dropout)
    return BERT4Rec(num_items, hidden=args.hidden, num_blocks=args.blocks, num_heads=args.heads,
                    max_len=args.max_len, dropout=args.dropout)


def run(args: argparse.Namespace, model_name: str, loss_name: str, precision: str) -> None:
    device = torch.device(args.device)
    torch.manual_seed(0)
    data = SequenceTrainingSet(synthetic_histories(args.users, args.items), args.max_len)
    collate = causal_collate if model_name == "sasrec" else masked_collate(0.2)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, collate_fn=collate)
    model = build(args, model_name, args.items).to(device).train()
    loss_kw = {"num_negatives": args.negatives} if loss_name in ("gbce", "sampled_softmax") else {}
    loss = make_loss(loss_name, args.items, **loss_kw).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(batch: dict) -> float:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            value = sequence_loss(model, batch, loss)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        return value.item()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = iter(loader)
    first = next(batches)
    for _ in range(3):  # warm-up
        step(first)
    sync()
    if args.epoch:
        wall, cpu = time.perf_counter(), time.process_time()
        n = 1 + sum(1 for batch in batches if step(batch) is not None)
        step(first)
        sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        label = f"epoch ({n} batches)"
        timing = f"{wall:7.2f} s wall  {cpu:7.2f} s cpu"
    else:
        walls, cpus = [], []
        for _ in range(args.steps):
            wall, cpu = time.perf_counter(), time.process_time()
            step(first)
            sync()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        label = f"step ({args.steps}x, {int((first['targets'] >= 0).sum())} targets)"
        timing = (f"min {min(walls) * 1000:7.1f} ms  median {sorted(walls)[len(walls) // 2] * 1000:7.1f} ms"
                  f"  cpu {min(cpus) * 1000:7.1f} ms")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{model_name:8s} {loss_name:16s} {precision:5s} {label}: {timing}   peak RSS {rss_mb:.0f} MB",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["sasrec"], choices=["sasrec", "bert4rec"])
    parser.add_argument("--losses", nargs="+", default=["ce", "bce"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--epoch", action="store_true", help="time a full epoch instead of one batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3706)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    for model_name in args.models:
        for loss_name in args.losses:
            for precision in args.precisions:
                run(args, model_name, loss_name, precision)


if __name__ == "__main__":
    main()
