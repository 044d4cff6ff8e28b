"""Benchmark curricula against the plain baseline under the same training budget.

For every model, arm (curriculum) and seed it runs ``python -m train`` in a subprocess
(CSV logger, no early stopping, same budget), then reports per model and arm:

- validation and test NDCG@10 (full ranking) of the checkpoint chosen on validation;
- training seconds, and the training seconds (validation excluded) and steps each run
  needed to reach the same seed's baseline validation NDCG@10: its best (default) or its
  last one during fit (``--target final``);
- plots of validation NDCG@10 against training seconds and against steps.

An arm is a curriculum with its own overrides (``--arm NAME CURRICULUM [OVERRIDE ...]``),
e.g. the sequence-length warm-up with the larger batch and learning rate it is meant to
allow, next to the same batch without it; without ``--arm`` every curriculum that
applies to the model is one arm, named after it.

Nothing is ever selected on the test split: checkpoints and the "time to reach" target
come from validation only. Writes ``results.md``, ``results.json`` and PNGs to ``--out``.

    python scripts/bench_curriculum.py --out outputs/bench_curriculum            # synthetic
    python scripts/bench_curriculum.py --data /path/ml-1m.txt --epochs 50 --out ...
    python scripts/bench_curriculum.py --ncf-root /path/ncf --models --out ...  # NCF only
    python scripts/bench_curriculum.py --data ml-1m.txt --models sasrec --target final \
        --arm seq_length_b512 seq_length model.datamodule.batch_size=512 \
        "model.task.lr_scaling={rule:linear,reference_batch_size:128}" --out ...
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"
# Curricula that make sense per model family: sequence negatives are drawn inside the
# loss (a model concern), masks exist only for BERT4Rec, max_len only for sequences.
CURRICULA = {
    "sasrec": ["popularity", "seq_length", "self_paced"],
    "bert4rec": ["popularity", "seq_length", "self_paced", "mask_ratio"],
    "neumf": ["popularity", "negatives", "self_paced"],
}
BASELINE = "none"


class WallClock(pl.Callback):
    """Logs, with every validation during fit, the step and the seconds spent so far.

    ``time/train_s`` excludes validation (a curriculum's shorter early epochs validate
    more often, which says nothing about training speed); ``time/wall_s`` includes it.
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.val_seconds = 0.0
        self.val_start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.val_seconds = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.val_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.start is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        elapsed = self.val_start - self.start
        pl_module.log_dict(
            {
                "time/train_s": elapsed - self.val_seconds,
                "time/wall_s": elapsed,
                "time/step": float(trainer.global_step),
            },
            rank_zero_only=True,
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.start is not None and not trainer.sanity_checking:
            self.val_seconds += time.perf_counter() - self.val_start


# -- running ------------------------------------------------------------------------------
@dataclass
class Run:
    model: str
    arm: str  # the name results are reported under (the curriculum's, unless --arm names it)
    seed: int
    directory: Path
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Arm:
    name: str
    curriculum: str
    overrides: tuple[str, ...] = ()


def budget_overrides(args: argparse.Namespace) -> list[str]:
    if args.max_steps:
        return [f"trainer.max_steps={args.max_steps}", "trainer.max_epochs=-1"]
    if args.max_seconds:
        days, rest = divmod(int(args.max_seconds), 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return [f'trainer.max_time="{days:02d}:{hours:02d}:{minutes:02d}:{seconds:02d}"', "trainer.max_epochs=-1"]
    return [f"trainer.max_epochs={args.epochs}"]


def data_overrides(args: argparse.Namespace, model: str) -> list[str]:
    if model == "neumf" and args.ncf_root:
        return ["data=ncf_split", f"data.root={args.ncf_root}"]
    if args.data:
        return ["data=sequence_file", f"data.path={args.data}"]
    return ["data=synthetic", *args.synthetic]


def model_arms(args: argparse.Namespace, model: str) -> list[Arm]:
    """The baseline, then the ``--arm`` arms, or else each curriculum that applies to ``model``."""
    if args.arm:
        return [Arm(BASELINE, BASELINE), *args.arm]
    wanted = CURRICULA.get(model, [])
    return [Arm(c, c) for c in [BASELINE] + [c for c in (args.curricula or wanted) if c in wanted]]


def plan(args: argparse.Namespace) -> list[Run]:
    models = list(args.models) + (["neumf"] if args.ncf_root and "neumf" not in args.models else [])
    runs = []
    for model in models:
        for arm in model_arms(args, model):
            for seed in range(args.seeds):
                overrides = [
                    f"model={model}", f"curriculum={arm.curriculum}", f"seed={seed}", "logger=csv",
                    "~callbacks.early_stopping", "+callbacks.wall_clock._target_=scripts.bench_curriculum.WallClock",
                    *data_overrides(args, model), *budget_overrides(args), *args.extra,
                    *(args.curriculum_overrides if arm.name != BASELINE else []), *arm.overrides,
                ]
                directory = args.out / "runs" / model / arm.name / f"seed{seed}"
                runs.append(Run(model, arm.name, seed, directory, overrides))
    return runs


def execute_all(runs: Sequence[Run], force: bool, jobs: int) -> None:
    """Run every training, ``jobs`` at a time; one seed's conditions run side by side.

    Interleaving by seed keeps the machine's load the same for a baseline and the
    curricula it is compared with (each run should use ``num_threads`` = cores / jobs).
    """
    models = list(dict.fromkeys(r.model for r in runs))  # the planned order of models
    ordered = sorted(runs, key=lambda r: (models.index(r.model), r.seed))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda run: execute(run, force), ordered))  # re-raises a failed run


def execute(run: Run, force: bool) -> float | None:
    """Run one training (skipped when its metrics.json exists); returns process seconds."""
    if (run.directory / "metrics.json").exists() and not force:
        return None
    run.directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "train", *run.overrides, f"hydra.run.dir={run.directory}"]
    print(f"[bench] {run.model}/{run.arm}/seed{run.seed}: {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    with open(run.directory / "train.log", "w") as log:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "".join((run.directory / "train.log").read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"run {run.directory} failed (exit {result.returncode}); end of train.log:\n{tail}")
    return seconds


# -- reading results ------------------------------------------------------------------------
def read_curve(directory: Path) -> list[dict[str, float]]:
    """Validation points logged during fit: step, train_s, wall_s and val NDCG@10."""
    import pandas as pd

    frame = pd.read_csv(directory / "csv" / "metrics.csv")
    needed = ["time/step", "time/train_s", "time/wall_s", f"val/{METRIC}"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{directory}: metrics.csv lacks {missing}; was the run made by this benchmark?")
    rows = frame.dropna(subset=needed)
    return [
        {
            "step": float(r["time/step"]),
            "train_s": float(r["time/train_s"]),
            "wall_s": float(r["time/wall_s"]),
            "val": float(r[f"val/{METRIC}"]),
        }
        for _, r in rows.iterrows()
    ]


def first_reach(curve: list[dict[str, float]], target: float, key: str) -> float | None:
    """``key`` (train_s or step) at the first validation with NDCG@10 >= target, else None."""
    for point in curve:
        if point["val"] >= target - 1e-12:
            return point[key]
    return None


TARGETS = ("best", "final")


def baseline_target(curve: list[dict[str, float]], target: str) -> float:
    """The baseline's best validation value during fit, or its last one (``final``)."""
    if not curve:
        return math.nan
    return max(p["val"] for p in curve) if target == "best" else curve[-1]["val"]


def collect(runs: Sequence[Run], target: str = "best") -> dict[str, Any]:
    """Per run: final metrics, curve and time/steps to the same seed's baseline ``target``."""
    results: dict[str, Any] = {}
    for run in runs:
        metrics = json.loads((run.directory / "metrics.json").read_text())
        results[f"{run.model}/{run.arm}/{run.seed}"] = {
            "model": run.model, "curriculum": run.arm, "seed": run.seed,
            "val": metrics.get(f"val/{METRIC}"), "test": metrics.get(f"test/{METRIC}"),
            "train_seconds": metrics.get("train_seconds"), "curve": read_curve(run.directory),
        }
    for result in results.values():
        baseline = results.get(f"{result['model']}/{BASELINE}/{result['seed']}")
        value = baseline_target(baseline["curve"], target) if baseline else math.nan
        result["target"] = value
        result["reach_s"] = first_reach(result["curve"], value, "train_s")
        result["reach_step"] = first_reach(result["curve"], value, "step")
    return results


def mean_std(values: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± sample std`` of the values that exist (``n/a`` when none do)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_rows(results: dict[str, Any], target: str = "best") -> list[dict[str, str]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results.values():
        groups.setdefault((result["model"], result["curriculum"]), []).append(result)
    rows = []
    for (model, curriculum), group in groups.items():
        reached = [r["reach_s"] for r in group if r["reach_s"] is not None]
        steps = [r["reach_step"] for r in group if r["reach_step"] is not None]
        rows.append({
            "model": model, "curriculum": curriculum, "seeds": str(len(group)),
            f"val {METRIC}": mean_std([r["val"] for r in group]),
            f"test {METRIC}": mean_std([r["test"] for r in group]),
            "run seconds": mean_std([r["train_seconds"] for r in group], 1),
            f"train s to baseline {target}": mean_std(reached, 1) if reached else "not reached",
            f"steps to baseline {target}": mean_std(steps, 0) if reached else "not reached",
            "reached": f"{len(reached)}/{len(group)}",
        })
    return rows


def markdown(rows: list[dict[str, str]], header: str) -> str:
    if not rows:
        return header + "\n\n(no runs)\n"
    columns = list(rows[0])
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib
    except ModuleNotFoundError as exc:
        raise SystemExit("the benchmark's plots need matplotlib: pip install 'recflow[plots]'") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for model in sorted({r["model"] for r in results.values()}):
        names = {r["curriculum"] for r in results.values() if r["model"] == model}
        curricula = sorted(names, key=lambda c: (c != BASELINE, c))
        for key, label in (("train_s", "training seconds (validation excluded)"), ("step", "optimiser step")):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for index, curriculum in enumerate(curricula):
                color = f"C{index}"
                for r in (r for r in results.values() if r["model"] == model and r["curriculum"] == curriculum):
                    xs, ys = [p[key] for p in r["curve"]], [p["val"] for p in r["curve"]]
                    ax.plot(xs, ys, color=color, alpha=0.8, marker=".", label=curriculum if r["seed"] == 0 else None)
            ax.set_xlabel(label)
            ax.set_ylabel(f"validation {METRIC.upper()} (full ranking)")
            ax.set_title(f"{model}: curricula vs baseline")
            ax.grid(alpha=0.3)
            ax.legend()
            path = out / f"{model}_val_vs_{'time' if key == 'train_s' else 'step'}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_curriculum")
    parser.add_argument("--data", help="sequence file (`user item` lines), e.g. ml-1m.txt; default: synthetic data")
    parser.add_argument("--ncf-root", help="folder with NCF's ml-1m.train.rating etc.: adds NeuMF on that split")
    parser.add_argument("--models", nargs="*", default=["sasrec", "bert4rec"])
    parser.add_argument("--curricula", nargs="*", default=None, help="subset of curricula (default: all that apply)")
    parser.add_argument("--seeds", type=int, default=3)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=20, help="budget in epochs (default)")
    budget.add_argument("--max-steps", type=int, help="budget in optimiser steps (fair to shorter curriculum epochs)")
    budget.add_argument("--max-seconds", type=int, help="budget in wall-clock seconds (trainer.max_time)")
    parser.add_argument(
        "--synthetic", nargs="*", default=[], help="overrides of the synthetic data, e.g. data.num_users=200"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], help="Hydra overrides for every run, e.g. trainer.accelerator=gpu"
    )
    parser.add_argument(
        "--curriculum-overrides", nargs="*", default=[],
        help="overrides for curriculum runs only, e.g. curriculum.pacing.ramp_epochs=2",
    )
    parser.add_argument(
        "--arm", action="append", nargs="+", default=[], metavar="ARG",
        help="NAME CURRICULUM [OVERRIDE ...]: an arm named NAME, that curriculum with these overrides (repeatable; replaces --curricula)",
    )
    parser.add_argument(
        "--target", choices=TARGETS, default="best",
        help="the baseline value each arm must reach: its best validation value, or its last one during fit",
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings run side by side (give each cores/jobs threads)")
    parser.add_argument("--force", action="store_true", help="rerun runs whose metrics.json exists")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if args.arm and args.curricula is not None:
        parser.error("give either --curricula or --arm, not both")
    try:
        args.arm = parse_arms(args.arm)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def parse_arms(specs: Sequence[Sequence[str]]) -> list[Arm]:
    """``--arm NAME CURRICULUM [OVERRIDE ...]`` values -> arms, checked against conf/curriculum/."""
    arms: list[Arm] = []
    known = sorted(path.stem for path in (ROOT / "conf" / "curriculum").glob("*.yaml"))
    for spec in specs:
        if len(spec) < 2:
            raise ValueError(f"--arm {' '.join(spec)}: give NAME CURRICULUM [OVERRIDE ...]")
        name, curriculum, *overrides = spec
        if name == BASELINE or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"--arm name {name!r}: use letters, digits, '_' or '-' ({BASELINE!r} is the baseline's)"
            )
        if name in {arm.name for arm in arms}:
            raise ValueError(f"--arm name {name!r} is given twice; give each arm its own name")
        if curriculum not in known:
            raise ValueError(f"--arm {name}: unknown curriculum {curriculum!r}; choose from {known}")
        arms.append(Arm(name, curriculum, tuple(overrides)))
    return arms


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    args.out = args.out.resolve()
    runs = plan(args)
    if args.dry_run:
        for run in runs:
            print(" ".join(["python -m train", *run.overrides, f"hydra.run.dir={run.directory}"]))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    execute_all(runs, args.force, args.jobs)
    results = collect(runs, args.target)
    data = args.data or "synthetic " + " ".join(args.synthetic)
    budget = " ".join(budget_overrides(args))
    header = (
        f"## Curriculum benchmark\n\ndata: {data}; budget: {budget}; seeds: {args.seeds}; jobs side by side: {args.jobs}; "
        f"early stopping off; metric: {METRIC} (full ranking), checkpoint chosen on validation.\n"
        f"Time to baseline {args.target}: training seconds (validation excluded) until validation {METRIC} "
        f"first reaches the {'best' if args.target == 'best' else 'last'} validation value (during fit) "
        "of the same seed's baseline."
    )
    arms = [f"{arm.name} = curriculum={arm.curriculum} {' '.join(arm.overrides)}".rstrip() for arm in args.arm]
    if arms:
        header += "\n\nArms:\n" + "\n".join(f"- {line}" for line in arms)
    table = markdown(summary_rows(results, args.target), header)
    images = plot(results, args.out)
    table += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in images) + "\n"
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(table)
    print(f"[bench] {len(runs)} runs, {time.perf_counter() - started:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
