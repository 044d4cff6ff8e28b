"""Run folder names: ``<date>_<time>_<model>_<data>``, readable in a listing of outputs/.

``${recflow.run_label:${model.name},${data},${hydra.overrides.task}}`` in
conf/hydra/default.yaml gives the ``<model>_<data>`` part. The data part comes from the
data config alone (Hydra names the folder before any data is read): its ``name``, else
the stem of its ``path``, else the source's name (``synthetic``), which is what the loaded
data calls itself. The resolver is cached, so every job of a multirun lands in the folder
the sweep started with, even when the sweep changes the model.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

RUN_LABEL_RESOLVER = "recflow.run_label"
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")


def folder_safe(text: str) -> str:
    """``text`` with anything a file name should not hold (``/``, ``_``, spaces) as ``-``."""
    return _UNSAFE.sub("-", text).strip("-") or "unnamed"


def _set(node: Any, key: str) -> Any:
    """``node[key]`` when present and set (``???`` and null count as unset)."""
    from omegaconf import OmegaConf

    if node is None or key not in node or OmegaConf.is_missing(node, key):
        return None
    return node[key] or None


def data_name(data: Any) -> str:
    """The data set's name from its config: ``name``, else the stem of ``path``, else the source."""
    name = _set(data, "name")
    if name is None and _set(data, "path") is not None:
        name = PurePath(str(data["path"])).stem
    if name is None:
        name = str(_set(data, "_target_") or "data").rsplit(".", 1)[-1]
    return folder_safe(str(name))


def _swept_values(overrides: Iterable[str], keys: tuple[str, ...]) -> str | None:
    """``gmf+mlp`` when a multirun sweeps one of ``keys`` (``model=gmf,mlp``), else None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        if override.key_or_group in keys and override.is_sweep_override():
            try:
                return "+".join(folder_safe(str(v)) for v in override.sweep_string_iterator())
            except Exception:  # ranges and intervals over a group: no list to spell out
                return "sweep"
    return None


def run_label(model: str, data: Any, overrides: Iterable[str] | None = None) -> str:
    """``<model>_<data>`` for the run folder; a swept model or data names every choice."""
    overrides = list(overrides or [])
    model_part = _swept_values(overrides, ("model", "model.name")) or folder_safe(str(model))
    data_part = _swept_values(overrides, ("data", "data.name", "data.path")) or data_name(data)
    return f"{model_part}_{data_part}"


def register_run_label() -> None:
    """Make ``${recflow.run_label:...}`` available before Hydra composes the config."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RUN_LABEL_RESOLVER):
        OmegaConf.register_new_resolver(RUN_LABEL_RESOLVER, run_label, use_cache=True)
