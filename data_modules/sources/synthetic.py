"""The default data source: generated data (see :mod:`data_modules.synthetic_generator`)."""
from __future__ import annotations

import inspect
from typing import Any

from data_modules.interactions import InteractionData
from data_modules.sources._common import Loader, PreprocessArg
from data_modules.synthetic_generator import generate

# The seed the generator uses when none is given, recorded in the report.
DEFAULT_SEED = inspect.signature(generate).parameters["seed"].default


def synthetic(
    name: str = "synthetic",
    preprocess: PreprocessArg = None,
    progress: bool | None = None,
    **settings: Any,
) -> InteractionData:
    """Generate (``settings``: the arguments of :func:`generate`) and preprocess
    (leave-one-out by default); never cached, it is fast."""
    tables = generate(**settings)
    report = {"generator": "synthetic", "seed": settings.get("seed", DEFAULT_SEED), "rows": len(tables.raw)}
    load = Loader.of(name, {"preprocess": preprocess, "progress": progress})
    return load.preprocess(tables.raw, report, tables.item_features, tables.user_features)
