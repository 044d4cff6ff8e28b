"""What every file-backed source shares: caching of its preprocessed result."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from data_modules.cache import load_or_build
from data_modules.interactions import InteractionData
from data_modules.preprocessing import PreprocessConfig

PreprocessArg = PreprocessConfig | Mapping[str, Any] | None


def cached(
    build: Callable[[], InteractionData],
    *,
    source: str,
    name: str,
    settings: Mapping[str, Any],
    preprocess: PreprocessConfig,
    files: Iterable[str | os.PathLike],
    cache: bool,
    cache_dir: str | os.PathLike | None,
    data_root: str | os.PathLike,
) -> InteractionData:
    """Build through the cache in ``cache_dir`` (default ``<data_root>/.cache``)."""
    folder = None
    if cache:
        folder = Path(cache_dir) if cache_dir else Path(data_root) / ".cache"
    key_settings = {"source": source, **settings, "preprocess": preprocess.to_dict()}
    return load_or_build(build, name=name, settings=key_settings, files=list(files), cache_dir=folder)
