"""End-to-end multi-process training on CPU: DDP, DeepSpeed ZeRO-2/3, resume, consolidation.

Every run is a real ``python -m train`` (under torchrun, or Lightning-launched) on tiny
synthetic data. The independent expectation for distributed metrics is a single CPU
process scoring the saved weights with the plain evaluator: rows sharded over ranks and
summed states must give the same numbers, to 1e-6.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from train.building import build_with_data
from train.runs.checkpoints import load_weights
from train.runs.consolidate import consolidate
from train.evaluation import evaluate

pytestmark = pytest.mark.slow

TINY = [
    "model=gmf",
    "data.num_users=120",
    "data.num_items=80",
    "data.min_length=8",
    "data.max_length=16",
    "model.datamodule.batch_size=128",
    "eval.ks=[5,10]",
    "trainer.max_epochs=2",
]
# SASRec-XL's recipe (sampled softmax, tied output table) at toy size, every tensor
# partitioned under ZeRO-3 however small (the default keeps small ones whole).
ZERO3 = [
    "trainer=deepspeed_zero3",
    "trainer.strategy.config.zero_optimization.stage3_param_persistence_threshold=0",
    "model=sasrec_xl",
    "model.net.hidden=16",
    "model.net.num_blocks=1",
    "model.net.num_heads=1",
    "model.net.max_len=16",
    "model.task.loss.num_negatives=32",
    "model.datamodule.batch_size=16",
]
TOL = 1e-6


def _env(wandb_mode: str) -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE=wandb_mode, WANDB_SILENT="true", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "TORCHELASTIC_RUN_ID", "RECFLOW_RUN_DIR"):
        env.pop(key, None)
    return env


def train_cmd(*overrides: str, nproc: int = 1, logger: str = "none") -> list[str]:
    # --standalone: a free rendezvous port, so torchrun jobs of parallel test workers never meet
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    return [*launcher, "-m", "train", f"logger={logger}", *TINY, *overrides]


def run(
    cwd: Path, *overrides: str, nproc: int = 1, logger: str = "none", expect_ok: bool = True
) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    wandb_mode = "offline" if logger == "wandb" else "disabled"
    cmd = train_cmd(*overrides, nproc=nproc, logger=logger)
    done = subprocess.run(cmd, cwd=cwd, env=_env(wandb_mode), capture_output=True, text=True, timeout=300)
    if expect_ok and done.returncode != 0:
        raise AssertionError(f"training failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def only_run_dir(cwd: Path) -> Path:
    """The job's run directory; fails if ranks created more than one."""
    runs = [p for p in (cwd / "outputs" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run directory, got {sorted(p.name for p in runs)}"
    return runs[0]


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def split_metrics(metrics: dict[str, Any], split: str) -> dict[str, float]:
    return {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/")}


def assert_one_of_each(run_dir: Path) -> None:
    """One metrics.json, one Hydra config dump, one log, at most one W&B run: whatever the ranks."""
    names = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()]
    assert sum(n.endswith("metrics.json") for n in names) == 1, names
    assert sum(n.endswith(".hydra/config.yaml") for n in names) == 1, names
    assert [n for n in names if n.endswith(".log") and "/" not in n] == ["train.log"], names
    assert len(list(run_dir.glob("wandb/offline-run-*"))) <= 1


def single_process_scores(run_dir: Path, weights: Path) -> dict[str, dict[str, float]]:
    """Independent expectation: the run's data and model rebuilt here, scored in one process."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    data = instantiate(cfg.data)
    model = build_with_data(cfg.model.net, data)
    load_weights(model, weights)
    evaluator = instantiate(cfg.eval)
    return {split: evaluate(model, data, split, evaluator) for split in ("val", "test")}


def assert_same_scores(metrics: dict[str, Any], expected: dict[str, dict[str, float]]) -> None:
    for split, values in expected.items():
        logged = split_metrics(metrics, split)
        assert set(logged) == set(values), (split, sorted(logged), sorted(values))
        for name, value in values.items():
            assert logged[name] == pytest.approx(value, abs=TOL), f"{split}/{name}"


def test_lightning_launched_ddp_agrees_with_one_process(tmp_path: Path) -> None:
    """`python -m train trainer=ddp_cpu` (2 ranks spawned by Lightning): one run, one W&B
    run, and the metrics one process computes from the best checkpoint."""
    run(tmp_path, "trainer=ddp_cpu", "trainer.devices=2", logger="wandb")
    run_dir = only_run_dir(tmp_path)
    assert_one_of_each(run_dir)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    metrics = read_metrics(run_dir)
    best = Path(metrics["best_checkpoint"])
    assert best.is_file() and best.parent == run_dir / "checkpoints"
    assert_same_scores(metrics, single_process_scores(run_dir, best))


@pytest.fixture(scope="module")
def zero2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-epoch ZeRO-2 run under torchrun with 2 processes."""
    cwd = tmp_path_factory.mktemp("zero2")
    run(cwd, "trainer=deepspeed_zero2", nproc=2)
    return only_run_dir(cwd)


def test_torchrun_zero2_one_run_and_consolidated_weights_score_the_same(zero2: Path, tmp_path: Path) -> None:
    assert_one_of_each(zero2)
    metrics = read_metrics(zero2)
    best = Path(metrics["best_checkpoint"])
    shards = sorted(p.name for p in (best / "checkpoint").glob("*optim_states.pt"))
    assert len(shards) == 2, shards  # one optimizer partition per rank
    fp32 = consolidate(best, tmp_path / "model.pt")
    assert_same_scores(metrics, single_process_scores(zero2, fp32))


def test_resume_at_another_world_size_fails_clearly_or_goes_universal(zero2: Path, tmp_path: Path) -> None:
    """2-rank shards refuse 1 process with a message naming the conversion; converted, they resume."""
    last = tmp_path / "last.ckpt"
    shutil.copytree(zero2 / "checkpoints" / "last.ckpt", last)
    one_process = ["trainer=deepspeed_zero2", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=3"]
    done = run(tmp_path, *one_process, f"ckpt_path={last}", expect_ok=False)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "written by 2 DeepSpeed ranks" in message and "ds_to_universal" in message
    convert = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--inject_missing_state",
               "--input_folder", str(last / "checkpoint"), "--output_folder", str(last / "checkpoint_universal")]
    subprocess.run(convert, check=True, capture_output=True, env=_env("disabled"), timeout=120)
    run_dir = tmp_path / "universal"
    done = run(tmp_path, *one_process, f"ckpt_path={last}", "+trainer.strategy.config.checkpoint.load_universal=true",
               f"hydra.run.dir={run_dir}")
    assert "Restored all states from the checkpoint" in done.stdout + done.stderr
    assert read_metrics(run_dir)["epochs"] == 3


def test_torchrun_zero3_partitions_weights_and_optimizer_state(tmp_path: Path) -> None:
    """Each rank holds half of the weights and Adam state; consolidated weights score the same."""
    run(tmp_path, *ZERO3, "trainer.max_epochs=1", nproc=2)
    run_dir = only_run_dir(tmp_path)
    assert_one_of_each(run_dir)
    metrics = read_metrics(run_dir)
    best = Path(metrics["best_checkpoint"])
    fp32 = consolidate(best, tmp_path / "model.pt")
    total = sum(t.numel() for t in torch.load(fp32, weights_only=True)["state_dict"].values())
    # Each rank saved only its own partition of the fp32 weights and of Adam's m and v.
    for rank in (0, 1):
        shard = torch.load(best / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt",
                           map_location="cpu", weights_only=False)["optimizer_state_dict"]
        weights = sum(t.numel() for t in shard["fp32_flat_groups"])
        moments = sum(s["exp_avg"].numel() + s["exp_avg_sq"].numel() for s in shard["optimizer_state_dict"]["state"].values())
        assert total / 2 <= weights <= total / 2 + 64, (rank, weights, total)  # half, plus alignment padding
        print(f"rank {rank}: {weights} of {total} fp32 weights, {moments} Adam moments")
        assert moments == 2 * weights
    assert_same_scores(metrics, single_process_scores(run_dir, fp32))
