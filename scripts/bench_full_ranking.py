"""Benchmark the full-ranking evaluation pass at MovieLens-1M size.

A matrix-factorisation scorer (user . item, d=64) over every user and the whole
catalogue, known items masked, HR/NDCG/MRR/Precision/F1/coverage at 5/10/20.
Synthetic data by default (6040 users x 3706 items, ~165 items per user); ``--data``
evaluates real-size histories from an NCF ``*.rating`` file (user, item, rating,
timestamp; tab separated) or a two-column ``user item`` file in chronological order.

    python scripts/bench_full_ranking.py [--threads 2] [--batch-size 1024] [--data PATH]

Prints one Markdown table row; target: evaluation pass under 2 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from recmodels.base import Recommender
from train.evaluation import Evaluator, RankingMetrics


class DotProduct(Recommender):
    """Matrix factorisation scorer: score(u, i) = <p_u, q_i>."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__()
        self.num_items = num_items
        self.users = nn.Embedding(num_users, dim)
        self.items = nn.Embedding(num_items, dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def score_all(self, context: dict[str, Tensor]) -> Tensor:
        return self.users(context["user"]) @ self.items.weight.T


def leave_one_out(users: np.ndarray, items: np.ndarray, name: str) -> InteractionData:
    """Dense ids, rows already chronological per user; last item test, second last val."""
    user_codes, user_ids = pd.factorize(users)
    item_codes, item_ids = pd.factorize(items)
    order = np.argsort(user_codes, kind="stable")
    u, i = user_codes[order], item_codes[order]
    counts = np.bincount(u)
    pos_from_end = np.repeat(np.cumsum(counts), counts) - np.arange(len(u)) - 1
    split = np.where(pos_from_end == 0, TEST, np.where(pos_from_end == 1, VAL, TRAIN))
    frame = pd.DataFrame({"user": u, "item": i, "split": split})
    return InteractionData(frame, np.asarray(user_ids), np.asarray(item_ids), name=name)


def synthetic(num_users: int, num_items: int, mean_len: int, seed: int) -> InteractionData:
    """Distinct items per user drawn with a Zipf-like popularity skew."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.geometric(1.0 / mean_len, num_users), 20, num_items // 2)
    pop = 1.0 / np.arange(1, num_items + 1) ** 0.8
    # Distinct weighted items per user via Gumbel top-k in blocks (vectorised).
    users, items = [], []
    logp = np.log(pop / pop.sum())
    for lo in range(0, num_users, 512):
        block = np.arange(lo, min(lo + 512, num_users))
        keys = logp[None, :] + rng.gumbel(size=(len(block), num_items))
        order = np.argsort(-keys, axis=1)
        take = np.arange(num_items)[None, :] < lengths[block, None]
        rows, cols = np.nonzero(take)
        users.append(block[rows])
        items.append(order[rows, cols])
    return leave_one_out(np.concatenate(users), np.concatenate(items), "synthetic")


def load(path: str) -> InteractionData:
    """NCF ``.rating`` (user, item, rating, timestamp) or ``user item`` pairs in order."""
    frame = pd.read_csv(path, sep=r"\s+", header=None, engine="c")
    if frame.shape[1] >= 4:
        frame = frame.sort_values([0, 3], kind="stable")
    elif frame.shape[1] != 2:
        raise SystemExit(f"{path}: expected 2 columns (user item) or 4+ (user item rating ts)")
    return leave_one_out(frame[0].to_numpy(), frame[1].to_numpy(), Path(path).name)


def one_pass(
    evaluator: Evaluator, model: Recommender, data: InteractionData, device: torch.device
) -> tuple[float, float, dict]:
    """(build seconds, pass seconds, metrics) of one full evaluation of the test split."""
    t0 = time.perf_counter()
    loader = evaluator.dataloader(data, TEST)
    metric: RankingMetrics = evaluator.new_metrics(data.num_items).to(device)
    t1 = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            evaluator.update(metric, model, batch)
        result = {k: float(v) for k, v in metric.compute().items()}  # float() syncs
    return t1 - t0, time.perf_counter() - t1, result


def _rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux), 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS counter so data generation does not hide the evaluation's peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="NCF .rating or 'user item' file")
    parser.add_argument("--users", type=int, default=6040)
    parser.add_argument("--items", type=int, default=3706)
    parser.add_argument("--mean-len", type=int, default=165)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load(args.data) if args.data else synthetic(args.users, args.items, args.mean_len, 0)
    device = torch.device(args.device)
    model = DotProduct(data.num_users, data.num_items, args.dim).eval().to(device)
    evaluator = Evaluator("full", ks=(5, 10, 20), batch_size=args.batch_size)
    base_mb = _rss_mb("VmRSS")
    reset = _reset_peak_rss()
    runs = [one_pass(evaluator, model, data, device) for _ in range(args.repeat)]
    build = statistics.median(r[0] for r in runs)
    passes = [r[1] for r in runs]
    pass_s = statistics.median(passes)
    rows = len(data.targets(TEST)[0])
    peak_mb = _rss_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = runs[-1][2]
    mean_hist = len(data.rows(TRAIN, VAL)) / data.num_users
    print(f"# {data.summary()}; mean context history {mean_hist:.1f}", file=sys.stderr)
    print(f"# RSS before evaluation {base_mb:.0f} MB; peak during evaluation {peak_mb:.0f} MB"
          f"{'' if reset else ' (whole process: peak reset unavailable)'}", file=sys.stderr)
    print(f"# metrics: hr@10={result['hr@10']:.4f} ndcg@10={result['ndcg@10']:.4f} "
          f"coverage@10={result['coverage@10']:.4f}", file=sys.stderr)
    print("| data | users x items | device | threads | batch | pass s (median, first) "
          "| build+pass s | users/s | peak RSS MB (eval) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {data.name} | {rows} x {data.num_items} | {device.type} | {args.threads} | {args.batch_size} | "
          f"{pass_s:.3f} ({passes[0]:.3f}) | {build + pass_s:.3f} | {rows / pass_s:,.0f} | {peak_mb:.0f} |")


if __name__ == "__main__":
    main()
