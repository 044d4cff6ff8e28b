"""A DeepSpeed checkpoint folder -> one fp32 file (``recflow-consolidate``).

A ZeRO checkpoint is a directory of per-rank shards that only the same number of
DeepSpeed processes can load. Consolidating gathers the fp32 master weights into one
plain state dict (keys as in a Lightning checkpoint, ``model.`` prefix included), so
the weights load on a single CPU process with :func:`train.runs.checkpoints.load_weights`
for evaluation, inference, export or as the starting point of a new run.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from train.extras import require

TAG_FILE = "latest"


class ConsolidationError(ValueError):
    """The path is not a DeepSpeed checkpoint directory that can be consolidated."""


def checkpoint_tag_dir(checkpoint_dir: str | Path) -> Path:
    """The folder holding the shards: ``<dir>/<tag>`` where ``<dir>/latest`` names the tag."""
    checkpoint_dir = Path(checkpoint_dir)
    if checkpoint_dir.is_file():
        raise ConsolidationError(
            f"{checkpoint_dir} is a single file, not a DeepSpeed checkpoint directory; "
            "DDP and single-process checkpoints need no consolidation (load them directly)"
        )
    tag_file = checkpoint_dir / TAG_FILE
    if not tag_file.is_file():
        hint = ""
        inside = sorted(p.parent.name for p in checkpoint_dir.glob(f"*/{TAG_FILE}"))
        if inside:
            hint = f"; it contains checkpoints, pass one of: {', '.join(inside)}"
        elif (checkpoint_dir.parent / TAG_FILE).is_file():
            hint = f"; did you mean its parent {checkpoint_dir.parent}?"
        raise ConsolidationError(f"{checkpoint_dir} has no '{TAG_FILE}' file, so it is not a DeepSpeed checkpoint{hint}")
    tag_dir = checkpoint_dir / tag_file.read_text().strip()
    if not tag_dir.is_dir():
        raise ConsolidationError(f"{tag_file} names {tag_dir.name!r}, but {tag_dir} does not exist; is the checkpoint complete?")
    return tag_dir


def checkpoint_world_size(checkpoint_dir: str | Path) -> int:
    """Number of data-parallel ranks that wrote the checkpoint (one optimizer shard each)."""
    shards = sorted(checkpoint_tag_dir(checkpoint_dir).glob("*_optim_states.pt"))
    if not shards:
        raise ConsolidationError(f"{checkpoint_dir} holds no optimizer shards (*_optim_states.pt)")
    return len(shards)


def consolidated_state(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    """fp32 weights gathered from every rank's shard, Lightning key names."""
    zero_to_fp32 = require("deepspeed.utils.zero_to_fp32", "deepspeed", "consolidating a DeepSpeed checkpoint", "DeepSpeed")

    tag_dir = checkpoint_tag_dir(checkpoint_dir)
    state = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    return {key.removeprefix("_forward_module."): value.float().contiguous() for key, value in state.items()}


def consolidate(checkpoint_dir: str | Path, output_file: str | Path | None = None) -> Path:
    """Write ``{"state_dict": fp32 weights, "consolidated_from": ..., "world_size": ...}``.

    The file holds tensors, strings and numbers only, so ``torch.load(weights_only=True)``
    reads it. Default output: ``<checkpoint_dir>.fp32.pt`` next to the directory.
    """
    checkpoint_dir = Path(checkpoint_dir)
    output = Path(output_file) if output_file else checkpoint_dir.with_name(checkpoint_dir.name + ".fp32.pt")
    payload: dict[str, Any] = {
        "state_dict": consolidated_state(checkpoint_dir),
        "consolidated_from": str(checkpoint_dir.resolve()),
        "world_size": checkpoint_world_size(checkpoint_dir),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, output)
    return output
