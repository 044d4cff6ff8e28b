"""Array cache: identical round trip, memory-mapped columns, hit/miss by settings and
raw-file stats, and entries of the older Parquet format still read."""
from __future__ import annotations

import importlib
import json
import logging
import mmap
import os

import numpy as np
import pandas as pd
import pytest

from data_modules.cache import CHECKSUMS, META, cache_key, load, load_or_build, save
from data_modules.download import file_digest
from data_modules.interactions import InteractionData
from data_modules.preprocessing import preprocess
from data_modules.sources import sequence_file


def assert_same(a: InteractionData, b: InteractionData) -> None:
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    assert a.user_ids.dtype == b.user_ids.dtype and a.item_ids.dtype == b.item_ids.dtype
    for x, y in ((a.item_features, b.item_features), (a.user_features, b.user_features)):
        assert (x is None) == (y is None)
        if x is not None:
            pd.testing.assert_frame_equal(x, y)
    assert a.eval_negatives.keys() == b.eval_negatives.keys()
    for key in a.eval_negatives:
        np.testing.assert_array_equal(a.eval_negatives[key], b.eval_negatives[key])
    assert a.name == b.name and a.report == b.report


def sample() -> InteractionData:
    raw = pd.DataFrame(
        {
            "user": ["b", "a", "a", "a", "b", "b", "c"],
            "item": [3, 1, 2, 3, 1, 2, 1],
            "timestamp": [5, 1, 2, 3, 6, 7, 1],
            "rating": [4.0, 5.0, 3.5, 1.0, 2.0, 4.0, 5.0],
        }
    )
    items = pd.DataFrame(
        {
            "genres": [["A", "B"], [], ["C"]],
            "year": pd.array([1990, None, 1985], dtype="Int64"),
            "title": ["x", "y", "z"],
        },
        index=[1, 2, 3],
    )
    users = pd.DataFrame({"gender": ["F", "M"], "age": [25, 35]}, index=["a", "b"])
    data = preprocess(raw, name="tiny", item_features=items, user_features=users)
    data.eval_negatives["test"] = np.array([[0, 1], [1, 2], [2, 0]], dtype=np.int64)
    return data


def test_round_trip_is_identical(tmp_path):
    data = sample()
    save(data, tmp_path / "entry")
    back = load(tmp_path / "entry")
    assert_same(data, back)
    assert back.user_features.loc[2].isna().all()  # user "c" had no features
    assert back.item_features.loc[1, "genres"] == []
    assert isinstance(back.item_features.loc[0, "genres"], list)


def is_memory_mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (somewhere down its ``base`` chain)."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


def test_loaded_columns_are_compact_read_only_memory_maps(tmp_path):
    save(sample(), tmp_path / "entry")
    back = load(tmp_path / "entry")
    dtypes = back.interactions.dtypes.to_dict()
    assert dtypes["user"] == np.int32 and dtypes["item"] == np.int32 and dtypes["split"] == np.int8
    for column in back.interactions.columns:
        values = back.column(column)
        assert is_memory_mapped(values), column
        assert not values.flags.writeable  # the cache file can never be written through it


def test_a_freshly_built_entry_is_served_from_its_memory_maps(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    data = load_or_build(sample, name="tiny", settings={}, files=[raw], cache_dir=tmp_path / "cache")
    assert all(is_memory_mapped(data.column(c)) for c in data.interactions.columns)
    assert_same(data, sample())


def write_format_1(data: InteractionData, entry) -> None:
    """An entry as the Parquet-based format 1 wrote it (one interactions file)."""
    entry.mkdir()
    data.interactions.to_parquet(entry / "interactions.parquet", index=False)
    for kind, ids in (("user_ids", data.user_ids), ("item_ids", data.item_ids)):
        pd.DataFrame({"raw": ids}).to_parquet(entry / f"{kind}.parquet", index=False)
    files = sorted(entry.iterdir())
    meta = {"version": 1, "name": data.name, "report": data.report, "negatives": [],
            CHECKSUMS: {f.name: file_digest(f, "sha256") for f in files}}
    (entry / META).write_text(json.dumps(meta))


def test_entries_of_the_parquet_format_still_load(tmp_path):
    data = sample()
    data.eval_negatives.clear()
    data.item_features = data.user_features = None
    write_format_1(data, tmp_path / "old")
    back = load(tmp_path / "old", require_checksums=True)
    pd.testing.assert_frame_equal(back.interactions, data.interactions)
    np.testing.assert_array_equal(back.user_ids, data.user_ids)


def test_hit_and_miss_follow_settings_and_files(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    built = []

    def build():
        built.append(1)
        return sample()

    kwargs = dict(name="tiny", files=[raw], cache_dir=tmp_path / "cache")
    first = load_or_build(build, settings={"k": 1}, **kwargs)
    second = load_or_build(build, settings={"k": 1}, **kwargs)
    assert len(built) == 1
    assert_same(first, second)
    load_or_build(build, settings={"k": 2}, **kwargs)  # new setting -> new entry
    assert len(built) == 2
    os.utime(raw, ns=(1, 1))  # same content, new mtime -> new entry
    load_or_build(build, settings={"k": 1}, **kwargs)
    assert len(built) == 3
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 3


def test_key_changes_with_size_and_setting(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("1 2\n")
    key = cache_key({"a": 1}, [raw])
    assert cache_key({"a": 1}, [raw]) == key
    assert cache_key({"a": 2}, [raw]) != key
    stat = raw.stat()
    raw.write_text("1 2\n3 4\n")
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime, other size
    assert cache_key({"a": 1}, [raw]) != key


def test_damaged_entry_is_rebuilt(tmp_path, caplog):
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    kwargs = dict(name="tiny", settings={}, files=[raw], cache_dir=tmp_path / "cache")
    load_or_build(sample, **kwargs)
    entry = next(p for p in (tmp_path / "cache").iterdir())
    (entry / "interactions.user.npy").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        data = load_or_build(sample, **kwargs)
    assert "rebuilding" in caplog.text
    assert_same(data, sample())
    assert_same(load(entry), sample())  # the damaged entry was replaced


def test_entry_published_by_another_process_is_kept(tmp_path):
    save(sample(), tmp_path / "entry")
    other = sample()
    other.name = "other"
    save(other, tmp_path / "entry")  # e.g. a second rank finishing later
    assert load(tmp_path / "entry").name == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]  # no temp folder left


def test_source_uses_cache_and_new_preprocess_setting_misses(tmp_path, monkeypatch):
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u} {i}\n" for u in range(1, 5) for i in range(1, 6)))
    first = sequence_file(path)  # default cache: <folder>/.cache
    assert (tmp_path / ".cache").is_dir()
    # The package re-exports the function under the module's name; fetch the module.
    module = importlib.import_module("data_modules.sources.sequence_file")

    def fail(*args, **kwargs):
        raise AssertionError("read the file although the cache holds it")

    monkeypatch.setattr(module, "read_sequences", fail)
    assert_same(first, sequence_file(path))
    with pytest.raises(AssertionError, match="although"):
        sequence_file(path, preprocess={"split": "ratio"})
    with pytest.raises(AssertionError, match="although"):
        sequence_file(path, cache=False)


def test_unwritable_cache_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    raw = tmp_path / "raw.txt"
    raw.write_text("x")
    with caplog.at_level(logging.WARNING):
        data = load_or_build(sample, name="tiny", settings={}, files=[raw], cache_dir=blocker / "sub")
    assert "could not write cache" in caplog.text
    assert data.num_users == 3
