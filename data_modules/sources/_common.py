"""What every source shares: its options, the preprocess call and the cache.

A reader only knows its file format: it turns files into a raw interaction table, side
features by raw id and a read report. Filtering, dense ids, the split and the on-disk
cache are the same for every source, so they are set up and run here.
"""
from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypedDict

import pandas as pd

from data_modules.cache import load_or_build
from data_modules.interactions import InteractionData
from data_modules.paths import expand_path
from data_modules.preprocessing import PreprocessConfig, preprocess, require_eval_rows

PreprocessArg = PreprocessConfig | Mapping[str, Any] | None
# Every source option that names a file or folder, also inside ``**options``.
PATH_OPTIONS = frozenset({"path", "root", "cache_dir", "item_features_path", "user_features_path"})


def expands_paths(source: Callable[..., InteractionData]) -> Callable[..., InteractionData]:
    """``source`` with ``~`` and ``$VAR`` expanded in every path option (:data:`PATH_OPTIONS`).

    One wrapper for all sources, so no path reaches ``Path``, the cache folder or a
    feature reader unexpanded (which would look for, or create, a folder named ``~``).
    """
    signature = inspect.signature(source)

    @functools.wraps(source)
    def wrapper(*args: Any, **kwargs: Any) -> InteractionData:
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = _expanded(value)
            elif name in PATH_OPTIONS and value:
                bound.arguments[name] = expand_path(value)
        return source(*bound.args, **bound.kwargs)

    return wrapper


def _expanded(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: expand_path(v) if k in PATH_OPTIONS and v else v for k, v in options.items()}


class SourceOptions(TypedDict, total=False):
    """Keyword options of every file source (top-level keys of ``conf/data/*.yaml``).

    ``preprocess``: :class:`PreprocessConfig` options; ``max_bad_fraction``: the share of
    malformed lines skipped (and reported) before a file is refused; ``cache``/``cache_dir``:
    keep the preprocessed result as memory-mapped arrays (default folder: ``<data root>/.cache``);
    ``progress``: progress bars (None: only for big inputs).
    """

    preprocess: PreprocessArg
    max_bad_fraction: float
    cache: bool
    cache_dir: str | os.PathLike | None
    progress: bool | None


@dataclass(frozen=True)
class Loader:
    """One source's resolved options: preprocesses its tables and caches the result."""

    name: str
    config: PreprocessConfig
    max_bad_fraction: float = 0.01
    cache: bool = True
    cache_dir: str | os.PathLike | None = None
    progress: bool | None = None

    @classmethod
    def of(cls, name: str, options: Mapping[str, Any], **fixed: Any) -> Loader:
        """Resolve ``options`` for data set ``name``; ``fixed`` preprocessing options
        override the user's (a source whose files carry their own split)."""
        known = {f.name for f in fields(cls)} - {"name", "config"} | {"preprocess"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown source option(s) {unknown}; valid options are {sorted(known)}")
        settings = dict(options)
        config = PreprocessConfig.of(settings.pop("preprocess", None))
        return cls(name=name, config=replace(config, **fixed) if fixed else config, **settings)

    def preprocess(
        self,
        raw: pd.DataFrame,
        report: dict[str, Any],
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
    ) -> InteractionData:
        """Filter, remap and split the reader's raw table (see :mod:`data_modules.preprocessing`);
        a split without validation or test rows fails now, not after a trained epoch."""
        data = preprocess(
            raw,
            self.config,
            name=self.name,
            item_features=item_features,
            user_features=user_features,
            source_report=report,
            progress=self.progress,
        )
        require_eval_rows(data, self.config)
        return data

    def cached(
        self,
        build: Callable[[], InteractionData],
        *,
        source: str,
        settings: Mapping[str, Any],
        files: Iterable[str | os.PathLike],
        data_root: str | os.PathLike,
    ) -> InteractionData:
        """Build through the cache in ``cache_dir`` (default ``<data_root>/.cache``); the
        key covers ``source``, its ``settings``, the preprocessing options and ``files``."""
        folder = None
        if self.cache:
            folder = Path(self.cache_dir) if self.cache_dir else Path(data_root) / ".cache"
        key = {"source": source, **settings, "preprocess": self.config.cache_settings()}
        return load_or_build(build, name=self.name, settings=key, files=list(files), cache_dir=folder)
