"""A DeepSpeed checkpoint folder -> one fp32 file (``recflow-consolidate``).

A ZeRO checkpoint is a directory of per-rank shards that only the same number of
DeepSpeed processes can load. Consolidating gathers the fp32 master weights into one
plain state dict (keys as in a Lightning checkpoint, ``model.`` prefix included), so
the weights load on a single CPU process with :func:`train.runs.checkpoints.load_weights`
for evaluation, inference, export or as the starting point of a new run.

DeepSpeed's own reader unpickles shards with ``weights_only=False``, i.e. runs whatever
a shard's pickle says. Here its merge code is used as it is, but every ``torch.load``
it makes is ``weights_only=True`` with only the few DeepSpeed classes a real shard
holds allowed (:data:`SHARD_GLOBALS`); anything else is refused before it runs.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from train.extras import require
from train.runs.checkpoints import write_checksum

TAG_FILE = "latest"
# Classes besides tensors that ZeRO shards pickle (found in ZeRO-2/3 checkpoints written
# by Lightning's DeepSpeed strategy): plain records and enums, safe to rebuild.
SHARD_GLOBALS = (
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class ConsolidationError(ValueError):
    """The path is not a DeepSpeed checkpoint directory that can be consolidated."""


def checkpoint_tag_dir(checkpoint_dir: str | Path) -> Path:
    """The folder holding the shards: ``<dir>/<tag>`` where ``<dir>/latest`` names the tag."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.exists():
        raise ConsolidationError(
            f"{checkpoint_dir} does not exist; pass a DeepSpeed checkpoint folder, "
            "e.g. <run>/checkpoints/last.ckpt written by a trainer=deepspeed_* run"
        )
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
    tag = tag_file.read_text().strip()
    if not tag or tag in (".", "..") or "/" in tag or "\\" in tag:
        raise ConsolidationError(f"{tag_file} names {tag!r}, not a folder inside {checkpoint_dir}; refusing it")
    tag_dir = checkpoint_dir / tag
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
    with _weights_only_loads(zero_to_fp32):
        try:
            state = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
        except ConsolidationError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # shards missing what ZeRO writes
            raise ConsolidationError(
                f"{tag_dir} is not a complete DeepSpeed ZeRO checkpoint ({type(exc).__name__}: {exc})"
            ) from None
    return {key.removeprefix("_forward_module."): value.float().contiguous() for key, value in state.items()}


@contextmanager
def _weights_only_loads(module: Any) -> Iterator[None]:
    """Within the block, ``module``'s ``torch.load`` calls are weights-only (other modules
    and ``torch`` itself are untouched)."""
    original = module.torch
    module.torch = _SafeTorch(_shard_globals())
    try:
        yield
    finally:
        module.torch = original


class _SafeTorch:
    """``torch`` as DeepSpeed's reader sees it: the same, but ``load`` reads only tensors,
    containers and :data:`SHARD_GLOBALS`."""

    def __init__(self, allowed: list[Any]) -> None:
        self._allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def load(self, f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            with torch.serialization.safe_globals(self._allowed):
                return torch.load(f, *args, **kwargs)
        except pickle.UnpicklingError as exc:
            raise ConsolidationError(f"shard {f} was refused: {_refusal(f, exc)}") from None
        except Exception as exc:  # truncated or corrupt archives raise several types
            raise ConsolidationError(f"shard {f} could not be read ({type(exc).__name__}: {exc}); is it complete?") from None


def _refusal(f: Any, exc: Exception) -> str:
    """Which objects a shard wanted to rebuild, read from its pickle without running it."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception:  # not a readable archive: fall back to torch's first line
        names = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _shard_globals()}
    unexpected = [name for name in names if name not in allowed]
    if unexpected:
        return (f"it would call or rebuild {', '.join(unexpected)}, which a DeepSpeed shard never "
                "holds; the file was crafted or altered, and nothing in it was run")
    return f"it holds objects other than tensors ({str(exc).splitlines()[0]}); nothing in it was run"


def _shard_globals() -> list[Any]:
    """The classes of :data:`SHARD_GLOBALS` this DeepSpeed version has, plus
    ``argparse.Namespace`` (DeepSpeed may store its launch arguments)."""
    found: list[Any] = [argparse.Namespace]
    for name in SHARD_GLOBALS:
        module, _, attr = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # another DeepSpeed version: not needed there
            continue
    return found


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
    write_checksum(output)
    return output
