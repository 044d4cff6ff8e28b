"""Load benchmark of the HTTP service: requests/s and latency percentiles.

Starts ``python -m train.cli.serve`` for a run on a free local port (or targets ``--url``),
then ``--concurrency`` client threads, each with its own keep-alive connection, send
``POST /recommend`` for random known users (``--kind user``) or random ad-hoc histories
taken from the run's data (``--kind history``, sequence models) until ``--requests``
have completed. A short warm-up is excluded from the numbers.

    python scripts/bench_serving.py --run outputs/runs/DATE_TIME [--concurrency 8] [--requests 2000]

Prints one Markdown table row: model, kind, concurrency, requests, errors, req/s,
p50/p90/p99 latency (ms).
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from train.runs.artifacts import load_run_artifacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run: str, port: int, threads: int | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "train.cli.serve", f"run={Path(run).resolve()}", "host=127.0.0.1", f"port={port}"]
    if threads:
        args.append(f"threads={threads}")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.TransportError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"no answer from {url}/health within {timeout:.0f} s") from None
            time.sleep(0.25)


def make_payloads(run: str, kind: str, k: int, count: int, seed: int) -> list[dict]:
    """Request bodies drawn from the run's own users and histories (raw ids)."""
    art = load_run_artifacts(run)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, art.data.num_users, count)
    if kind == "user":
        return [{"user": u, "k": k} for u in art.data.user_ids[users].tolist()]
    frame = art.data.interactions
    starts = np.searchsorted(frame["user"].to_numpy(), users)
    ends = np.searchsorted(frame["user"].to_numpy(), users, side="right")
    items = art.data.item_ids[frame["item"].to_numpy()]
    return [{"history": items[a:b][-50:].tolist(), "k": k} for a, b in zip(starts, ends)]


def client(url: str, payloads: list[dict], latencies: list[float], errors: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for body in payloads:
            started = time.perf_counter()
            response = http.post("/recommend", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors.append(response.status_code)


def run_load(url: str, payloads: list[dict], concurrency: int) -> tuple[list[float], list[int], float]:
    shares = [payloads[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    errors: list[int] = []
    threads = [threading.Thread(target=client, args=(url, share, latencies, errors)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run directory (its users/histories make the requests)")
    parser.add_argument("--url", help="benchmark a running server instead of starting one")
    parser.add_argument("--kind", choices=("user", "history"), default="user")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="server torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    proc = None
    url = args.url
    if url is None:
        port = free_port()
        proc = start_server(args.run, port, args.threads)
        url = f"http://127.0.0.1:{port}"
    try:
        health = wait_healthy(url, proc)
        payloads = make_payloads(args.run, args.kind, args.k, args.warmup + args.requests, args.seed)
        run_load(url, payloads[: args.warmup], args.concurrency)
        latencies, errors, seconds = run_load(url, payloads[args.warmup :], args.concurrency)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    ms = np.percentile(np.asarray(latencies) * 1000, [50, 90, 99])
    print("| model | kind | concurrency | requests | errors | req/s | p50 ms | p90 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {health['model']} | {args.kind} | {args.concurrency} | {len(latencies)} | {len(errors)} | "
        f"{len(latencies) / seconds:.0f} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[2]:.1f} | "
        f"{statistics.fmean(latencies) * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
