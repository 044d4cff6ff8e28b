"""Which classes a run folder may make this code build.

A run's ``artifacts/config.yaml`` names classes through ``_target_``, and loading a run
(serve, infer, export, profile, evaluate, ``init_from``) builds ``model.net`` and the
``eval`` node from it. A folder from someone else is data: a ``_target_`` such as
``pandas.read_pickle`` would run its payload when built. So before anything is imported
or called, every ``_target_`` (at any depth) of those parts must be one of the project's
own: the concrete :class:`recmodels.base.Recommender` subclasses and the targets that
the shipped ``conf/model``/``conf/eval`` files use. Interpolations are resolved once
here, so what is checked is exactly what gets built.
"""
from __future__ import annotations

import copy
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

import recmodels
from recmodels.base import Recommender

# config key of a part that loading builds -> the shipped config group it comes from
CHECKED_PARTS: dict[str, str] = {"model.net": "model", "eval": "eval"}
_PACKAGE = Path(__file__).resolve().parents[1]


class UntrustedConfigError(ValueError):
    """A run's config names something that loading a run must never build."""


def checked_run_config(cfg: DictConfig, source: str | Path) -> DictConfig:
    """``cfg`` with each checked part resolved and every ``_target_`` in it allowed.

    Raises :class:`UntrustedConfigError` naming the target and ``source`` otherwise.
    """
    if not isinstance(cfg, DictConfig) or not isinstance(_part(cfg, "model.net", source), DictConfig):
        raise UntrustedConfigError(f"{source} has no model.net section; it is not a run config written by training")
    checked = copy.deepcopy(cfg)
    for key, group in CHECKED_PARTS.items():
        node = _part(cfg, key, source)
        if node is None:
            continue
        plain = _resolved(node, key, source)
        allowed = allowed_targets(group)
        for where, target in _targets(plain, key):
            if target not in allowed:
                raise UntrustedConfigError(
                    f"{source}: {where}._target_ is {target!r}, which is not one of recflow's own "
                    f"{group} classes; a run folder may only name these: {', '.join(sorted(allowed))}"
                )
        with open_dict(checked):
            OmegaConf.update(checked, key, OmegaConf.create(plain), merge=False)
    return checked


def allowed_targets(group: str) -> frozenset[str]:
    """The ``_target_`` strings a run folder may use in ``group`` (``model`` or ``eval``)."""
    shipped = _shipped_targets(group)
    return shipped | _recommender_names() if group == "model" else shipped


def _part(cfg: DictConfig, key: str, source: str | Path) -> Any:
    try:
        return OmegaConf.select(cfg, key)
    except Exception as exc:  # an interpolation that does not resolve
        raise UntrustedConfigError(f"{source}: {key} could not be resolved ({type(exc).__name__}: {exc})") from None


def _resolved(node: Any, key: str, source: str | Path) -> Any:
    """Plain containers with every interpolation resolved; a value that would be read
    as an interpolation again (e.g. from an escaped ``\\${...}``) is refused."""
    if not isinstance(node, DictConfig):
        raise UntrustedConfigError(f"{source}: {key} must be a mapping, got {type(node).__name__}")
    try:
        plain = OmegaConf.to_container(node, resolve=True)
    except Exception as exc:  # omegaconf raises several types for bad interpolations
        raise UntrustedConfigError(f"{source}: {key} could not be resolved ({type(exc).__name__}: {exc})") from None
    for where, value in _strings(plain, key):
        if "${" in value:
            raise UntrustedConfigError(f"{source}: {where} resolves to {value!r}, an interpolation; refusing it")
    return plain


def _targets(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(path, target) of every mapping with a ``_target_`` key, at any depth."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, str(node["_target_"])
        for key, value in node.items():
            yield from _targets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _targets(value, f"{where}[{index}]")


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{where}[{index}]")


@functools.cache
def _recommender_names() -> frozenset[str]:
    """Import paths of the concrete, public Recommender subclasses in ``recmodels``
    (where each is defined, and ``recmodels.<Name>`` if the package re-exports it)."""
    for module in pkgutil.iter_modules(recmodels.__path__):
        importlib.import_module(f"recmodels.{module.name}")  # subclasses exist once imported
    classes = {cls for cls in _subclasses(Recommender) if not inspect.isabstract(cls) and not cls.__name__.startswith("_")}
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in classes if cls.__module__.startswith("recmodels.")}
    names.update(f"recmodels.{name}" for name, value in vars(recmodels).items() if isinstance(value, type) and value in classes)
    return frozenset(names)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


@functools.cache
def _shipped_targets(group: str) -> frozenset[str]:
    """Every ``_target_`` in the shipped ``conf/<group>/*.yaml`` (for models: under ``net``)."""
    folder = _config_dir() / group
    found: set[str] = set()
    for path in sorted(folder.glob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        if group == "model":
            node = (node.get("net") or {}) if isinstance(node, dict) else {}
        found.update(target for _, target in _targets(node, group))
    return frozenset(found)


def _config_dir() -> Path:
    """The shipped config tree: ``train/conf`` when installed, ``conf/`` in a checkout."""
    for candidate in (_PACKAGE / "conf", _PACKAGE.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"recflow's configs are missing from {_PACKAGE / 'conf'} and {_PACKAGE.parent / 'conf'}")
