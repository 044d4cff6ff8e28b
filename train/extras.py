"""Optional dependencies, imported only by the features that need them.

A plain ``pip install recflow`` trains models; DeepSpeed, the Optuna sweeper, the HTTP
service, ONNX export and plots come with extras (see pyproject.toml). Importing them
through :func:`require` turns a bare ``No module named ...`` into a message that says
which feature needs the package and which extra installs it.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from types import ModuleType

SWEEPER_MODULE = "hydra_plugins.hydra_optuna_sweeper"


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra to install."""


def install_hint(feature: str, package: str, extra: str) -> str:
    """``"<feature> needs <package>: pip install 'recflow[<extra>]'"``."""
    return f"{feature} needs {package}: pip install 'recflow[{extra}]'"


def require(module: str, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Only a missing ``module`` itself is translated: an installed package that fails to
    import one of its own dependencies keeps its original error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        hint = install_hint(feature, package or module.split(".")[0], extra)
        raise MissingExtraError(hint, name=exc.name) from exc


def check_deepspeed_installed(cfg: Mapping) -> None:
    """A DeepSpeed strategy without DeepSpeed: fail before data and model are built."""
    strategy = (cfg.get("trainer") or {}).get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, Mapping) else str(strategy or "")
    if "deepspeed" in target.lower() and find_spec("deepspeed") is None:
        feature = f"trainer={_choice('trainer') or 'deepspeed_*'}"
        raise MissingExtraError(install_hint(feature, "DeepSpeed", "deepspeed"), name="deepspeed")


def _choice(group: str) -> str | None:
    """The config file chosen for ``group`` in the running Hydra job, if any."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def check_sweeper_installed(overrides: Sequence[str]) -> None:
    """Fail before Hydra composes the config: without the plugin, Hydra reports only a
    missing ``hydra/sweeper/optuna`` config."""
    searches = [arg for arg in overrides if _is_search(arg)]
    if searches and not _sweeper_found():
        raise SystemExit(f"error: {install_hint(searches[0], 'the Optuna sweeper', 'search')}")


def _is_search(override: str) -> bool:
    key, _, value = override.lstrip("+~").partition("=")
    return key == "hparams_search" and value not in ("", "null")


def _sweeper_found() -> bool:
    """Whether Hydra's Optuna sweeper plugin is importable (``hydra_plugins`` is a namespace)."""
    try:
        return find_spec(SWEEPER_MODULE) is not None
    except ModuleNotFoundError:
        return False
