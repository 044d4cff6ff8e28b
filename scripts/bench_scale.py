"""How the data path scales: time and peak memory of each phase against the data size.

For each size (interactions, items, users) the benchmark generates a catalogue-shaped
set (data_modules/scale_generator.py) and runs each phase in a fresh subprocess, so
each phase's peak RSS is its own:

- ``generate``: write the set (``--format sequence`` or ``parquet``);
- ``load_cold``: the real source reads, preprocesses and caches it (empty cache);
- ``load_cached``: the same call again, served from the memory-mapped cache;
- ``batches``: from the cache, build the sequence data module and take ``--steps``
  training batches.

    python scripts/bench_scale.py --interactions 1e6 1e7 3e7 1e8 --items 1e4 1e5 1e6 1e7
    python scripts/bench_scale.py --interactions 1e5 1e6 --items 1e4 --phases load_cold load_cached

Writes ``results.json``, ``results.md`` (a table) and log-log plots ``seconds.png`` and
``peak_rss.png`` to ``--out`` (default docs/results/scale/). Generated files go to
``--work`` (default: a folder in the system temp dir) and are reused when present.
More phases (training steps, full evaluation, top-K for all users, a serving request)
are one function each: register it in :data:`PHASES`.
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


PHASES: dict[str, Callable[[Workspace, argparse.Namespace], dict[str, Any]]] = {
    "generate": phase_generate,
    "load_cold": phase_load_cold,
    "load_cached": phase_load_cached,
    "batches": phase_batches,
}
# Modules a phase imports before its clock starts (import time is not the phase's).
PHASE_MODULES = {
    "generate": ["data_modules.scale_generator"],
    "load_cold": ["data_modules.sources"],
    "load_cached": ["data_modules.sources"],
    "batches": ["data_modules.sources", "data_modules.sequence_module"],
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
    p.add_argument("--max-len", type=int, default=200)
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
