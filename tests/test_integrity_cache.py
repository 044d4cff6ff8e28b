"""Cached data carries a sha256 per file: altered bytes are caught, never read as data.

A ``.npy`` column has no checksum of its own, so single-bit flips in
``interactions.item.npy`` read as altered rows; the manifest in ``meta.json`` catches
every one of them.
A cache entry is then rebuilt from its source; a run's ``artifacts/data`` (no source)
is an error.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytest

from data_modules.cache import CHECKSUMS, META, CacheIntegrityError, load, load_or_build, save
from data_modules.interactions import InteractionData
from data_modules.preprocessing import preprocess
from tests.helpers import tiny_config
from tests.test_data_cache import assert_same
from train.building import build_with_data
from train.runs.artifacts import ArtifactError, load_run_artifacts, save_run_artifacts

FLIPS = 12


def data() -> InteractionData:
    """A few thousand interactions: the column files are mostly data."""
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({
        "user": rng.integers(0, 200, 3000),
        "item": rng.integers(0, 150, 3000),
        "timestamp": rng.integers(0, 10**9, 3000),
    })
    result = preprocess(raw, name="flips")
    result.eval_negatives["test"] = rng.integers(0, 150, (result.num_users, 5))
    return result


def flip_bit(path: Path, position: int) -> bytes:
    """Flip one bit of ``path`` at ``position``; returns the original bytes."""
    original = path.read_bytes()
    changed = bytearray(original)
    changed[position] ^= 0x04
    path.write_bytes(bytes(changed))
    return original


def positions(path: Path) -> list[int]:
    size = path.stat().st_size
    return [int(size * (i + 0.5) / FLIPS) for i in range(FLIPS)]


def test_flipped_bits_in_cached_interactions_are_always_detected(tmp_path: Path) -> None:
    expected = data()
    save(expected, tmp_path / "entry")
    column = tmp_path / "entry" / "interactions.item.npy"
    silently_altered = 0
    for position in positions(column):
        original = flip_bit(column, position)
        try:  # what numpy alone makes of it
            silently_altered += not np.array_equal(np.load(column), expected.column("item"))
        except Exception:
            pass
        with pytest.raises(CacheIntegrityError, match=f"{column} does not match the sha256"):
            load(tmp_path / "entry")
        column.write_bytes(original)
    assert silently_altered > 0  # without the checksum some flips would load as other rows
    assert_same(load(tmp_path / "entry"), expected)


@pytest.mark.parametrize(
    "name", ["interactions.split.npy", "user_ids.npy", "item_ids.npy", "negatives_test.npy"]
)
def test_every_cached_file_is_checked(tmp_path: Path, name: str) -> None:
    save(data(), tmp_path / "entry")
    path = tmp_path / "entry" / name
    flip_bit(path, path.stat().st_size - 5)
    with pytest.raises(CacheIntegrityError, match=name):
        load(tmp_path / "entry")


def cached_once(tmp_path: Path) -> tuple[Callable[[], InteractionData], list[int], dict[str, Any], Path]:
    """(build, its call log, load_or_build's arguments, the entry) after one cached build."""
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    built: list[int] = []

    def build() -> InteractionData:
        built.append(1)
        return data()

    kwargs: dict[str, Any] = dict(name="flips", settings={}, files=[raw], cache_dir=tmp_path / "cache")
    load_or_build(build, **kwargs)
    return build, built, kwargs, next((tmp_path / "cache").iterdir())


def test_an_altered_cache_entry_is_rebuilt_from_its_source(tmp_path: Path, caplog) -> None:
    build, built, kwargs, entry = cached_once(tmp_path)
    column = entry / "interactions.user.npy"
    flip_bit(column, column.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="data_modules.cache"):
        again = load_or_build(build, **kwargs)
    assert len(built) == 2 and "does not match the sha256" in caplog.text and "rebuilding" in caplog.text
    assert_same(again, data())
    assert_same(load(entry), data())  # the entry was written again, with valid checksums


def test_entries_without_checksums_are_rebuilt_in_caches_and_read_with_a_warning_elsewhere(tmp_path: Path, caplog) -> None:
    build, built, kwargs, entry = cached_once(tmp_path)
    meta = json.loads((entry / META).read_text())
    del meta[CHECKSUMS]  # as written before checksums existed
    (entry / META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="data_modules.cache"):
        assert_same(load(entry), data())
    assert "records no checksums" in caplog.text
    load_or_build(build, **kwargs)
    assert len(built) == 2


@pytest.mark.parametrize("key", ["negatives", "columns"])
def test_a_manifest_naming_another_file_is_refused(tmp_path: Path, key: str) -> None:
    save(data(), tmp_path / "entry")
    meta = json.loads((tmp_path / "entry" / META).read_text())
    meta[key] = ["../../outside"]
    (tmp_path / "entry" / META).write_text(json.dumps(meta))
    with pytest.raises(CacheIntegrityError, match="not plain names"):
        load(tmp_path / "entry")


def test_altered_run_artifacts_data_is_an_error(tmp_path: Path) -> None:
    """A run folder has no source to rebuild from: altered data must not load."""
    run = tmp_path / "run"
    cfg = tiny_config(run, "model=gmf")
    interactions = hydra.utils.instantiate(cfg.data)
    save_run_artifacts(run, cfg, interactions, None, model=build_with_data(cfg.model.net, interactions))
    assert load_run_artifacts(run).data.num_items == interactions.num_items
    column = run / "artifacts" / "data" / "interactions.item.npy"
    flip_bit(column, column.stat().st_size // 2)
    with pytest.raises(ArtifactError, match=f"{column} does not match the sha256.*run folder was altered"):
        load_run_artifacts(run)
