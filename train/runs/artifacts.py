"""What a run saves besides weights, so a model can be rebuilt from the run directory alone.

Training data may come from a download, a cache folder or a file that later changes;
inference, export, serving and profiles must not depend on any of that. At the end of
training the run directory gets an ``artifacts/`` folder:

- ``config.yaml``: the resolved Hydra config (the model is rebuilt from ``model.net``
  through the same builder as in training);
- ``data/``: the preprocessed :class:`InteractionData` (raw<->internal id maps, every
  interaction with its timestamp and split, i.e. each user's history and known items,
  item/user features), in the data cache's layout;
- ``artifact.json``: format version, model name, data sizes and the weights file,
  relative to the run directory.

Weights stay where training wrote them (the best Lightning checkpoint). A DeepSpeed
checkpoint folder is consolidated once (:mod:`train.runs.consolidate`) into
``artifacts/weights_fp32.pt``; a run without any checkpoint stores the model's state
dict there instead.

A run folder may come from someone else, so loading treats it as data: the config may
name only recflow's own classes (:mod:`train.runs.targets`, checked before anything is
built), the data files must match the checksums in ``data/meta.json`` and the weights
their ``.sha256`` sidecar.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from data_modules import cache
from data_modules.interactions import InteractionData
from data_modules.paths import expand_path
from train.runs.checkpoints import CheckpointError, write_checksum
from train.runs.targets import checked_run_config

log = logging.getLogger(__name__)

ARTIFACT_DIR = "artifacts"
FORMAT_VERSION = 1
META_FILE = "artifact.json"
CONFIG_FILE = "config.yaml"
DATA_DIR = "data"
FP32_WEIGHTS = "weights_fp32.pt"


class ArtifactError(ValueError):
    """A run directory lacks artifacts or holds ones this version cannot read."""


@dataclass
class RunArtifacts:
    """Everything needed to rebuild and use a trained model."""

    run_dir: Path
    cfg: DictConfig
    data: InteractionData
    meta: dict[str, Any]
    weights: Path


# --- saving ------------------------------------------------------------------------------


def save_run_artifacts(
    output_dir: str | Path,
    cfg: DictConfig,
    data: InteractionData,
    best_ckpt: str | Path | None,
    model: nn.Module | None = None,
) -> Path:
    """Write ``<output_dir>/artifacts`` (call once, after testing, on rank zero only).

    ``best_ckpt`` is the checkpoint to serve (``None``: ``checkpoints/last.ckpt`` if it
    exists, else ``model``'s current state dict is stored).
    """
    run_dir = Path(output_dir).resolve()
    target = run_dir / ARTIFACT_DIR
    target.mkdir(parents=True, exist_ok=True)
    (target / CONFIG_FILE).write_text(_config_yaml(cfg))
    cache.save(data, target / DATA_DIR)
    weights = _weights_file(run_dir, target, best_ckpt, model)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": str(cfg.get("model", {}).get("name", "")),
        "model_target": str(cfg.model.net._target_),
        "data": data.name,
        "num_users": data.num_users,
        "num_items": data.num_items,
        "num_interactions": len(data.interactions),
        "weights": _relative(weights, run_dir),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (target / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("run artifacts written to %s (weights: %s)", target, meta["weights"])
    return target


def _config_yaml(cfg: DictConfig) -> str:
    """Resolved config; interpolations that cannot be resolved outside the run stay as text."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as exc:  # e.g. ${hydra:...} outside a Hydra job
        log.warning("config could not be fully resolved (%s); saving it unresolved", exc)
        return OmegaConf.to_yaml(cfg)


def _weights_file(run_dir: Path, target: Path, best: str | Path | None, model: nn.Module | None) -> Path:
    if best:
        best = Path(best).resolve()
        if best.is_dir():  # DeepSpeed: a folder of shards, consolidated once here
            return _consolidate_deepspeed(best, target / FP32_WEIGHTS)
        return best
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    if model is None:
        raise ArtifactError(
            "no checkpoint was saved and no model was given; pass model= to save_run_artifacts "
            "or enable the model_checkpoint callback"
        )
    torch.save(model.state_dict(), target / FP32_WEIGHTS)
    write_checksum(target / FP32_WEIGHTS)
    return target / FP32_WEIGHTS


def _consolidate_deepspeed(folder: Path, out: Path) -> Path:
    from train.runs.consolidate import consolidate

    return consolidate(folder, out)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --- loading -----------------------------------------------------------------------------


def find_run_dir(path: str | Path) -> Path:
    """The run directory of ``path``: the run dir itself, its artifacts/ or a checkpoint in it."""
    path = expand_path(path).resolve()
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; pass a run directory (the folder holding metrics.json)")
    for candidate in [path, *path.parents][:4]:
        if (candidate / ARTIFACT_DIR / META_FILE).is_file():
            return candidate
    raise ArtifactError(
        f"no {ARTIFACT_DIR}/{META_FILE} in {path} or its parent folders; it is written at the end "
        "of `python -m train`. Runs from before it existed must be trained again, or call "
        "train.runs.artifacts.save_run_artifacts(run_dir, cfg, data, ckpt) once by hand"
    )


def load_run_artifacts(path: str | Path, ckpt: str | Path | None = None) -> RunArtifacts:
    """Read a run's artifacts; ``ckpt`` (or ``path`` itself, if a file) overrides the weights.

    ``~`` and ``$VAR`` in ``path``/``ckpt`` are expanded (``run=``, ``ckpt=``, ``init_from=``)."""
    path = expand_path(path)
    ckpt = expand_path(ckpt) if ckpt else None
    run_dir = find_run_dir(path)
    folder = run_dir / ARTIFACT_DIR
    meta = _read_meta(folder / META_FILE)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{folder / META_FILE} has format version {version}, this code reads {FORMAT_VERSION}; "
            "use the recflow version that trained the run"
        )
    cfg = checked_run_config(OmegaConf.load(folder / CONFIG_FILE), folder / CONFIG_FILE)  # before building
    data = _load_data(folder / DATA_DIR)
    given = Path(path).resolve()
    if ckpt is None and given not in (run_dir, folder):  # a checkpoint file or DeepSpeed folder
        ckpt = given
    weights = Path(ckpt) if ckpt is not None else _absolute(meta["weights"], run_dir)
    return RunArtifacts(run_dir=run_dir, cfg=cfg, data=data, meta=meta, weights=_weights_file_of(weights))


def _read_meta(path: Path) -> dict[str, Any]:
    """``artifact.json``; damaged bytes are an :class:`ArtifactError` naming the file."""
    try:
        return cache.read_manifest(path)
    except cache.CacheIntegrityError as exc:
        raise ArtifactError(f"{exc}; restore the run folder or train again") from None


def _load_data(folder: Path) -> InteractionData:
    """The run's data; an altered file is an error, as there is no source to rebuild it from."""
    try:
        return cache.load(folder)
    except cache.CacheIntegrityError as exc:
        raise ArtifactError(f"{exc}. The run folder was altered or damaged; restore it or train again") from None


def _absolute(path: str, run_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_dir / p


def _weights_file_of(weights: Path) -> Path:
    """The file to load: a DeepSpeed folder stands for its consolidated ``<folder>.fp32.pt``."""
    if weights.is_dir():
        consolidated = weights.with_name(weights.name + ".fp32.pt")
        if consolidated.is_file():
            return consolidated
        raise CheckpointError(
            f"{weights} is a DeepSpeed checkpoint folder; consolidate it once with "
            f"`recflow-consolidate {weights}` (writes {consolidated.name} next to it)"
        )
    if not weights.is_file():
        raise CheckpointError(
            f"weights file {weights} does not exist; was the run directory moved without its "
            "checkpoints/? Pass ckpt=PATH to name the weights explicitly"
        )
    return weights
