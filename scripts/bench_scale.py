"""How the data path scales: time and peak memory of each phase against the data size.

For each size (interactions, items, users) the benchmark generates a catalogue-shaped
set (data_modules/scale_generator.py) and runs each phase in a fresh subprocess, so
each phase's peak RSS is its own:

- ``generate``: write the set (``--format sequence`` or ``parquet``);
- ``load_cold``: the real source reads, preprocesses and caches it (empty cache);
- ``load_cached``: the same call again, served from the memory-mapped cache;
- ``batches``: from the cache, build the sequence data module and take ``--steps``
  training batches;
- ``train_dense`` / ``train_sparse``: ``--train-steps`` SASRec training steps (d=64,
  sampled softmax with ``--negatives`` shared negatives, ``--batch-size`` x
  ``--max-len``) on those batches, with dense Adam, or with sparse item tables and
  ``RowwiseAdam`` (train/training/optimizers.py); seconds per step;
- ``evaluate``: full-ranking evaluation (the Evaluator, seen items masked, chunked over
  items) of ``--eval-users`` test users with that (untrained) model, and the time
  projected to every test user;
- ``topk_all``: top-10 unseen items of ``--eval-users`` users through serving's
  ``recommend``, projected to every user;
- ``serve_one``: ``--requests`` single-user top-10 requests: p50/p95 milliseconds.

    python scripts/bench_scale.py --interactions 1e6 1e7 3e7 1e8 --items 1e4 1e5 1e6 1e7
    python scripts/bench_scale.py --interactions 1e5 1e6 --items 1e4 --phases load_cold load_cached

Writes ``results.json``, ``results.md`` (a table) and log-log plots ``seconds.png`` and
``peak_rss.png`` to ``--out`` (default docs/results/scale/). Generated files go to
``--work`` (default: a folder in the system temp dir) and are reused when present.
A further phase is one function: register it in :data:`PHASES`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from data_modules.interactions import TEST, TRAIN, VAL

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    interactions: int
    items: int
    users: int
    format: str
    seed: int = 0

    @property
    def label(self) -> str:
        return f"n{self.interactions}-i{self.items}-u{self.users}-{self.format}"


@dataclass(frozen=True)
class Workspace:
    """Where one size's files live."""

    folder: Path
    size: Size

    @property
    def data_file(self) -> Path:
        return self.folder / ("data.parquet" if self.size.format == "parquet" else "data.txt")

    @property
    def cache_dir(self) -> Path:
        return self.folder / "cache"


# --- phases: each runs in its own process and returns extra figures -------------------


def phase_generate(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from data_modules.scale_generator import preset, write

    if work.data_file.exists():
        return {"reused": True, "bytes": work.data_file.stat().st_size}
    spec = preset(
        "catalogue", num_interactions=work.size.interactions, num_items=work.size.items,
        num_users=work.size.users, seed=work.size.seed,
    )
    summary = write(spec, work.data_file, work.size.format)
    return {"bytes": summary["bytes"], "repeated_pairs": summary["repeated_pairs"]}


def _load(work: Workspace) -> Any:
    """The real source, as a run's ``data`` config would call it."""
    from data_modules.sources import sequence_file, tabular

    source = tabular if work.size.format == "parquet" else sequence_file
    return source(work.data_file, cache_dir=work.cache_dir, progress=False)


def phase_load_cold(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    shutil.rmtree(work.cache_dir, ignore_errors=True)
    data = _load(work)
    entry_bytes = sum(p.stat().st_size for p in work.cache_dir.rglob("*") if p.is_file())
    return {"rows_kept": data.report["num_interactions"], "users_kept": data.num_users,
            "items_kept": data.num_items, "cache_bytes": entry_bytes}


def phase_load_cached(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    data = _load(work)
    return {"rows_kept": len(data.interactions)}


def phase_batches(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from data_modules.sequence_module import SequenceDataModule

    data = _load(work)
    start = time.perf_counter()
    module = SequenceDataModule(data, None, batch_size=args.batch_size, max_len=args.max_len)
    built = time.perf_counter() - start
    steps = 0
    for _ in module.train_dataloader():
        steps += 1
        if steps >= args.steps:
            break
    return {"build_seconds": round(built, 3), "steps": steps, "examples": len(module.train_set)}


def _model(num_items: int, args: argparse.Namespace, sparse: bool = False) -> Any:
    import torch

    from recmodels.sasrec import SASRec

    torch.manual_seed(args.seed)
    return SASRec(num_items, hidden=args.hidden, num_blocks=2, num_heads=1, max_len=args.max_len,
                  dropout=0.2, sparse_embeddings=sparse)


def _train_steps(work: Workspace, args: argparse.Namespace, sparse: bool) -> dict[str, Any]:
    """Seconds per step after two warm-up steps: batches, forward, loss, backward, update."""
    import torch

    from data_modules.sequence_module import SequenceDataModule
    from recmodels.losses import SampledSoftmax, sequence_loss
    from train.training.optimizers import RowwiseAdam

    data = _load(work)
    model = _model(data.num_items, args, sparse).train()
    loss = SampledSoftmax(data.num_items, num_negatives=args.negatives)
    optimizer = (RowwiseAdam if sparse else torch.optim.Adam)(model.parameters(), lr=1e-3)
    batches = _endless(SequenceDataModule(data, None, batch_size=args.batch_size, max_len=args.max_len))
    warmup, timed = 2, args.train_steps
    for step in range(warmup + timed):
        if step == warmup:
            start = time.perf_counter()
        batch = next(batches)
        loss.generator = torch.Generator().manual_seed(step)
        optimizer.zero_grad(set_to_none=True)
        sequence_loss(model, batch, loss).backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / timed
    return {"s_per_step": round(seconds, 4), "steps": timed, "items_in_model": data.num_items}


def _endless(module: Any) -> Any:
    """Training batches epoch after epoch (small sets have fewer batches than the steps)."""
    while True:
        yield from module.train_dataloader()


def phase_train_dense(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return _train_steps(work, args, sparse=False)


def phase_train_sparse(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return _train_steps(work, args, sparse=True)


def phase_evaluate(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """The Evaluator's full ranking over every item for the first ``--eval-users`` test rows."""
    import numpy as np

    from train.evaluation.evaluator import Evaluator, evaluate

    data = _load(work)
    model = _model(data.num_items, args)
    evaluator = Evaluator(protocol="full", ks=(10,), batch_size=args.eval_batch, max_history=args.max_len)
    total = len(data.targets(2)[0])
    users = min(args.eval_users, total)
    start = time.perf_counter()
    metrics = evaluate(model, data, "test", evaluator, rows=np.arange(users))
    seconds = time.perf_counter() - start
    return {"eval_users": users, "s_per_user": round(seconds / users, 5),
            "projected_all_users_s": round(seconds / users * total, 1), "ndcg@10": round(metrics["ndcg@10"], 5)}


def _contexts(known: Any, users: Any, max_len: int) -> tuple[dict, Any]:
    """The serving context (padded histories) and the seen items of ``users``."""
    import torch

    from train.serving.topk import known_pairs

    return {"history": torch.from_numpy(known.padded(users, max_len))}, known_pairs(known, users)


def phase_topk_all(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Serving's ``recommend`` (top-10 unseen items) for ``--eval-users`` users in batches."""
    import numpy as np

    from train.serving.topk import recommend

    data = _load(work)
    model = _model(data.num_items, args).eval()
    known = data.histories(TRAIN, VAL, TEST)  # built once, as a loaded run's RunContext does
    users = np.arange(min(args.eval_users, data.num_users))
    start = time.perf_counter()
    for lo in range(0, len(users), args.eval_batch):
        context, exclude = _contexts(known, users[lo : lo + args.eval_batch], args.max_len)
        recommend(model, context, 10, exclude)
    seconds = time.perf_counter() - start
    return {"eval_users": len(users), "s_per_user": round(seconds / len(users), 5),
            "projected_all_users_s": round(seconds / len(users) * data.num_users, 1)}


def phase_serve_one(work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Latency of single-user requests (history context, seen items removed), two warm-ups."""
    import statistics

    import numpy as np

    from train.serving.topk import recommend

    data = _load(work)
    model = _model(data.num_items, args).eval()
    known = data.histories(TRAIN, VAL, TEST)
    rng = np.random.default_rng(args.seed)
    latencies = []
    for request in range(args.requests + 2):
        context, exclude = _contexts(known, rng.integers(data.num_users, size=1), args.max_len)
        start = time.perf_counter()
        recommend(model, context, 10, exclude)
        if request >= 2:
            latencies.append((time.perf_counter() - start) * 1e3)
    cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {"p50_ms": round(statistics.median(latencies), 2), "p95_ms": round(cuts[18], 2), "requests": len(latencies)}


PHASES: dict[str, Callable[[Workspace, argparse.Namespace], dict[str, Any]]] = {
    "generate": phase_generate,
    "load_cold": phase_load_cold,
    "load_cached": phase_load_cached,
    "batches": phase_batches,
    "train_dense": phase_train_dense,
    "train_sparse": phase_train_sparse,
    "evaluate": phase_evaluate,
    "topk_all": phase_topk_all,
    "serve_one": phase_serve_one,
}
# Modules a phase imports before its clock starts (import time is not the phase's).
PHASE_MODULES = {
    "generate": ["data_modules.scale_generator"],
    "load_cold": ["data_modules.sources"],
    "load_cached": ["data_modules.sources"],
    "batches": ["data_modules.sources", "data_modules.sequence_module"],
    "train_dense": ["data_modules.sources", "data_modules.sequence_module", "recmodels.sasrec", "train.training.optimizers"],
    "train_sparse": ["data_modules.sources", "data_modules.sequence_module", "recmodels.sasrec", "train.training.optimizers"],
    "evaluate": ["data_modules.sources", "recmodels.sasrec", "train.evaluation.evaluator"],
    "topk_all": ["data_modules.sources", "recmodels.sasrec", "train.serving.topk"],
    "serve_one": ["data_modules.sources", "recmodels.sasrec", "train.serving.topk"],
}


# --- running ------------------------------------------------------------------------------


def run_phase_here(name: str, work: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in this process: seconds, peak RSS (MiB), the RSS after imports
    (``base_rss_mib``, the interpreter and libraries) and the phase's figures."""
    for module in PHASE_MODULES.get(name, []):
        importlib.import_module(module)
    base_mib = _current_rss_mib()
    start = time.perf_counter()
    extra = PHASES[name](work, args)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"phase": name, **asdict(work.size), "seconds": round(seconds, 3),
            "peak_rss_mib": round(peak_kib / 1024, 1), "base_rss_mib": base_mib, **extra}


def _current_rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def run_phase_in_subprocess(name: str, work: Workspace, argv: list[str]) -> dict[str, Any]:
    """One phase in a fresh interpreter (its own peak RSS), given the benchmark's arguments."""
    command = [sys.executable, __file__, *argv, "--_phase", name, "--_workspace", str(work.folder),
               "--_size", json.dumps(asdict(work.size))]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        return {"phase": name, **asdict(work.size), "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def sizes(args: argparse.Namespace) -> list[Size]:
    counts = args.interactions
    items = _broadcast(args.items, len(counts), "--items")
    users = _broadcast(args.users, len(counts), "--users") if args.users else [max(1, n // 100) for n in counts]
    return [Size(n, i, u, args.format, args.seed) for n, i, u in zip(counts, items, users)]


def _broadcast(values: list[int], length: int, flag: str) -> list[int]:
    if len(values) == 1:
        return values * length
    if len(values) != length:
        raise SystemExit(f"{flag} takes one value or one per --interactions value ({length})")
    return values


def count(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole positive number")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interactions", type=count, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--items", type=count, nargs="+", default=[10_000])
    p.add_argument("--users", type=count, nargs="+", help="default: interactions / 100")
    p.add_argument("--format", choices=("sequence", "parquet"), default="sequence")
    p.add_argument("--phases", nargs="+", choices=sorted(PHASES), default=list(PHASES))
    p.add_argument("--steps", type=int, default=50, help="training batches in the batches phase")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--train-steps", type=int, default=10, help="timed steps of the train_* phases")
    p.add_argument("--negatives", type=int, default=1024, help="shared sampled-softmax negatives")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--eval-users", type=int, default=2000, help="users of the evaluate/topk_all phases")
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--requests", type=int, default=30, help="single-user requests of serve_one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "scale")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "recflow-scale")
    p.add_argument("--_phase", help=argparse.SUPPRESS)
    p.add_argument("--_workspace", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_size", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def write_outputs(results: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown_table(results))
    plot(results, out)


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| interactions | items | users | format | phase | seconds | peak RSS (MiB) | RSS after imports | notes |",
             "|---:|---:|---:|---|---|---:|---:|---:|---|"]
    keys = {"phase", "interactions", "items", "users", "format", "seed", "seconds", "peak_rss_mib", "base_rss_mib"}
    for r in results:
        notes = ", ".join(f"{k}={v}" for k, v in r.items() if k not in keys)
        lines.append(f"| {r['interactions']:,} | {r['items']:,} | {r['users']:,} | {r['format']} | {r['phase']} "
                     f"| {r.get('seconds', '-')} | {r.get('peak_rss_mib', '-')} | {r.get('base_rss_mib', '-')} | {notes} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], out: Path) -> None:
    """Log-log time and peak RSS against interactions, one line per phase."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'recflow[plots]'): no plots written")
        return
    plot_unit_costs(results, out, plt)
    for key, label, name in (("seconds", "seconds", "seconds.png"), ("peak_rss_mib", "peak RSS (MiB)", "peak_rss.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for phase in dict.fromkeys(r["phase"] for r in results):
            points = sorted((r["interactions"], r[key]) for r in results if r["phase"] == phase and key in r)
            if points:
                ax.plot(*zip(*points), marker="o", label=phase)
        ax.set(xscale="log", yscale="log", xlabel="interactions", ylabel=label)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)


UNIT_COSTS = (  # (phase, figure, label): what one unit of work costs, against the catalogue
    ("train_dense", "s_per_step", "training step, dense Adam (s)"),
    ("train_sparse", "s_per_step", "training step, sparse + RowwiseAdam (s)"),
    ("evaluate", "s_per_user", "full-ranking evaluation, per user (s)"),
    ("topk_all", "s_per_user", "top-10 inference, per user (s)"),
    ("serve_one", "p50_ms", "one serving request, p50 (ms / 1000)"),
)


def plot_unit_costs(results: list[dict[str, Any]], out: Path, plt: Any) -> None:
    """Log-log cost of one step / user / request against the items in the catalogue."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for phase, key, label in UNIT_COSTS:
        scale = 1e-3 if key.endswith("_ms") else 1.0
        points = sorted((r["items"], r[key] * scale) for r in results if r["phase"] == phase and key in r)
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="items in the catalogue", ylabel="seconds")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "unit_costs.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args._phase:  # inside a phase's own process
        work = Workspace(args._workspace, Size(**json.loads(args._size)))
        print(json.dumps(run_phase_here(args._phase, work, args)))
        return []
    results = []
    for size in sizes(args):
        work = Workspace(args.work / size.label, size)
        work.folder.mkdir(parents=True, exist_ok=True)
        for name in ["generate", *[p for p in args.phases if p != "generate"]]:
            result = run_phase_in_subprocess(name, work, argv)
            print(json.dumps(result))
            results.append(result)
    write_outputs(results, args.out)
    return results


if __name__ == "__main__":
    main()
