"""Exact top-K and full-ranking evaluation at catalogue scale (millions of items).

A dot-product model (``user . item``, d=``--dim``, float32) over ``--items`` items,
ranked by the library's chunked path (``train.evaluation.chunked_ranking``, the one
the evaluator and serving use). Two measurements:

1. Serving: ``--requests`` single-user top-10 requests (100 seen items excluded each):
   p50/p95 latency of the exact chunked path, beside the bare ``[1, d] x [d, items]``
   product (the memory-bound floor: the table is read once per request), and of the
   same requests answered from the int8 index (``train.serving.quantized_index``:
   screening reads a quarter of the bytes, then exact rescoring), with its build time,
   size, candidates rescored per request, fallbacks to the exact path, and a check that
   both paths returned the same items and scores. ``--no-index`` skips the index.
2. Batch evaluation: ``--users`` users in batches of ``--batch-size``, each with a
   target and ``--seen`` masked items: pessimistic ranks and top-``--k`` lists (for
   coverage) fed to ``RankingMetrics``. Reported beside the matrix-multiply limit of
   the same machine in the same run: plain ``torch.mm`` of the same shapes (every
   user against every item in tiles written into a reused buffer; the faster of two
   tile widths), and the extra memory (peak RSS above the model) the ranking needs.

    python scripts/bench_topk_scale.py --items 1000000 --dim 64 --users 100000 --requests 50

Prints Markdown table rows. ``--skip-eval`` / ``--users 0`` measures serving only.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from recmodels.base import Context, Recommender
from train.evaluation import RankingMetrics
from train.evaluation.chunked_ranking import chunk_width, rank_items
from train.serving import recommend
from train.serving.quantized_index import index_for


class MatrixFactorisation(Recommender):
    """score(u, i) = <p_u, q_i>: ranked through the generic dot-product range path."""

    inputs: ClassVar[frozenset[str]] = frozenset({"user"})

    def __init__(self, num_users: int, num_items: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.num_items = num_items
        g = torch.Generator().manual_seed(seed)
        self.users = nn.Parameter(torch.randn(num_users, dim, generator=g) * 0.1, requires_grad=False)
        self.items = nn.Parameter(torch.empty(num_items, dim), requires_grad=False)
        for lo in range(0, num_items, 1 << 20):  # in slices: no second full-size temporary
            hi = min(lo + (1 << 20), num_items)
            self.items[lo:hi] = torch.randn(hi - lo, dim, generator=g) * 0.1

    def user_representation(self, context: Context) -> Tensor:
        return self.users[context["user"]]

    def item_table(self) -> Tensor:
        return self.items

    def score_all(self, context: Context) -> Tensor:
        return self.user_representation(context) @ self.items.T


def rss_mb(field: str = "VmRSS") -> float:
    """VmRSS / VmHWM of this process in MB (Linux), 0 elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def reset_peak_rss() -> bool:
    """Restart the peak-RSS counter, so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def seen_pairs(rows: int, num_items: int, per_row: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``per_row`` random (row, item) pairs per row (duplicates are harmless)."""
    items = torch.randint(0, num_items, (rows * per_row,), generator=gen)
    return torch.arange(rows).repeat_interleave(per_row), items


def bench_serving(
    model: MatrixFactorisation, requests: int, k: int, chunk_items: int | None, with_index: bool
) -> dict[str, float]:
    """Latencies (ms) of the same requests on the exact path, the bare product and, with
    ``with_index``, the int8 index, interleaved so that all three see the same machine."""
    gen = torch.Generator().manual_seed(1)
    table = model.items
    times: dict[str, list[float]] = {"exact": [], "floor": [], "index": []}
    differ = 0
    for r in range(requests + 2):  # two warm-up requests
        user = torch.randint(0, len(model.users), (1,), generator=gen)
        exclude = seen_pairs(1, model.num_items, 100, gen)
        t0 = time.perf_counter()
        exact = recommend(model, {"user": user}, k, exclude, chunk_items=chunk_items, index="exact")
        t1 = time.perf_counter()
        model.users[user] @ table.T
        t2 = time.perf_counter()
        if with_index:
            screened = recommend(model, {"user": user}, k, exclude, chunk_items=chunk_items, index="quantized")
            t3 = time.perf_counter()
            differ += not (torch.equal(exact[0], screened[0]) and torch.equal(exact[1], screened[1]))
        if r >= 2:
            times["exact"].append((t1 - t0) * 1e3)
            times["floor"].append((t2 - t1) * 1e3)
            if with_index:
                times["index"].append((t3 - t2) * 1e3)
    result = {"differ": differ}
    for name, values in times.items():
        if values:
            result[f"{name}_p50"], result[f"{name}_p95"] = statistics.median(values), percentile_95(values)
    return result


def percentile_95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def build_index(model: MatrixFactorisation) -> tuple[float, float]:
    """(seconds, MB) to build the model's int8 index (the first request would pay it)."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        index = index_for(model)
    seconds = time.perf_counter() - t0
    if index is None:
        raise SystemExit("no int8 index on this platform (torch._weight_int8pack_mm is missing); use --no-index")
    return seconds, index.nbytes / 1e6


def bench_evaluation(
    model: MatrixFactorisation, users: int, batch: int, k: int, seen: int, chunk_items: int | None
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(2)
    metric = RankingMetrics((k,), num_items=model.num_items, metrics=("hr", "ndcg", "mrr", "coverage"))
    base = rss_mb()
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, users, batch):
            rows = min(batch, users - lo)
            context = {"user": torch.arange(lo, lo + rows) % len(model.users)}
            targets = torch.randint(0, model.num_items, (rows,), generator=gen)
            ranking = rank_items(
                model.item_scores(context), model.num_items, rows, k,
                seen_pairs(rows, model.num_items, seen, gen), targets, chunk_items,
            )
            metric.update(ranking.ranks, ranking.items)
        metric.compute()
    seconds = time.perf_counter() - t0
    extra = (rss_mb("VmHWM") if reset else float("nan")) - base
    chunk = chunk_width(model.num_items, batch, chunk_items)
    return {"seconds": seconds, "extra_mb": extra, "mm_seconds": matmul_limit(model, users, batch, chunk)}


def matmul_limit(model: MatrixFactorisation, users: int, batch: int, chunk: int) -> float:
    """Seconds of plain ``torch.mm`` for every (user, item) score: [batch, tile] products
    written into one reused buffer, the faster of the ranking's chunk width and 64k."""
    return min(_timed_products(model, users, batch, tile) for tile in sorted({chunk, min(model.num_items, 1 << 16)}))


def _timed_products(model: MatrixFactorisation, users: int, batch: int, width: int) -> float:
    out = torch.empty(batch, width)
    table = model.items
    t0 = time.perf_counter()
    for lo in range(0, users, batch):
        rows = min(batch, users - lo)
        vectors = model.users[torch.arange(lo, lo + rows) % len(model.users)]
        for start in range(0, model.num_items, width):
            stop = min(start + width, model.num_items)
            torch.mm(vectors, table[start:stop].T, out=out[:rows, : stop - start])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=10_000, help="users of the batch evaluation (0: skip)")
    parser.add_argument("--requests", type=int, default=50, help="single-user serving requests")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seen", type=int, default=100, help="masked items per evaluated user")
    parser.add_argument("--chunk-items", type=int, default=None, help="items per step (default: automatic)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--no-index", action="store_true", help="serving: skip the int8 index")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    before = rss_mb()
    model = MatrixFactorisation(max(args.users, 1000), args.items, args.dim).eval()
    table_mb = rss_mb() - before
    threads = torch.get_num_threads()
    print(f"# model: {args.items:,} items x d={args.dim} float32 ({table_mb:.0f} MB resident), "
          f"{threads} threads", file=sys.stderr)

    if args.requests:
        with_index = not args.no_index
        build_s, index_mb = build_index(model) if with_index else (float("nan"), float("nan"))
        reset = reset_peak_rss()
        serving = bench_serving(model, args.requests, args.k, args.chunk_items, with_index)
        peak = rss_mb("VmHWM") if reset else float("nan")
        chunk = chunk_width(args.items, 1, args.chunk_items)
        print("| items | d | threads | chunk | top-k p50 ms | p95 ms | bare product p50 ms | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {args.items:,} | {args.dim} | {threads} | {chunk:,} | {serving['exact_p50']:.1f} | "
              f"{serving['exact_p95']:.1f} | {serving['floor_p50']:.1f} | {peak:.0f} |")
        if with_index:
            index = index_for(model)
            print()
            print("| items | d | threads | int8 index p50 ms | p95 ms | exact p50 ms | build s | index MB "
                  "| candidates / request | fallbacks | results differing |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            print(f"| {args.items:,} | {args.dim} | {threads} | {serving['index_p50']:.1f} | "
                  f"{serving['index_p95']:.1f} | {serving['exact_p50']:.1f} | {build_s:.1f} | {index_mb:.0f} | "
                  f"{index.candidates / max(index.searches, 1):.0f} | {index.fallbacks} of {index.searches} | "
                  f"{serving['differ']} |")

    if args.users and not args.skip_eval:
        ev = bench_evaluation(model, args.users, args.batch_size, args.k, args.seen, args.chunk_items)
        flops = 2.0 * args.users * args.items * args.dim
        chunk = chunk_width(args.items, args.batch_size, args.chunk_items)
        print()
        print("| users x items | d | threads | batch | chunk | ranking s | mm limit s | ratio | mm GFLOP/s "
              "| extra memory MB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {args.users:,} x {args.items:,} | {args.dim} | {threads} | {args.batch_size} | {chunk:,} | "
              f"{ev['seconds']:.2f} | {ev['mm_seconds']:.2f} | {ev['seconds'] / ev['mm_seconds']:.2f}x | "
              f"{flops / ev['mm_seconds'] / 1e9:.0f} | {ev['extra_mb']:.0f} |")


if __name__ == "__main__":
    main()
