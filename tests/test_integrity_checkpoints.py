"""Checkpoints carry a sha256 sidecar checked before every load; DeepSpeed shards are
read weights-only; remote checkpoints are refused.

Payload shards create a marker file when unpickled; refusing them must leave no marker.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import open_dict
from pytorch_lightning.plugins import TorchCheckpointIO

from tests.helpers import Payload, tiny_config
from tests.serving_runs import QUICK
from train.runs.checkpoints import CheckpointError, file_sha256, load_checkpoint, sidecar_of
from train.runs.consolidate import ConsolidationError, consolidate
from train.serving import load_recommender
from train.training.checkpoint_checksums import ChecksumCheckpointIO
from train.training.config_checks import ConfigError, check_config
from train.training.run import train



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Three epochs with save_top_k=1: older best checkpoints are written and removed."""
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = tiny_config(out, "model=gmf", "eval.ks=[5,10]")
    with open_dict(cfg):
        cfg.trainer.max_epochs = 3
    train(cfg)
    return out


def flip(path: Path, count: int = 400) -> None:
    """XOR ``count`` bytes in the middle of ``path`` (the tensor data, not the zip index)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - count // 2
    for i in range(start, start + count):
        data[i] ^= 0x01
    path.write_bytes(bytes(data))


def copied(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    return target


def test_every_saved_checkpoint_has_a_matching_sidecar(run_dir: Path) -> None:
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2
    for ckpt in checkpoints:
        assert sidecar_of(ckpt).read_text().split() == [file_sha256(ckpt), ckpt.name]
    sidecars = sorted((run_dir / "checkpoints").glob("*.sha256"))
    assert [s.name.removesuffix(".sha256") for s in sidecars] == [p.name for p in checkpoints]  # none orphaned


def test_a_flipped_checkpoint_is_refused_naming_the_file(run_dir: Path, tmp_path: Path) -> None:
    run = copied(run_dir, tmp_path)
    meta = json.loads((run / "artifacts" / "artifact.json").read_text())
    weights = run / meta["weights"]
    flip(weights)
    with pytest.raises(CheckpointError, match=f"checkpoint {weights} does not match its checksum"):
        load_recommender(run)
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(weights)


def test_a_single_flipped_bit_is_caught(run_dir: Path, tmp_path: Path) -> None:
    run = copied(run_dir, tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    size = ckpt.stat().st_size
    for position in (size // 3, size // 2, 2 * size // 3):
        original = ckpt.read_bytes()
        flip_at = bytearray(original)
        flip_at[position] ^= 0x10
        ckpt.write_bytes(bytes(flip_at))
        with pytest.raises(CheckpointError, match="does not match its checksum"):
            load_checkpoint(ckpt)
        ckpt.write_bytes(original)
    assert load_checkpoint(ckpt)["state_dict"]


def test_a_checkpoint_without_sidecar_loads_with_a_warning(run_dir: Path, tmp_path: Path, caplog) -> None:
    run = copied(run_dir, tmp_path)
    for sidecar in (run / "checkpoints").glob("*.sha256"):
        sidecar.unlink()
    with caplog.at_level(logging.WARNING, logger="train.runs.checkpoints"):
        model, ctx = load_recommender(run)
    assert f"checkpoint {ctx.weights} has no" in caplog.text and "unverified" in caplog.text


def test_resuming_from_a_flipped_last_checkpoint_fails_clearly(run_dir: Path, tmp_path: Path) -> None:
    run = copied(run_dir, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    flip(last)
    cfg = tiny_config(run, "model=gmf", *QUICK)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 4
        cfg.ckpt_path = str(last)
    with pytest.raises(CheckpointError, match=f"checkpoint {last} does not match its checksum"):
        train(cfg)


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_an_unreadable_checkpoint_without_sidecar_fails_clearly(run_dir: Path, tmp_path: Path, damage: str) -> None:
    """With no sidecar to check, the load itself fails: the error names the file and the fix,
    and never repeats torch's advice to reload it with weights_only=False."""
    run = copied(run_dir, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    sidecar_of(last).unlink()
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint\n")
    cfg = tiny_config(run, "model=gmf", *QUICK)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 4
        cfg.ckpt_path = str(last)
    with pytest.raises(CheckpointError, match=f"checkpoint {last} could not be read .*pass an intact") as error:
        train(cfg)
    assert "False" not in str(error.value)
    with pytest.raises(CheckpointError, match="could not be read") as direct:
        load_checkpoint(last)
    assert "False" not in str(direct.value)


def test_resuming_from_an_intact_last_checkpoint_still_works(run_dir: Path, tmp_path: Path) -> None:
    run = copied(run_dir, tmp_path)
    cfg = tiny_config(run, "model=gmf", "eval.ks=[5,10]")
    with open_dict(cfg):
        cfg.trainer.max_epochs = 4
        cfg.ckpt_path = str(run / "checkpoints" / "last.ckpt")
    assert train(cfg)["epochs"] == 4


@pytest.mark.parametrize("url", ["https://example.invalid/last.ckpt", "http://127.0.0.1:9/x.ckpt", "s3://bucket/x.ckpt"])
def test_remote_checkpoints_are_refused(url: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    with open_dict(cfg):
        cfg.ckpt_path = url
    with pytest.raises(ConfigError, match="remote checkpoints are not loaded.*download the file yourself"):
        check_config(cfg)
    with pytest.raises(CheckpointError, match="is remote"):  # also when train() is called directly
        ChecksumCheckpointIO(TorchCheckpointIO()).load_checkpoint(url)


# --- DeepSpeed shards ----------------------------------------------------------------------


def fake_zero_folder(root: Path, model_states: Any, optim_states: Any) -> Path:
    ckpt = root / "last.ckpt"
    (ckpt / "checkpoint").mkdir(parents=True)
    (ckpt / "latest").write_text("checkpoint")
    torch.save(model_states, ckpt / "checkpoint" / "mp_rank_00_model_states.pt")
    torch.save(optim_states, ckpt / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return ckpt


MODEL_STATES = {"buffer_names": [], "module": {}, "param_shapes": [{}], "shared_params": {}, "ds_version": "0"}


@pytest.mark.parametrize("where", ["model_states", "optim_states"])
def test_a_crafted_shard_is_refused_before_its_payload_runs(tmp_path: Path, where: str) -> None:
    pytest.importorskip("deepspeed")
    marker = tmp_path / "PAYLOAD_RAN"
    bad = {"payload": Payload(marker)}
    ckpt = fake_zero_folder(tmp_path, bad if where == "model_states" else MODEL_STATES,
                            {"optimizer_state_dict": bad} if where == "optim_states" else {})
    shard = next((ckpt / "checkpoint").glob(f"*{where}.pt"))
    with pytest.raises(ConsolidationError, match=f"shard {shard} was refused: it would call or rebuild .*pathlib"):
        consolidate(ckpt, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    torch.load(shard, weights_only=False)  # the payload is live: unpickled unchecked, it runs
    assert marker.exists()


def test_a_tag_outside_the_checkpoint_folder_is_refused(tmp_path: Path) -> None:
    ckpt = fake_zero_folder(tmp_path / "inner", MODEL_STATES, {})
    (ckpt / "latest").write_text("../../elsewhere")
    with pytest.raises(ConsolidationError, match="not a folder inside"):
        consolidate(ckpt)


@pytest.mark.slow
def test_real_zero2_shards_consolidate_weights_only_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    """A ZeRO-2 checkpoint written by training consolidates under weights_only=True with
    only the allowlisted DeepSpeed classes; the same shards with a payload do not."""
    pytest.importorskip("deepspeed")
    run = tmp_path / "ds"
    overrides = ["trainer=deepspeed_zero2", "trainer.devices=1", "trainer.accelerator=cpu", "logger=none",
                 "trainer.max_epochs=1", "data.num_users=60", "data.num_items=60", "data.min_length=5",
                 "data.max_length=12", f"hydra.run.dir={run}"]
    proc = subprocess.run([sys.executable, "-m", "train", *overrides], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    out = consolidate(last, tmp_path / "last.fp32.pt")
    assert sidecar_of(out).read_text().split()[0] == file_sha256(out)
    assert torch.load(out, weights_only=True)["state_dict"]

    tampered = tmp_path / "tampered.ckpt"
    shutil.copytree(last, tampered)
    marker = tmp_path / "PAYLOAD_RAN"
    shard = next((tampered / "checkpoint").glob("*model_states.pt"))
    state = torch.load(shard, weights_only=False)
    state["payload"] = Payload(marker)
    torch.save(state, shard)
    cli = subprocess.run([sys.executable, "-m", "train.cli.consolidate", str(tampered), str(tmp_path / "t.pt")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode != 0 and "was refused" in cli.stderr
    assert not marker.exists() and not (tmp_path / "t.pt").exists()


def test_shards_without_what_zero_writes_fail_clearly(tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    ckpt = fake_zero_folder(tmp_path, MODEL_STATES, {"nothing": torch.zeros(1)})
    with pytest.raises(ConsolidationError, match="not a complete DeepSpeed ZeRO checkpoint"):
        consolidate(ckpt)
