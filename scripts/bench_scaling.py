"""Does a bigger sequential model help? Test NDCG@10 against parameters and training FLOPs.

Trains each model at each size with the real entry point (`python -m train`), one
process per run, selects the checkpoint on validation (as every run does), and reads
the run folder back: test NDCG@10 of that checkpoint, parameters (item/position tables
vs the rest, counted on the rebuilt model) and the training FLOPs the run spent
(:func:`training_flops`). It then fits a power law NDCG@10 = a * N^b over the sizes in
log-log space, plots both curves (PNG) and writes a table.

    # CPU sizes on the ML-1M file (a fixed budget of 20 epochs each, 2 threads)
    python scripts/bench_scaling.py --data PATH/ml-1m.txt --models sasrec hstu \\
        --sizes 16x1 32x2 64x2 --epochs 20 --out docs/results/scaling
    # GPU sizes, same script:
    python scripts/bench_scaling.py --data PATH/ml-1m.txt --models sasrec hstu \\
        --sizes 64x2 128x4 256x8 512x16 --epochs 200 --patience 10 -- trainer.accelerator=gpu
    # generated data (data_modules/synthetic_generator.py settings after --generate),
    # both models with the same loss, 2 seeds, two single-thread runs at a time
    python scripts/bench_scaling.py --data synthetic --generate num_users=30000 num_items=2000 \\
        --loss "{name:ce}" --seeds 0 1 --parallel 2 --out docs/results/scaling/synthetic -- num_threads=1

A size ``DxB`` (or ``DxBxH``) is hidden size D, B blocks and H heads (default 1 for
SASRec, 2 for HSTU where it divides D). Each model trains with its own config's loss
unless ``--loss`` replaces it for all (a Hydra dict, e.g. ``"{name:ce}"``), so curves of
different models can share one objective. On generated data the set is written once as a
sequence file (``OUT/runs/synthetic.txt``) that every run reads, and the table adds the
ceiling: the NDCG@10 of ranking by the generator's own next-item odds
(:mod:`train.evaluation.synthetic_ceiling`). Runs already finished in ``--out`` are read,
not repeated, so a study can be stopped and continued. Extra Hydra overrides go after
``--``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_modules.synthetic_generator import SyntheticTables, generate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HEADS = {"sasrec": 1, "hstu": 2}
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Size:
    hidden: int
    blocks: int
    heads: int

    @property
    def label(self) -> str:
        return f"d{self.hidden}-b{self.blocks}-h{self.heads}"


def parse_size(text: str, model: str) -> Size:
    """``"64x2"`` -> Size(64, 2, default heads); ``"64x2x4"`` sets the heads too."""
    parts = text.lower().split("x")
    if len(parts) not in (2, 3) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SystemExit(f"--sizes: {text!r} is not HIDDENxBLOCKS or HIDDENxBLOCKSxHEADS (e.g. 64x2)")
    hidden, blocks = int(parts[0]), int(parts[1])
    heads = int(parts[2]) if len(parts) == 3 else DEFAULT_HEADS.get(model, 1)
    if hidden % heads:
        heads = 1
    return Size(hidden, blocks, heads)


@dataclass
class RunResult:
    model: str
    size: str
    seed: int
    dense_params: int
    embedding_params: int
    train_flops: float
    epochs: int
    train_seconds: float
    val_ndcg10: float
    test_ndcg10: float


def train_run(model: str, size: Size, seed: int, args: argparse.Namespace, extra: list[str]) -> Path:
    """Train one configuration in its own process (skipped when its folder holds a
    finished run of exactly these settings)."""
    run_dir = args.out / "runs" / f"{model}-{size.label}-s{seed}"
    overrides = [
        f"model={model}", *data_overrides(args.data), *loss_overrides(args.loss),
        f"seed={seed}", f"model.net.hidden={size.hidden}",
        f"model.net.num_blocks={size.blocks}", f"model.net.num_heads={size.heads}",
        f"trainer.max_epochs={args.epochs}", f"trainer.check_val_every_n_epoch={args.val_every}",
        f"callbacks.early_stopping.patience={args.patience}", "eval.protocol=full", "eval.ks=[10]",
        "logger=csv", "trainer.enable_progress_bar=false", *extra,
    ]
    if (run_dir / "metrics.json").exists():
        check_same_settings(run_dir, overrides)
        return run_dir
    print(f"training {model} {size.label} seed {seed}", flush=True)
    cmd = [sys.executable, "-m", "train", *overrides, f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return run_dir


def check_same_settings(run_dir: Path, overrides: list[str]) -> None:
    """A finished run is reused only if Hydra recorded the same overrides for it."""
    import yaml

    recorded_file = run_dir / ".hydra" / "overrides.yaml"
    recorded = yaml.safe_load(recorded_file.read_text()) if recorded_file.is_file() else None
    if recorded is None or [o for o in recorded if not o.startswith("hydra.run.dir=")] != overrides:
        raise SystemExit(
            f"{run_dir} holds a finished run of other settings than this study's; "
            "pass another --out (or move that folder away) to train these"
        )


def data_overrides(data: Path) -> list[str]:
    return ["data=sequence_file", f"data.path={data}", "data.cache=false"]


def generator_settings(pairs: list[str]) -> dict[str, int | float]:
    """``["num_users=30000", "p_sequential=0.7"]`` -> keyword arguments of ``generate``."""
    import inspect

    known = inspect.signature(generate).parameters
    settings: dict[str, int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--generate {pair!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        kind = type(known[key].default)
        try:
            settings[key] = kind(value)
        except ValueError:
            raise SystemExit(f"--generate {pair!r}: {key} takes a {kind.__name__}") from None
    return settings


def write_generated(tables: SyntheticTables, settings: dict[str, int | float], out: Path) -> Path:
    """Write the generated set once into ``out/runs/synthetic.txt`` (``user item`` lines
    in time order, ids + 1); a file of other settings is an error, never overwritten."""
    path, recorded = out / "runs" / "synthetic.txt", out / "runs" / "synthetic.json"
    if path.exists():
        if not recorded.is_file() or json.loads(recorded.read_text()) != settings:
            raise SystemExit(f"{path} was generated with other settings than --generate; pass another --out")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = tables.raw
    part = path.with_suffix(".part")
    np.savetxt(part, np.stack([raw.user.to_numpy() + 1, raw.item.to_numpy() + 1], axis=1), fmt="%d")
    part.replace(path)
    recorded.write_text(json.dumps(settings))
    return path


def ceiling_ndcg(tables: SyntheticTables, run_dir: Path) -> float:
    """Test NDCG@10 of the generator's own odds, on the data and protocol of ``run_dir``."""
    import hydra

    from train.evaluation.evaluator import evaluate
    from train.evaluation.synthetic_ceiling import WalkOracle
    from train.serving.loading import load_recommender

    _, context = load_recommender(run_dir)
    data = context.data
    longest = int(data.histories(0, 1, 2).lengths.max())
    evaluator = hydra.utils.instantiate(context.cfg.eval, max_history=longest)
    oracle = WalkOracle(tables.process, data.item_ids - 1, tables.user_cluster[data.user_ids - 1])
    return evaluate(oracle, data, "test", evaluator)["ndcg@10"]


def loss_overrides(loss: str | None) -> list[str]:
    """Replace the model config's whole loss node (a merge would keep its other options)."""
    return [] if loss is None else ["~model.task.loss", f"+model.task.loss={loss}"]


def read_run(run_dir: Path, model: str, size: Size, seed: int) -> RunResult:
    """Metrics, parameter counts and spent FLOPs of a finished run folder."""
    from train.serving.loading import load_recommender
    from train.training.console import count_parameters

    metrics = json.loads((run_dir / "metrics.json").read_text())
    net, context = load_recommender(run_dir)
    counts = count_parameters(net)
    loss = context.cfg.model.task.loss
    lengths = context.data.histories(0).lengths
    per_epoch = training_flops(
        counts.dense, size.hidden, size.blocks, lengths, int(context.cfg.model.net.max_len),
        net.num_items, str(loss.name), int(loss.get("num_negatives", 1) or 1),
    )
    return RunResult(
        model=model, size=size.label, seed=seed, dense_params=counts.dense, embedding_params=counts.embedding,
        train_flops=per_epoch * int(metrics["epochs"]), epochs=int(metrics["epochs"]),
        train_seconds=float(metrics["train_seconds"]), val_ndcg10=float(metrics["val/ndcg@10"]),
        test_ndcg10=float(metrics["test/ndcg@10"]),
    )


def training_flops(
    dense_params: int, hidden: int, blocks: int, lengths: np.ndarray, max_len: int,
    num_items: int, loss: str, num_negatives: int,
) -> float:
    """FLOPs of one training epoch (forward + backward = 3x forward), one pass over users.

    - dense layers: 2 FLOPs per parameter per token forward, so 6 * params * tokens;
    - causal attention: position t attends to t+1 keys, 2 * d FLOPs each for scores and
      again for the weighted sum, per block: 6 * 2 * d * sum_t (t + 1);
    - output layer per target (every position but the first): full CE scores all items
      (6 * d * I), sampled losses score the target and the negatives (6 * d * (k + 1)).
    Embedding lookups cost no FLOPs. An estimate in the spirit of Kaplan et al. (2020).
    """
    used = np.minimum(lengths.astype(np.float64), max_len)
    tokens = used.sum()
    targets = np.maximum(used - 1, 0).sum()
    attended = (used * (used + 1) / 2).sum()
    scored = num_items if loss == "ce" else num_negatives + 1
    return float(6 * dense_params * tokens + 12 * hidden * blocks * attended + 6 * hidden * scored * targets)


def fit_power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares fit of log y = log a + b log x: (a, b, R^2)."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    b, log_a = np.polyfit(lx, ly, 1)
    residual = ly - (log_a + b * lx)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else float("nan")
    return float(math.exp(log_a)), float(b), float(r2)


def summarise(results: list[RunResult], out: Path, ceiling: float | None = None) -> str:
    """Table (mean over seeds), per-model power-law fits and the data's ceiling (when
    known), also written to ``out``."""
    lines = ["| model | size | dense params | training FLOPs | epochs | val NDCG@10 | test NDCG@10 (mean ± sd) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    fits = []
    for model in sorted({r.model for r in results}):
        rows = _by_size([r for r in results if r.model == model])
        for size, group in rows:
            test = np.array([r.test_ndcg10 for r in group])
            lines.append(
                f"| {model} | {size} | {group[0].dense_params:,} | {np.mean([r.train_flops for r in group]):.2e} "
                f"| {np.mean([r.epochs for r in group]):.0f} | {np.mean([r.val_ndcg10 for r in group]):.4f} "
                f"| {test.mean():.4f} ± {test.std():.4f} | {len(group)} |"
            )
        if len(rows) >= 2:
            params = np.array([g[0].dense_params for _, g in rows], dtype=np.float64)
            flops = np.array([np.mean([r.train_flops for r in g]) for _, g in rows])
            ndcg = np.array([np.mean([r.test_ndcg10 for r in g]) for _, g in rows])
            a, b, r2 = fit_power_law(params, ndcg)
            af, bf, r2f = fit_power_law(flops, ndcg)
            span = math.log10(params.max() / params.min())
            fits.append(
                f"- {model}: NDCG@10 = {a:.4g} * N^{b:.4f} (R^2 {r2:.2f}) over N = {params.min():,.0f}..{params.max():,.0f} "
                f"dense parameters ({span:.1f} orders of magnitude); at 10x the largest it predicts "
                f"{a * (10 * params.max()) ** b:.4f}. Against FLOPs: exponent {bf:.4f} (R^2 {r2f:.2f})."
            )
    text = "\n".join(lines) + ("\n\nPower-law fits (log-log least squares):\n" + "\n".join(fits) if fits else "")
    if ceiling is not None:
        text += f"\n\nCeiling (ranking by the generator's own next-item odds): test NDCG@10 {ceiling:.4f}"
    (out / "scaling.md").write_text(text + "\n")
    return text


def _by_size(results: list[RunResult]) -> list[tuple[str, list[RunResult]]]:
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.size, []).append(r)
    return sorted(groups.items(), key=lambda item: item[1][0].dense_params)


def plot(results: list[RunResult], out: Path, ceiling: float | None = None) -> None:
    """Two log-log panels: test NDCG@10 against dense parameters and against training FLOPs
    (with the data's ceiling as a dashed line when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for model in sorted({r.model for r in results}):
        rows = _by_size([r for r in results if r.model == model])
        for ax, key in zip(axes, ("dense_params", "train_flops")):
            x = [np.mean([getattr(r, key) for r in g]) for _, g in rows]
            y = [np.mean([r.test_ndcg10 for r in g]) for _, g in rows]
            err = [np.std([r.test_ndcg10 for r in g]) for _, g in rows]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=model)
    for ax, label in zip(axes, ("dense (non-embedding) parameters", "training FLOPs")):
        if ceiling is not None:
            ax.axhline(ceiling, color="grey", linestyle="--", label="ceiling (generator's odds)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test NDCG@10 (validation-selected)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="sequence file (e.g. the SASRec ml-1m.txt) or 'synthetic'")
    parser.add_argument("--generate", nargs="+", default=[], metavar="KEY=VALUE",
                        help="with --data synthetic: settings of data_modules.synthetic_generator.generate")
    parser.add_argument("--loss", default=None, help='one loss for every model, a Hydra dict such as "{name:ce}"')
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at once (give each num_threads=1)")
    parser.add_argument("--models", nargs="+", default=["sasrec", "hstu"])
    parser.add_argument("--sizes", nargs="+", default=["16x1", "32x2", "64x2"], help="HIDDENxBLOCKS[xHEADS]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20, help="training budget per run (max epochs)")
    parser.add_argument("--val-every", type=int, default=2)
    parser.add_argument("--patience", type=int, default=5, help="early stopping, in validations")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "scaling")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    if args.parallel < 1:
        raise SystemExit(f"--parallel {args.parallel}: must be at least 1")
    if args.generate and args.data != SYNTHETIC:
        raise SystemExit("--generate applies to --data synthetic only")
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = generator_settings(args.generate) if args.data == SYNTHETIC else None
    tables = generate(**settings) if settings is not None else None  # for the file and the ceiling
    if tables is not None:
        args.data = write_generated(tables, settings, args.out)
    elif not Path(args.data).is_file():
        raise SystemExit(f"--data {args.data}: no such file; pass the sequence file (e.g. ml-1m.txt) or 'synthetic'")
    args.data = Path(args.data).resolve()
    plan = [(model, parse_size(text, model), seed) for model in args.models for text in args.sizes for seed in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:  # threads only wait on training processes
        run_dirs = list(pool.map(lambda job: train_run(*job, args, extra), plan))
    results = [read_run(run_dir, *job) for run_dir, job in zip(run_dirs, plan)]
    with (args.out / "scaling.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    ceiling = ceiling_ndcg(tables, run_dirs[0]) if tables is not None else None
    print(summarise(results, args.out, ceiling))
    plot(results, args.out, ceiling)
    print(f"\nwritten: {args.out / 'scaling.csv'}, scaling.md, scaling.png")


if __name__ == "__main__":
    main()
