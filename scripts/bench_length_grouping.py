"""How much padding do long histories cost, with and without ``group_by_length``?

Builds the training windows as ``python -m train`` does (one window of ``max_len + 1``
items per user), draws one epoch of batches with the plain sampler and with batches
grouped by length, and counts what padded batches cost against the real items: tokens
(rows x width, what embeddings, feed-forward layers and the loss pay) and attention
cells (rows x width^2). Counts, not timings, so it runs anywhere in seconds.

    python scripts/bench_length_grouping.py --data PATH/ml-1m.txt --max-len 1024 --batch-size 128 --group 50

A training run turns it on with ``model.datamodule.group_by_length=50``; time an epoch
both ways with ``scripts/bench_train_speed.py ... -- model.net.max_len=1024
model.datamodule.group_by_length=50`` (``model.net.max_groups=1`` runs the padded
batch on CPU too, as accelerators do).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data_modules.batching import EpochBatchSampler
from data_modules.interactions import TRAIN
from data_modules.sequence_windows import SequenceTrainingSet
from data_modules.sources import sequence_file


def epoch_costs(lengths: np.ndarray, batch_size: int, group: int, seed: int = 0) -> tuple[int, int]:
    """(padded tokens, padded attention cells) of one epoch's batches."""
    sampler = EpochBatchSampler(len(lengths), batch_size, seed=seed, lengths=lengths if group else None,
                                group_batches=group)
    widths = [(len(key.indices), int(lengths[key.indices].max())) for key in sampler]
    return sum(r * w for r, w in widths), sum(r * w * w for r, w in widths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="sequence file, e.g. ml-1m.txt")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--group", type=int, default=50, help="batches sorted by length together")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file")
    data = sequence_file(path=str(args.data), cache=False)
    windows = SequenceTrainingSet(data.histories(TRAIN), args.max_len)
    lengths = windows.lengths - 1  # inputs of a causal window: all but its last item
    real_tokens, real_cells = int(lengths.sum()), int((lengths.astype(np.int64) ** 2).sum())
    print(f"{data.name}: {len(lengths):,} windows, max_len {args.max_len}, batch {args.batch_size}; "
          f"history length median {int(np.median(lengths))}, max {int(lengths.max())}")
    print("| batches | tokens | x real | attention cells | x real |\n|---|---|---|---|---|")
    print(f"| real items only | {real_tokens:,} | 1.00 | {real_cells:,} | 1.00 |")
    for label, group in (("plain (shuffled)", 0), (f"group_by_length={args.group}", args.group)):
        tokens, cells = epoch_costs(lengths, args.batch_size, group)
        print(f"| {label} | {tokens:,} | {tokens / real_tokens:.2f} | {cells:,} | {cells / real_cells:.2f} |")


if __name__ == "__main__":
    main()
