"""A run's scorer as a standalone file (ONNX or torch.export), used by ``recflow-export``.

The exported graph is the model's ``score_all`` and nothing else: input internal ids,
output scores over the whole catalogue ``[B, num_items]`` (column ``i`` = internal
item ``i``). NCF-style models take ``user`` [B]; sequence models take ``history``
[B, L] (internal item ids, oldest first, left-padded with -1, ``L`` fixed to the
model's history length). The batch axis is dynamic. A JSON file next to the model
(``<out>.json``) holds the raw ids of users and items so callers can map ids and
exclude seen items themselves.

ONNX uses the TorchScript-based exporter (``dynamo=False``): it traces through the
sequence models' data-dependent padding branch, which ``torch.export`` cannot, so
``format=torch`` works for models without such branches (NCF) only.
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from data_modules.interactions import PAD
from recmodels.base import Recommender
from train.extras import require
from train.serving import RunContext, load_recommender

log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torch": ".pt2"}
PARITY_ATOL = 1e-4


class ExportError(RuntimeError):
    """The model could not be exported in the requested format."""


class UserScorer(nn.Module):
    """user ids [B] -> scores [B, I]."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, user: Tensor) -> Tensor:
        return self.model.score_all({"user": user})


class HistoryScorer(nn.Module):
    """left-padded histories [B, L] -> scores [B, I]."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, history: Tensor) -> Tensor:
        return self.model.score_all({"history": history})


def scorer(model: Recommender, ctx: RunContext) -> tuple[nn.Module, str, Tensor]:
    """(wrapper module, input name, example input) for the input the model declares
    (``Recommender.inputs``); a model that reads neither key takes user ids."""
    if ctx.uses_user and ctx.uses_history:
        raise ExportError(f"{type(model).__name__} reads both user ids and histories; export supports one input")
    if ctx.uses_history:
        return HistoryScorer(model).eval(), "history", example_histories(ctx, 2)
    users = torch.arange(min(2, ctx.data.num_users), dtype=torch.long)
    return UserScorer(model).eval(), "user", users


def example_histories(ctx: RunContext, batch: int) -> Tensor:
    """Histories whose trace is exact for every left-padded input: row 0 partly padded (the
    padded attention path, also exact without padding), the last row full length (no
    trimming)."""
    users = np.arange(max(2, min(batch, ctx.data.num_users))) % ctx.data.num_users
    history = ctx.known.padded(users, ctx.max_history)
    history[0, : max(1, ctx.max_history // 2)] = PAD
    history[0, -1] = max(history[0, -1], 0)
    history[-1] = np.arange(ctx.max_history) % ctx.data.num_items
    return torch.from_numpy(history)


@contextmanager
def traceable(model: nn.Module) -> Iterator[None]:
    """Turn off data-dependent shortcuts for the trace, restoring them afterwards.

    The transformer encoder groups rows by length on CPU (``max_groups``); a trace would
    freeze the example's grouping, so export runs it as one untrimmed group.
    """
    saved = [(m, m.max_groups) for m in model.modules() if hasattr(m, "max_groups")]
    try:
        for module, _ in saved:
            module.max_groups = 1
        yield
    finally:
        for module, value in saved:
            module.max_groups = value


def export_onnx(model: Recommender, ctx: RunContext, out: Path, opset: int = 17) -> Path:
    require("onnx", "serve", "recflow-export format=onnx")  # torch.onnx.export writes through it
    module, name, example = scorer(model, ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), traceable(model):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
        try:
            torch.onnx.export(
                module,
                (example,),
                str(out),
                input_names=[name],
                output_names=["scores"],
                dynamic_axes={name: {0: "batch"}, "scores": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:
            raise ExportError(f"ONNX export of {type(model).__name__} failed: {exc}") from exc
    return out


def export_torch(model: Recommender, ctx: RunContext, out: Path) -> Path:
    module, name, example = scorer(model, ctx)
    batch = torch.export.Dim("batch", min=1)
    example = torch.cat([example, example[:1]])  # batch 3: avoids specialising on 1 or 2
    try:
        with traceable(model):
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise ExportError(
            f"torch.export of {type(model).__name__} failed ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200]}); models that branch on their input "
            "(sequence models skip padding) cannot be exported this way: use format=onnx"
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out))
    return out


def export_meta(ctx: RunContext, name: str, fmt: str) -> dict[str, Any]:
    shape = ["batch"] if name == "user" else ["batch", ctx.max_history]
    return {
        "format": fmt,
        "model": ctx.model_name,
        "input": {"name": name, "dtype": "int64", "shape": shape, "padding": PAD if name == "history" else None},
        "output": {"name": "scores", "dtype": "float32", "shape": ["batch", ctx.data.num_items]},
        "num_users": ctx.data.num_users,
        "num_items": ctx.data.num_items,
        "item_ids": ctx.data.item_ids.tolist(),
        "user_ids": ctx.data.user_ids.tolist(),
    }


def onnx_parity(model: Recommender, ctx: RunContext, path: Path, batch: int = 8) -> float:
    """Max |onnxruntime - PyTorch| over a few real inputs (raises if above tolerance)."""
    ort = require("onnxruntime", "serve", "recflow-export check=true (ONNX parity check)")

    module, name, _ = scorer(model, ctx)
    if name == "history":
        inputs = torch.from_numpy(ctx.known.padded(np.arange(min(batch, ctx.data.num_users)), ctx.max_history))
    else:
        inputs = torch.arange(min(batch, ctx.data.num_users), dtype=torch.long)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {name: inputs.numpy()})[0]
    with torch.inference_mode():
        want = module.to("cpu")(inputs).float().numpy()
    diff = float(np.abs(got - want).max())
    if diff > PARITY_ATOL:
        raise ExportError(f"exported ONNX scores differ from PyTorch by {diff:.2e} > {PARITY_ATOL}")
    return diff


def run_export(cfg: DictConfig) -> Path:
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: use one of {sorted(FORMATS)}")
    model, ctx = load_recommender(cfg.run, cfg.get("ckpt"), "cpu")
    out = Path(cfg.out) if cfg.get("out") else ctx.run_dir / "export" / f"model{FORMATS[fmt]}"
    if fmt == "onnx":
        export_onnx(model, ctx, out, int(cfg.opset))
    else:
        export_torch(model, ctx, out)
    _, name, _ = scorer(model, ctx)
    meta_path = out.with_name(out.name + ".json")
    meta_path.write_text(json.dumps(export_meta(ctx, name, fmt)) + "\n")
    print(f"exported {ctx.model_name} ({name} -> scores) to {out}; ids in {meta_path}")
    if fmt == "onnx" and cfg.check:
        print(f"onnxruntime vs PyTorch: max |diff| = {onnx_parity(model, ctx, out):.2e}")
    return out
