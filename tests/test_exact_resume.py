"""A run killed with SIGKILL at any point and resumed (``resume=RUN_DIR``) ends with the
metrics.json of a run that was never interrupted: every val/test metric, the number of
epochs and the best epoch, bit for bit.

Each model is killed in turn mid-epoch, during validation, while
``last.ckpt`` is half written, right after ``last.ckpt`` was written and after early
stopping ended the fit (``tests/kill_points.py``); every kill is followed by a resume
that the next kill interrupts again. The uninterrupted reference is a separate
``python -m train`` process; the interrupted runs are children forked from a process
that has already imported the CLI (a real process each, killed for real, without paying
the imports seven times). 2-process DDP and ZeRO-2 jobs under torchrun lose the launcher
and both ranks at once, mid-epoch.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.kill_points import KILL_AT, KILL_GROUP, PRELOAD, run_cli
from train.training import atomic_checkpoints
from train.training.atomic_checkpoints import AtomicCheckpointIO, part_path, publish_folder
from train.training.random_state import capture, restore

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "logger=none",
    "data.num_users=120",
    "data.num_items=60",
    "data.min_length=8",
    "data.max_length=16",
    "eval.ks=[10]",
    "num_threads=1",
    "seed=7",
    "callbacks.plots=null",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=4",
    # Early stopping ends every run after epoch 2 (no later epoch beats the first by 1.0).
    "callbacks.early_stopping.patience=2",
    "+callbacks.early_stopping.min_delta=1.0",
    "+callbacks.killer._target_=tests.kill_points.KillAt",
]
SEQUENCE = ["model.net.hidden=16", "model.net.num_blocks=1", "model.net.max_len=16", "model.datamodule.batch_size=32"]
MODELS = {
    "sasrec": ["model=sasrec", *SEQUENCE],  # dropout 0.2
    "bert4rec": ["model=bert4rec", *SEQUENCE, "model.net.num_heads=1"],  # dropout 0.1, random cloze masks
    # NeuMF has no dropout layer: its randomness is the negatives drawn per batch.
    "neumf": ["model=neumf", "model.net.mf_dim=8", "model.net.mlp_embed_dim=16", "model.net.layers=[16,8]",
              "model.datamodule.batch_size=256"],
}
# In the order one run meets them; each resume is killed at the next point.
KILL_POINTS = ["train_batch:1:1", "validation:1", "writing_last:1", "after_last:1", "after_fit"]
SIGKILLED = -signal.SIGKILL


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="disabled", WANDB_SILENT="true", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "TORCHELASTIC_RUN_ID", "RECFLOW_RUN_DIR", KILL_AT,
                KILL_GROUP):
        env.pop(key, None)
    return {**env, **extra}


def comparable(run_dir: Path) -> dict[str, Any]:
    """metrics.json without wall-clock time, the best checkpoint by file name."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")
    metrics["best_checkpoint"] = Path(metrics["best_checkpoint"]).name
    return metrics


def checkpoint_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def forked() -> multiprocessing.context.BaseContext:
    """Children forked from a server that imported the CLI once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def fork_cli(context: Any, cwd: Path, *argv: str, kill_at: str = "") -> int:
    """``recflow-train *argv`` in a forked child; its exit code (``-9`` when killed)."""
    env = child_env(**({KILL_AT: kill_at} if kill_at else {}))
    child = context.Process(target=run_cli, args=(list(argv), str(cwd), env, str(cwd / "child.log")))
    child.start()
    child.join(timeout=300)
    return child.exitcode


def reference_run(cwd: Path, run_dir: Path, overrides: list[str]) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "train", *overrides, f"hydra.run.dir={run_dir}"], cwd=cwd,
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_killed_anywhere_and_resumed_equals_uninterrupted(model: str, tmp_path: Path, forked: Any) -> None:
    overrides = [*TINY, *MODELS[model]]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference_run(tmp_path, straight, overrides)
    expected = comparable(straight)
    assert expected["epochs"] == 3  # early stopping ended it before max_epochs

    log = tmp_path / "child.log"
    args = [*overrides, f"hydra.run.dir={killed}"]
    for point in KILL_POINTS:
        code = fork_cli(forked, tmp_path, *args, kill_at=point)
        assert code == SIGKILLED, f"not killed at {point} (exit code {code}):\n{log.read_text()[-4000:]}"
        if point.startswith("writing_last"):  # half of epoch 1 on disk, epoch 0's last.ckpt untouched
            last = killed / "checkpoints" / "last.ckpt"
            assert part_path(last).is_file()
            assert torch.load(last, weights_only=True)["epoch"] == 0
        args = [f"resume={killed}"]
    code = fork_cli(forked, tmp_path, *args)
    assert code == 0, log.read_text()[-4000:]
    assert comparable(killed) == expected
    assert checkpoint_files(killed) == checkpoint_files(straight)  # no half-written or stray files


# -- torchrun, 2 processes ----------------------------------------------------------------
DISTRIBUTED = [*TINY, *MODELS["sasrec"], "trainer.accelerator=cpu", "trainer.max_epochs=2"]


def torchrun(cwd: Path, *overrides: str, kill_at: str = "") -> subprocess.CompletedProcess:
    # --standalone: a free rendezvous port, so torchrun jobs of parallel test workers never meet
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train", *overrides]
    env = child_env(**({KILL_AT: kill_at, KILL_GROUP: "1"} if kill_at else {}))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_zero2"])
def test_torchrun_job_killed_mid_epoch_resumes_exactly(strategy: str, tmp_path: Path) -> None:
    if strategy.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    overrides = [*DISTRIBUTED, f"trainer={strategy}"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = torchrun(tmp_path, *overrides, f"hydra.run.dir={straight}")
    assert done.returncode == 0, done.stderr[-4000:]
    done = torchrun(tmp_path, *overrides, f"hydra.run.dir={killed}", kill_at="train_batch:1:1")
    assert done.returncode == SIGKILLED, (done.returncode, done.stderr[-4000:])
    assert not (killed / "metrics.json").exists()
    done = torchrun(tmp_path, f"resume={killed}")
    assert done.returncode == 0, done.stderr[-4000:]
    assert comparable(killed) == comparable(straight)


# -- the pieces, in process -----------------------------------------------------------------
def draws() -> tuple[list[float], list[float], list[float]]:
    import random

    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    torch.save({"ranks": [capture()]}, tmp_path / "state.pt")
    expected = draws()
    draws()  # move every generator on
    restore(torch.load(tmp_path / "state.pt", weights_only=True)["ranks"][0])
    assert draws() == expected


def test_a_save_that_dies_half_way_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, io_plugin = tmp_path / "last.ckpt", AtomicCheckpointIO()
    io_plugin.save_checkpoint({"epoch": 1}, target)

    def dies_half_way(obj: Any, handle: Any) -> None:
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for the kill

    real_save = torch.save
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io_plugin.save_checkpoint({"epoch": 2}, target)
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    monkeypatch.setattr(torch, "save", real_save)
    io_plugin.save_checkpoint({"epoch": 3}, target)  # the leftover .part is simply overwritten
    assert torch.load(target, weights_only=True) == {"epoch": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.parametrize("atomic_swap", [True, False])
def test_a_checkpoint_folder_is_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic_swap: bool) -> None:
    """DeepSpeed's folders: written as <folder>.part, then swapped in (renameat2, or two renames)."""
    if not atomic_swap:
        monkeypatch.setattr(atomic_checkpoints, "exchange", lambda first, second: False)
    target = tmp_path / "last.ckpt"
    for version in ("old", "new"):
        part = part_path(target)
        (part / "checkpoint").mkdir(parents=True)
        (part / "checkpoint" / "shard.pt").write_text(version)
        publish_folder(part, target)
        assert (target / "checkpoint" / "shard.pt").read_text() == version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
