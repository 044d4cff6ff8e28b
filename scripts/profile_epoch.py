"""Where one training epoch's time goes, against the fp32 matrix-multiply limit.

Builds the run exactly as ``python -m train`` does (same config, data module, model,
task and optimizer), then times one epoch of training steps by phase: producing the
batch, the encoder forward, the loss (forward, and for the streamed full CE also its
gradient products), the backward pass and the optimizer step. In the same process it
counts the epoch's floating-point work with ``torch.utils.flop_counter.FlopCounterMode``
(every batch; attention counted by the pairs it needs, see :func:`flop_mapping`) and
measures this machine's fp32 product rate (a 1024^3 product by MKL's ``mm`` and by
oneDNN, the faster counting), so "limit" = FLOPs / that rate and "x limit" = epoch / limit.
The op table (``torch.profiler``, self CPU time) says which kernels the rest is.

    python scripts/profile_epoch.py --data PATH/ml-1m.txt                      # SASRec full CE
    python scripts/profile_epoch.py --data FILE --threads 2 -- model.net.hidden=64
    python scripts/profile_epoch.py --data FILE --threads 2 --epochs 5         # median of 5 (noisy machines)
    python scripts/profile_epoch.py --data FILE --ops 25 --out docs/results/epoch_profile.md

Overrides after ``--`` are Hydra overrides of the training config.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from train.training.threads import prefer_passive_wait  # no torch import

DEFAULTS = [
    "data=sequence_file", "model=sasrec", "model.task.loss.name=ce", "model.net.hidden=50",
    "model.net.num_blocks=2", "model.net.num_heads=1", "model.net.max_len=200",
    "model.datamodule.batch_size=128", "logger=none", "data.cache=false",
]
PHASES = ("batch", "encoder", "loss", "backward", "optimizer")


def compose(data: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from train.cli.configs import config_dir
    from train.training.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[*DEFAULTS, f"data.path={data}", *overrides])


def build(cfg):
    """Data module, task and optimizer, built the way train.training.run.train builds them."""
    import hydra

    from train.building import build_with_data, instantiate_with

    data = hydra.utils.instantiate(cfg.data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    datamodule = instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    task = build_with_data(cfg.model.task, data, {"seed": cfg.seed}, model=model, evaluator=evaluator)
    datamodule.setup("fit")
    task.setup("fit")
    optimizer = task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    return data, datamodule, task, optimizer


def step_phases(task, optimizer, batch, clock, bf16: bool = False) -> None:
    """One training step, each phase timed by ``clock(name)`` (CPU: ops are synchronous).

    ``bf16``: forward under CPU autocast to bfloat16, as ``trainer.precision=bf16-mixed``.
    """
    import torch

    from recmodels.losses import select_targets

    model = task.model
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with clock("encoder"):
            hidden = model(batch["history"])
        with clock("loss"):
            hidden, targets = select_targets(hidden, batch["targets"])
            value = task.loss_fn(hidden, targets, model.output_items(), getattr(model, "output_bias", None))
    with clock("backward"):
        value.backward()
    with clock("optimizer"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


class PhaseClock:
    """Accumulates wall seconds per phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def timed_epoch(datamodule, task, optimizer, bf16: bool) -> tuple[PhaseClock, float, int, int]:
    """One epoch: (phase clock, wall seconds, batches, target positions)."""
    clock = PhaseClock()
    task.model.train()
    positions = batches = 0
    start = time.perf_counter()
    iterator = iter(datamodule.train_dataloader())
    while True:
        with clock("batch"):
            batch = next(iterator, None)
        if batch is None:
            break
        positions += int((batch["targets"] >= 0).sum())
        batches += 1
        step_phases(task, optimizer, batch, clock, bf16)
    return clock, time.perf_counter() - start, batches, positions


def epoch_flops(datamodule, task, optimizer, bf16: bool) -> float:
    """Floating-point operations of one epoch's steps, counted op by op on every batch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=flop_mapping())
    noop = PhaseClock()
    with counter:
        for batch in datamodule.train_dataloader():
            step_phases(task, optimizer, batch, noop, bf16)
    return float(counter.get_total_flops())


def flop_mapping() -> dict:
    """FLOP formulas for the CPU ops torch's counter table lacks.

    - ``addmm_`` (in place) and oneDNN's linear: the streamed CE's products
      (recmodels/cpu_products.py) and its table-gradient accumulation.
    - CPU attention (torch's flash kernel and the chunked causal attention of CPU
      training), forward and backward: counted as the products attention needs, not
      as the kernel runs them. A causal square counts only its
      L(L+1)/2 allowed query-key pairs, and the backward counts its four products
      (dP, dV, dQ, dK) without the kernel's recomputed scores. That is the smallest
      count any attention kernel could reach, so the limit stays a lower bound.
    """
    import torch

    import recmodels.causal_attention  # noqa: F401  (registers torch.ops.recflow)
    from recmodels.cpu_products import onednn_linear_available

    def addmm_flops(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]  # as torch counts addmm: the product

    def onednn_linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * x_shape[0] * x_shape[1] * w_shape[0]  # x @ w.T

    def attention_forward_flops(q_shape, k_shape, v_shape, dropout_p=0.0, is_causal=False,
                                *args, out_shape=None, **kwargs) -> int:
        return 2 * attention_product_flops(q_shape, k_shape, is_causal)  # scores, scores @ v

    def attention_backward_flops(grad_shape, q_shape, k_shape, v_shape, out_shape_, lse_shape,
                                 dropout_p=0.0, is_causal=False, *args, out_shape=None, **kwargs) -> int:
        return 4 * attention_product_flops(q_shape, k_shape, is_causal)

    mapping = {torch.ops.aten.addmm_: addmm_flops}
    if onednn_linear_available():
        mapping[torch.ops.mkldnn._linear_pointwise] = onednn_linear_flops
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = attention_forward_flops
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] = attention_backward_flops

    # The chunked causal attention of CPU training (recmodels/causal_attention.py): its
    # products cover more than the causal half; it is counted, like flash, by the pairs
    # attention needs.
    def chunked_forward_flops(qkv_shape, *args, out_shape=None, **kwargs) -> int:
        *lead, length, width = qkv_shape  # [N, L, 3 dh]: q, k, v side by side
        q_shape = (*lead, length, width // 3)
        return 2 * attention_product_flops(q_shape, q_shape, is_causal=True)

    def chunked_backward_flops(grad_shape, qkv_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * chunked_forward_flops(qkv_shape)

    mapping[torch.ops.recflow.chunked_causal_attention] = chunked_forward_flops
    mapping[torch.ops.recflow.chunked_causal_attention_backward] = chunked_backward_flops
    return mapping


def attention_product_flops(q_shape, k_shape, is_causal: bool) -> int:
    """FLOPs of one [.., Lq, d] x [.., d, Lk] attention product over the pairs it needs."""
    *lead, queries, dim = q_shape
    keys = k_shape[-2]
    heads = math.prod(lead)  # batch x heads
    pairs = queries * (queries + 1) // 2 if is_causal and queries == keys else queries * keys
    return 2 * heads * pairs * dim


def matmul_rate(threads: int, hidden: int, num_items: int, rows: int, seconds: float = 2.0) -> dict[str, float]:
    """fp32 FLOP/s: a large square product by each of torch's CPU routes (MKL's ``mm``,
    oneDNN's linear; the faster is the machine's limit), and the three products of the
    streamed full CE at this model's shapes, as the CE runs them."""
    import torch

    from recmodels.cpu_products import onednn_linear_available, product_nt

    torch.set_num_threads(threads)
    ce_flops = 2 * rows * hidden * num_items

    def rate(product, a_shape, b_shape, flops: int = 2 * 1024**3) -> float:
        a, b = torch.randn(*a_shape), torch.randn(*b_shape)
        product(a, b)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            product(a, b)
            count += 1
        return flops * count / (time.perf_counter() - start)

    with torch.no_grad():
        rates = {"square 1024, mm": rate(lambda a, b: torch.mm(a, b.T), (1024, 1024), (1024, 1024))}
        if onednn_linear_available():
            rates["square 1024, oneDNN"] = rate(product_nt, (1024, 1024), (1024, 1024))
        return {
            **rates,
            "scores h.W^T": rate(product_nt, (rows, hidden), (num_items, hidden), ce_flops),
            "grad_h^T W^T.p^T": rate(product_nt, (hidden, num_items), (rows, num_items), ce_flops),
            "grad_W^T h^T.p": rate(lambda h, p: product_nt(h.T, p.T), (rows, hidden), (rows, num_items), ce_flops),
        }


def processor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU the figures belong to: model name, vendor, family and model (Linux), else
    ``platform.processor()``. The limit and the ratio depend on it: on an AMD EPYC (Zen 5)
    torch's MKL ``mm`` ran at about half of oneDNN's rate, on an earlier machine (MKL at
    full speed, likely Intel) the two were close (docs/performance.md)."""
    import platform

    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or "unknown processor"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block has ended
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown processor"
    labels = {"vendor_id": "", "cpu family": "family ", "model": "model "}
    detail = [f"{label}{fields[key]}" for key, label in labels.items() if key in fields]
    return f"{name} ({', '.join(detail)})" if detail else name


def machine_rate(rates: dict[str, float]) -> float:
    """The fastest large-square rate: what the machine's fp32 products can reach."""
    return max(value for name, value in rates.items() if name.startswith("square"))


def op_table(datamodule, task, optimizer, batches: int, rows: int, bf16: bool) -> str:
    """Self-CPU-time table of the ops of a few steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    noop = PhaseClock()
    iterator = iter(datamodule.train_dataloader())
    chosen = [next(iterator) for _ in range(batches)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in chosen:
            step_phases(task, optimizer, batch, noop, bf16)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def median_epoch(epochs: list[tuple[PhaseClock, float]]) -> tuple[PhaseClock, float]:
    """The epoch of median wall time (the lower middle one for an even count)."""
    ordered = sorted(epochs, key=lambda epoch: epoch[1])
    return ordered[(len(ordered) - 1) // 2]


def report(args, cfg, data, epochs, batches, positions, flops, rates, ops) -> str:
    """Markdown report; the phase table is the median epoch's."""
    clock, wall = median_epoch(epochs)
    rate = machine_rate(rates)
    limit = flops / rate
    walls = sorted(seconds for _, seconds in epochs)
    spread = (
        f" (median of {len(walls)} epochs: {', '.join(f'{w:.2f}' for w in walls)} s = "
        f"{', '.join(f'{w / limit:.2f}' for w in walls)}x the limit)" if len(walls) > 1 else ""
    )
    lines = [
        f"# One training epoch: {cfg.model.name}, loss {cfg.model.task.loss.name}",
        "",
        f"data {data.name}: {data.num_users} users, {data.num_items} items; {batches} batches, "
        f"{positions:,} target positions; threads {args.threads}; precision {args.precision}; "
        f"overrides: {' '.join(args.overrides) or '(none)'}",
        "",
        f"- processor: {processor()}, {os.cpu_count()} logical CPUs",
        f"- epoch wall time: **{wall:.2f} s**{spread}",
        f"- work: {flops / 1e12:.3f} TFLOP = {flops:.6g} FLOP (forward + backward + optimizer, counted op by op)",
        f"- fp32 product rate on this machine (1024^3, the faster of mm and oneDNN): {rate / 1e9:.0f} GFLOP/s "
        f"-> matrix-multiply limit {limit:.2f} s",
        f"- **epoch / limit: {wall / limit:.2f}x**",
        "",
        "| phase | seconds | share |",
        "|---|---|---|",
    ]
    for name in PHASES:
        lines.append(f"| {name} | {clock.seconds[name]:.2f} | {clock.seconds[name] / wall:.0%} |")
    rest = wall - sum(clock.seconds.values())
    lines += [f"| (loop) | {rest:.2f} | {rest / wall:.0%} |", "", "| product | GFLOP/s |", "|---|---|"]
    lines += [f"| {name} | {value / 1e9:.0f} |" for name, value in rates.items()]
    lines += ["", f"Ops of {args.op_batches} steps by self CPU time:", "", "```", ops, "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="sequence file, e.g. the SASRec ml-1m.txt")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32",
                        help="bf16-mixed: forward under CPU autocast (bfloat16 matmuls, fp32 softmax)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="timed epochs after the warm-up one; the report gives each and the median's phases")
    parser.add_argument("--ops", type=int, default=20, help="rows of the op table")
    parser.add_argument("--op-batches", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args, rest = parser.parse_known_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1; got {args.epochs}")
    args.overrides = [o for o in rest if o != "--"]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    prefer_passive_wait()  # OpenMP waits as `python -m train` sets them (before torch loads)
    import torch

    torch.set_num_threads(args.threads)
    cfg = compose(str(Path(args.data).expanduser().resolve()), [f"num_threads={args.threads}", *args.overrides])
    torch.manual_seed(cfg.seed)
    data, datamodule, task, optimizer = build(cfg)
    bf16 = args.precision == "bf16-mixed"
    timed_epoch(datamodule, task, optimizer, bf16)  # warm-up epoch (allocator, kernels, page cache)
    epochs = []
    for _ in range(args.epochs):
        clock, wall, batches, positions = timed_epoch(datamodule, task, optimizer, bf16)
        epochs.append((clock, wall))
    flops = epoch_flops(datamodule, task, optimizer, bf16)
    rates = matmul_rate(args.threads, cfg.model.net.hidden, data.num_items, 128)
    ops = op_table(datamodule, task, optimizer, args.op_batches, args.ops, bf16)
    text = report(args, cfg, data, epochs, batches, positions, flops, rates, ops)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
