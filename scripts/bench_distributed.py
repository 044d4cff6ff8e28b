"""Benchmark multi-process SASRec training: throughput and per-rank memory by strategy.

    python scripts/bench_distributed.py --data data/ml-1m.txt --steps 30
    python scripts/bench_distributed.py --num-items 100000 --hidden 64 --loss sampled_softmax
    # one GPU, bf16: mid-size SASRec under ZeRO-2, SASRec-XL (10M items) under ZeRO-3
    python scripts/bench_distributed.py --accelerator gpu --processes 1 --configs "ZeRO-2 x2" \
        --num-items 1000000 --hidden 128 --loss sampled_softmax
    python scripts/bench_distributed.py --accelerator gpu --processes 1 --configs "ZeRO-3 x2" \
        --model sasrec_xl --catalogue 10000000

Each configuration is a separate ``torchrun`` job running this file in ``--worker`` mode:
the project's own configs build data, SASRec, its data module and task, and a Lightning
Trainer with the strategy under test runs ``--steps`` optimizer steps (no validation).
Timing starts after ``--warmup`` steps. Per rank it records sequences/s, peak resident
memory, and the bytes of weights and optimizer state the rank itself holds (from the
engine: ZeRO-3 keeps only its partition of each weight, ZeRO-1/2 only its partition of
the fp32 master weights and Adam moments) and, on GPUs, peak allocated GPU memory. The
config names give the CPU layout; ``--processes`` sets the process count of the
multi-process ones (1 on a one-GPU machine). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from train.cli.configs import CONFIG_DIR

CONFIGS: dict[str, tuple[list[str], int]] = {
    "single process": (["trainer=default", "trainer.accelerator=cpu"], 1),
    "DDP x2": (["trainer=ddp", "trainer.accelerator=cpu"], 2),
    "ZeRO-2 x2": (["trainer=deepspeed_zero2", "trainer.accelerator=cpu"], 2),
    "ZeRO-3 x2": (
        ["trainer=deepspeed_zero3", "trainer.accelerator=cpu",
         "trainer.strategy.config.zero_optimization.stage3_param_persistence_threshold=0"],
        2,
    ),
}


# -- worker (one rank) ----------------------------------------------------------------------
def _worker(args: argparse.Namespace, overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from train.training.resolvers import register_resolvers

    register_resolvers()  # ${recflow.precision:} in the trainer configs
    from train.building import build_with_data, instantiate_with

    from train.training.distributed import detect_launch

    launch = detect_launch(os.environ)
    rank = launch.rank
    processes = [f"++trainer.devices={launch.devices_per_node}", f"++trainer.num_nodes={launch.nodes}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *processes])
    pl.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data)
    evaluator = instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    datamodule = instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    task = build_with_data(cfg.model.task, data, {"seed": cfg.seed}, model=model, evaluator=evaluator)
    timer = StepTimer(args.warmup)
    trainer = instantiate_with(
        cfg.trainer, callbacks=[timer], logger=False, max_epochs=-1, max_steps=args.warmup + args.steps,
        limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
    )
    trainer.fit(task, datamodule=datamodule)
    import torch

    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    weights, optimizer = held_bytes(task, trainer.optimizers[0] if trainer.optimizers else None)
    result = {
        "rank": rank,
        "world_size": trainer.world_size,
        "steps": timer.steps,
        "seconds": timer.seconds,
        "sequences": timer.sequences,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": peak_gpu,
        "weights_mb": weights / 2**20,
        "optimizer_mb": optimizer / 2**20,
        "parameters": sum(int(getattr(p, "ds_numel", p.numel())) for p in task.model.parameters()),
        "num_items": data.num_items,
    }
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))


class StepTimer(pl.Callback):
    """Wall time and sequences of the optimizer steps after ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps, self.sequences = warmup, 0, 0
        self.started: float | None = None
        self.seconds = 0.0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.warmup and self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.started is not None:
            self.steps += 1
            self.sequences += int(batch["history"].shape[0])
            self.seconds = time.perf_counter() - self.started


def held_bytes(task: Any, optimizer: Any) -> tuple[int, int]:
    """(weight bytes, optimizer-state bytes) this rank holds itself.

    Weights: a ZeRO-3 parameter's local partition (``ds_tensor``), else the full tensor.
    Optimizer: the inner torch optimizer's state (Adam m, v) plus ZeRO's fp32 master
    partitions (stage 1/2: ``single_partition_of_fp32_groups``, stage 3:
    ``fp32_partitioned_groups_flat``); a plain optimizer's master weights are the model's.
    """
    weights = sum(_nbytes(getattr(p, "ds_tensor", p)) for p in task.parameters())
    if optimizer is None:
        return weights, 0
    inner = getattr(optimizer, "optimizer", optimizer)
    state = sum(_nbytes(t) for s in inner.state.values() for t in s.values() if hasattr(t, "element_size"))
    masters = sum(
        _nbytes(t)
        for name in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat")
        for t in (getattr(optimizer, name, None) or [])
    )
    return weights, state + masters


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


# -- driver ---------------------------------------------------------------------------------
def model_overrides(args: argparse.Namespace) -> list[str]:
    data = (
        ["data=sequence_file", f"data.path={Path(args.data).resolve()}", "data.cache=false"]
        if args.data
        else ["data=synthetic", f"data.num_items={args.num_items}", f"data.num_users={args.num_users}"]
    )
    if args.model == "sasrec_xl":  # its own sizes and sampled-softmax loss (conf/model/sasrec_xl.yaml)
        model = ["model=sasrec_xl", f"model.datamodule.batch_size={args.batch_size}"]
    else:
        model = ["model=sasrec", f"model.net.hidden={args.hidden}", f"model.net.max_len={args.max_len}",
                 f"model.datamodule.batch_size={args.batch_size}", f"model.task.loss.name={args.loss}"]
        if args.loss == "sampled_softmax":
            model.append(f"+model.task.loss.num_negatives={args.negatives}")
    if args.catalogue:  # an item table larger than the data's items: a catalogue-size stress test
        model.append(f"++model.net.num_items={args.catalogue}")
    return [*data, *model, "logger=none", "paths.output_dir=" + args.out]


def config_overrides(name: str, args: argparse.Namespace) -> tuple[list[str], int]:
    """Trainer overrides and process count of one configuration on the chosen hardware."""
    overrides, nproc = CONFIGS[name]
    if args.processes and nproc > 1:
        nproc = args.processes
    if args.accelerator == "gpu":
        overrides = [o.replace("trainer.accelerator=cpu", "trainer.accelerator=gpu") for o in overrides]
        overrides.append(f"trainer.precision={args.precision}")
    return overrides, nproc


def run_config(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    overrides, nproc = config_overrides(name, args)
    out = workdir / name.replace(" ", "_")
    out.mkdir(parents=True)
    worker_args = ["--worker", "--out", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", __file__, *worker_args,
           "--", *model_overrides(argparse.Namespace(**{**vars(args), "out": str(out)})), *overrides]
    threads = args.threads or max(1, (os.cpu_count() or 1) // nproc)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), WANDB_MODE="disabled")
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    if len(ranks) != nproc:
        raise RuntimeError(f"{name}: expected {nproc} rank reports, got {len(ranks)}")
    label = name if nproc == CONFIGS[name][1] else f"{name.split(' x')[0]} x{nproc}"
    return {**summarise(label, ranks), "threads": threads}


def summarise(name: str, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = max(r["seconds"] for r in ranks)
    return {
        "config": name,
        "processes": len(ranks),
        "steps": ranks[0]["steps"],
        "sequences_per_s": sum(r["sequences"] for r in ranks) / seconds if seconds else float("nan"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
        "peak_gpu_mb": max((r["peak_gpu_mb"] for r in ranks if r.get("peak_gpu_mb") is not None), default=None),
        "weights_mb": max(r["weights_mb"] for r in ranks),
        "optimizer_mb": max(r["optimizer_mb"] for r in ranks),
        "parameters": ranks[0]["parameters"],
        "num_items": ranks[0]["num_items"],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["sequences_per_s"]
    gpu = any(r.get("peak_gpu_mb") is not None for r in rows)
    lines = [
        "| config | processes x threads | steps timed | sequences/s (all ranks) | speed-up | peak RSS per rank (MB) "
        + ("| peak GPU memory per rank (MB) " if gpu else "")
        + "| weights held per rank (MB) | optimizer state held per rank (MB) |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for r in rows:
        gpu_cell = f" {r['peak_gpu_mb']:.0f} |" if gpu else ""
        lines.append(
            f"| {r['config']} | {r['processes']} x {r['threads']} | {r['steps']} | {r['sequences_per_s']:.1f} | "
            f"{r['sequences_per_s'] / base:.2f}x | {r['peak_rss_mb']:.0f} |{gpu_cell} {r['weights_mb']:.2f} | "
            f"{r['optimizer_mb']:.2f} |"
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="sequence file (user item ... per line); synthetic data if omitted")
    parser.add_argument("--num-items", type=int, default=2000, help="synthetic catalogue size")
    parser.add_argument("--num-users", type=int, default=2000, help="synthetic users")
    parser.add_argument("--model", default="sasrec", choices=["sasrec", "sasrec_xl"],
                        help="sasrec (sized by the flags below) or sasrec_xl (conf/model/sasrec_xl.yaml)")
    parser.add_argument("--catalogue", type=int, default=0,
                        help="rows of the item table (default: the data's items); e.g. 10000000 for SASRec-XL")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128, help="sequences per rank per step")
    parser.add_argument("--loss", default="ce", choices=["ce", "bce", "sampled_softmax", "gbce"])
    parser.add_argument("--negatives", type=int, default=256, help="sampled_softmax negatives")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default="bf16-mixed", help="trainer.precision on GPUs (CPU runs fp32)")
    parser.add_argument("--processes", type=int, default=0,
                        help="processes of the multi-process configs (default: as named, 2); 1 on a one-GPU machine")
    parser.add_argument("--threads", type=int, default=0, help="threads per process (default: cores / processes)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    if "--" in argv:
        split = argv.index("--")
        return parser.parse_args(argv[:split]), argv[split + 1 :]
    return parser.parse_args(argv), []


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    if args.worker:
        _worker(args, overrides)
        return
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        for name in args.configs:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.append(run_config(name, args, Path(tmp)))
    source = args.data or f"synthetic ({args.num_users} users)"
    sizes = "sizes of conf/model/sasrec_xl.yaml" if args.model == "sasrec_xl" else (
        f"hidden={args.hidden}, max_len={args.max_len}, loss={args.loss}")
    hardware = f"{args.accelerator} ({args.precision})" if args.accelerator == "gpu" else "cpu (fp32)"
    print(f"\n{args.model} on {source}: {rows[0]['num_items']} items in the data, "
          f"{args.catalogue or rows[0]['num_items']} in the item table, {rows[0]['parameters']:,} parameters, "
          f"{sizes}, batch {args.batch_size}/rank, {hardware}, {os.cpu_count()} CPU cores\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
