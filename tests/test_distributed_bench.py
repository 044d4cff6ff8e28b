"""The distributed benchmark: hardware options map onto configs; one real tiny run."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

SPEC = importlib.util.spec_from_file_location(
    "bench_distributed", Path(__file__).resolve().parents[1] / "scripts" / "bench_distributed.py"
)
bench = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = bench
SPEC.loader.exec_module(bench)


def test_gpu_runs_swap_the_accelerator_add_precision_and_take_the_process_count() -> None:
    args, _ = bench.parse(["--accelerator", "gpu", "--processes", "1"])
    overrides, nproc = bench.config_overrides("ZeRO-3 x2", args)
    assert nproc == 1
    assert "trainer.accelerator=gpu" in overrides and "trainer.accelerator=cpu" not in overrides
    assert "trainer.precision=bf16-mixed" in overrides
    assert "trainer=deepspeed_zero3" in overrides
    cpu_args, _ = bench.parse([])
    overrides, nproc = bench.config_overrides("ZeRO-3 x2", cpu_args)
    assert nproc == 2 and "trainer.accelerator=cpu" in overrides
    assert not any(o.startswith("trainer.precision") for o in overrides)  # CPU stays fp32


def test_sasrec_xl_keeps_its_own_sizes() -> None:
    args, _ = bench.parse(["--model", "sasrec_xl", "--num-items", "1000", "--catalogue", "10000000"])
    overrides = bench.model_overrides(bench.argparse.Namespace(**{**vars(args), "out": "/tmp/x"}))
    assert "model=sasrec_xl" in overrides and not any(o.startswith("model.net.hidden") for o in overrides)
    assert "data.num_items=1000" in overrides and "++model.net.num_items=10000000" in overrides


def test_markdown_has_a_gpu_column_only_with_gpu_figures() -> None:
    row = {"config": "ZeRO-2 x1", "processes": 1, "threads": 4, "steps": 5, "sequences_per_s": 100.0,
           "peak_rss_mb": 900.0, "weights_mb": 1.0, "optimizer_mb": 2.0, "peak_gpu_mb": None}
    assert "GPU" not in bench.markdown([row])
    table = bench.markdown([{**row, "peak_gpu_mb": 1234.4}])
    header, rule, line = table.splitlines()
    assert "peak GPU memory per rank (MB)" in header
    assert header.count("|") == rule.count("|") == line.count("|")
    assert "| 1234 |" in line


@pytest.mark.timeout(300)
def test_one_tiny_single_process_run_reports_throughput_and_held_bytes(tmp_path: Path) -> None:
    args, _ = bench.parse(["--num-items", "200", "--num-users", "60", "--hidden", "8", "--max-len", "10",
                           "--batch-size", "16", "--steps", "2", "--warmup", "1", "--threads", "1",
                           "--catalogue", "5000", "--loss", "sampled_softmax", "--negatives", "64"])
    row = bench.run_config("single process", args, tmp_path)
    rank = json.loads((tmp_path / "single_process" / "rank0.json").read_text())
    assert row["steps"] == rank["steps"] == 2
    assert rank["sequences"] == 2 * 16  # two timed steps of full batches (60 users, the warm-up took 16)
    assert row["sequences_per_s"] == pytest.approx(rank["sequences"] / rank["seconds"])
    assert row["num_items"] == 200  # the data's items; the table has 5,000 rows (+1 padding)
    parameters, tensors = counted_sasrec(num_items=5000, hidden=8, max_len=10)
    assert row["parameters"] == parameters
    assert row["peak_gpu_mb"] is None  # no GPU here
    # Weights held = all parameters in fp32; Adam holds m and v (twice that) plus one
    # float32 step counter per parameter tensor.
    assert row["weights_mb"] == pytest.approx(parameters * 4 / 2**20)
    assert row["optimizer_mb"] * 2**20 == pytest.approx(2 * parameters * 4 + 4 * tensors)


def counted_sasrec(**sizes: int) -> tuple[int, int]:
    """Parameters and parameter tensors of conf/model/sasrec.yaml's net at these sizes,
    counted on a freshly built module (not by the benchmark's own counting)."""
    node = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "sasrec.yaml").net
    model = hydra.utils.instantiate(node, **sizes)
    params = list(model.parameters())
    return sum(p.numel() for p in params), len(params)
