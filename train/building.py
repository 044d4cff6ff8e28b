"""Turn config nodes into objects, injecting what only the data can tell.

Configs name classes through ``_target_``; sizes such as ``num_users``/``num_items``
(and side features) are known only once the data is loaded, so they are passed here
to whichever constructor asks for them by name.

Side features are opt-in per model config: when a ``model.net`` node has
``use_features`` (``all``, ``none`` or a list of columns; optional ``feature_kinds`` and
``item_text_embeddings``), those keys are taken out of the node, the data's feature
tables are encoded into numpy arrays (:func:`data_modules.features.encode_features`),
turned into the model side's tensors (:func:`feature_tensors`) and passed as
``item_features``/``user_features`` to a constructor with those parameters. Models never
receive DataFrames or paths.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from data_modules.feature_arrays import FeatureArrays
from data_modules.features import encode_features
from data_modules.interactions import InteractionData
from recmodels.feature_tensors import FeatureTensors

log = logging.getLogger(__name__)
# model.net keys read here, never passed to the model (see the module docstring).
FEATURE_KEYS = ("use_features", "feature_kinds", "item_text_embeddings")
FEATURE_PARAMS = ("item_features", "user_features")


def data_facts(data: InteractionData) -> dict[str, Callable[[], Any]]:
    """Everything a constructor (model, task) may ask for by parameter name, features
    aside; each is computed only for a constructor that asks (popularity counts rows)."""
    return {
        "num_users": lambda: data.num_users,
        "num_items": lambda: data.num_items,
        "item_popularity": data.item_popularity,
    }


def feature_facts(node: DictConfig, target: Any, data: InteractionData) -> tuple[DictConfig, dict[str, Any]]:
    """(``node`` without the feature keys, encoded features for the constructor)."""
    settings = {key: node[key] for key in FEATURE_KEYS if key in node}
    if not settings:
        return node, {}
    if "use_features" not in settings:
        raise ValueError(f"model.net sets {sorted(settings)} but not use_features; add use_features: all")
    node = node.copy()
    with open_dict(node):
        for key in settings:
            node.pop(key)
    wanted = [p for p in FEATURE_PARAMS if p in _parameters(target)]
    if not wanted:
        raise ValueError(
            f"model.net.use_features is set but {node._target_} takes no item_features/user_features; "
            "remove use_features or pick a feature-aware model (e.g. model=neumf_features)"
        )
    kinds = settings.get("feature_kinds")
    items, users, _ = encode_features(
        data,
        use=settings["use_features"],
        kinds=dict(kinds) if kinds else None,
        item_text_embeddings=settings.get("item_text_embeddings"),
        items="item_features" in wanted,
        users="user_features" in wanted,
    )
    encoded = {"item_features": feature_tensors(items), "user_features": feature_tensors(users)}
    if all(encoded[name] is None for name in wanted):
        log.warning("model.net.use_features=%s: no usable side features in %s; the model uses ids only",
                    settings["use_features"], data.name)
    return node, {name: encoded[name] for name in wanted}


def feature_tensors(arrays: FeatureArrays | None) -> FeatureTensors | None:
    """The model side's form of encoded features: the data layer stays free of torch."""
    if arrays is None:
        return None
    return FeatureTensors.from_arrays(
        arrays.num_rows, arrays.categorical, arrays.cardinalities, arrays.multi_valued, arrays.numeric
    )


def _parameters(target: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def _accepted(target: Any, facts: dict[str, Any]) -> dict[str, Any]:
    params = _parameters(target)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return facts
    return {name: value for name, value in facts.items() if name in params}


def instantiate_with(node: DictConfig, **runtime: Any) -> Any:
    """Instantiate ``node`` with runtime objects (data, modules) that a config cannot hold.

    Hydra merges keyword arguments into the config, which fails for arbitrary objects,
    so the node is built as a partial and the objects are passed to the call.
    """
    return hydra.utils.instantiate(node, _partial_=True)(**runtime)


def build_with_data(
    node: DictConfig, data: InteractionData, offered: dict[str, Any] | None = None, **extra: Any
) -> Any:
    """Instantiate ``node`` passing the data facts its target accepts, the ``offered``
    values it accepts (e.g. the run's ``seed``), plus ``extra`` (always passed)."""
    target = hydra.utils.get_object(node._target_)
    node, features = feature_facts(node, target, data)
    facts = {**data_facts(data), **{name: (lambda value=value: value) for name, value in (offered or {}).items()}}
    kwargs = {k: fact() for k, fact in _accepted(target, facts).items() if k not in node}
    return instantiate_with(node, **kwargs, **features, **extra)
