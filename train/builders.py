"""Turn config nodes into objects, injecting what only the data can tell.

Configs name classes through ``_target_``; sizes such as ``num_users``/``num_items``
(and side features) are known only once the data is loaded, so they are passed here
to whichever constructor asks for them by name.
"""
from __future__ import annotations

import inspect
from typing import Any

import hydra
from omegaconf import DictConfig

from data_modules.interactions import InteractionData


def data_facts(data: InteractionData) -> dict[str, Any]:
    """Everything a model constructor may ask for by parameter name."""
    return {
        "num_users": data.num_users,
        "num_items": data.num_items,
        "item_features": data.item_features,
        "user_features": data.user_features,
    }


def _accepted(target: Any, facts: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return facts
    return {name: value for name, value in facts.items() if name in params}


def instantiate_with(node: DictConfig, **runtime: Any) -> Any:
    """Instantiate ``node`` with runtime objects (data, modules) that a config cannot hold.

    Hydra merges keyword arguments into the config, which fails for arbitrary objects,
    so the node is built as a partial and the objects are passed to the call.
    """
    return hydra.utils.instantiate(node, _partial_=True)(**runtime)


def build_with_data(node: DictConfig, data: InteractionData, **extra: Any) -> Any:
    """Instantiate ``node`` passing the data facts its target accepts, plus ``extra``."""
    target = hydra.utils.get_object(node._target_)
    kwargs = {k: v for k, v in _accepted(target, data_facts(data)).items() if k not in node}
    return instantiate_with(node, **kwargs, **extra)
