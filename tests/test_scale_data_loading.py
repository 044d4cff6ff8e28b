"""The large-data path: the chunked integer parser agrees with plain text splitting, and
cached columns are shared (not copied) by data-loader workers."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.sources import sequence_file
from data_modules.sources._integer_lines import line_text, parse_integer_lines

CLEAN = "\ufeff1 2\r\n1 3\n\n2\t40\n  2 5 \n3 123456789012345678\n3 7"


def split_by_hand(text: str) -> tuple[list[int], list[int]]:
    lines = text.lstrip("\ufeff").split("\n")
    return [len(line.split()) for line in lines], [int(t) for line in lines for t in line.split()]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_chunked_parse_matches_splitting_the_text(tmp_path: Path, chunk_bytes: int) -> None:
    path = tmp_path / "clean.txt"
    path.write_text(CLEAN, encoding="utf-8")
    parsed = parse_integer_lines(path, chunk_bytes=chunk_bytes)
    widths, values = split_by_hand(CLEAN)
    assert parsed.widths.tolist() == widths and parsed.values.tolist() == values
    assert parsed.values.dtype == np.int64  # one id beyond int32
    assert line_text(path, 3) == "2\t40"


@pytest.mark.parametrize("line", ["-4 5", "1 x", "1 1234567890123456789", "1\x002"])
def test_anything_but_digits_and_spaces_leaves_it_to_the_tolerant_reader(tmp_path: Path, line: str) -> None:
    path = tmp_path / "odd.txt"
    path.write_text(f"1 2\n{line}\n1 3\n")
    assert parse_integer_lines(path) is None


def test_sequence_file_reads_the_same_through_both_paths(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u} {i}\n" for u in range(1, 30) for i in range(u, u + 6)) + "5 1 2\n")
    fast = sequence_file(path, cache=False)
    module = importlib.import_module("data_modules.sources.sequence_file")
    monkeypatch.setattr(module, "parse_integer_lines", lambda *args, **kwargs: None)
    slow = sequence_file(path, cache=False)
    assert fast.report == slow.report and fast.report["source"]["skipped_lines"] == 1
    assert "expected 2 tokens (user item), got 3: '5 1 2'" in fast.report["source"]["bad_line_examples"][0]
    assert fast.interactions.equals(slow.interactions)


def mapping_of(path: Path) -> dict[str, int]:
    """This process's smaps fields (kB) summed over the mappings of ``path``."""
    fields: dict[str, int] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            inside = line.endswith(str(path))
        elif inside and head[0].endswith(":") and len(head) >= 2 and head[1].isdigit():
            fields[head[0][:-1]] = fields.get(head[0][:-1], 0) + int(head[1])
    return fields


class ColumnPages(torch.utils.data.Dataset):
    """Each item: the worker reads the whole cached column, then reports its mapping."""

    def __init__(self, column: np.ndarray, path: Path) -> None:
        self.column, self.path = column, path

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict[str, int]:
        total = int(self.column.sum())  # touches every page
        return {"sum": total, **mapping_of(self.path)}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_forked_workers_share_the_cached_columns_pages(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    rng = np.random.default_rng(0)
    path.write_text("".join(f"{u} {i}\n" for u in range(2_000) for i in rng.integers(0, 5_000, 60)))
    sequence_file(path, cache_dir=tmp_path / "cache")
    data = sequence_file(path, cache_dir=tmp_path / "cache")  # from the cache
    column_file = next((tmp_path / "cache").glob("*/interactions.timestamp.npy"))
    column = data.column("timestamp")
    expected = int(column.sum())  # the parent maps every page too
    loader = torch.utils.data.DataLoader(
        ColumnPages(column, column_file), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    reports = list(loader)
    assert len(reports) == 2
    for report in reports:
        assert int(report["sum"]) == expected
        # The worker read the column through the file mapping itself: every page it
        # holds is shared with the parent, and none is a private (anonymous) copy.
        shared = report["Shared_Clean"] + report["Shared_Dirty"]
        assert shared >= column.nbytes // 1024 - 8
        assert report["Anonymous"] == 0
