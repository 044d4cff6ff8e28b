"""Chunked, vectorised parsing of files of whitespace-separated integers.

A 100M-interaction sequence file is 1-2 GB of text: splitting it into Python strings
takes tens of GB and minutes. Clean files (ASCII digits and whitespace only, ids of at
most 18 digits, which always fit int64) are instead read in blocks of whole lines and
parsed in C (:func:`numpy.fromstring`), while the line structure (tokens per line) comes
from byte masks. Anything else (signs, letters, NUL bytes, very long numbers) makes
:func:`parse_integer_lines` return ``None``: the caller then takes the tolerant
text path, which finds and explains each bad line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from data_modules.sources._reading import PROGRESS_MIN_BYTES, UTF8_BOM

CHUNK_BYTES = 16 << 20
MAX_DIGITS = 18  # at most this many digits always fits int64
NEWLINE = ord("\n")
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[ord("0") : ord("9") + 1] = True
_ALLOWED = _DIGIT.copy()
_ALLOWED[[ord(c) for c in " \t\n\r\v\f"]] = True


@dataclass
class IntegerLines:
    """Every line's token count and all tokens' values, in file order."""

    widths: np.ndarray  # int32 per line
    values: np.ndarray  # int32 when every value fits, else int64


def parse_integer_lines(
    path: str | os.PathLike, progress: bool | None = None, chunk_bytes: int = CHUNK_BYTES
) -> IntegerLines | None:
    """Token counts per line and token values of a clean file, else ``None``.

    Lines end at ``\\n``; a final line without one still counts. Memory: the outputs
    plus a few arrays of one block.
    """
    path = Path(path)
    size = path.stat().st_size
    show = size >= PROGRESS_MIN_BYTES if progress is None else progress
    widths: list[np.ndarray] = []
    values: list[np.ndarray] = []
    with open(path, "rb") as handle, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"parse {path.name}", disable=not show, leave=False
    ) as bar:
        for block in _line_blocks(handle, chunk_bytes):
            bar.update(len(block))
            parsed = _parse_block(block)
            if parsed is None:
                return None
            widths.append(parsed.widths)
            values.append(parsed.values)
    if not widths:
        return IntegerLines(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32))
    return IntegerLines(np.concatenate(widths), np.concatenate(values))


def _line_blocks(handle, chunk_bytes: int):
    """Blocks of whole lines (each ending with a newline), without a leading BOM."""
    head = handle.read(len(UTF8_BOM))
    rest = b"" if head == UTF8_BOM else head
    while True:
        block = handle.read(chunk_bytes)
        if not block:
            break
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest + b"\n"


def _parse_block(block: bytes) -> IntegerLines | None:
    """One block of whole lines; ``None`` when it holds anything but digits and spaces."""
    raw = np.frombuffer(block, dtype=np.uint8)
    if not _ALLOWED[raw].all():
        return None
    digit = _DIGIT[raw]
    edges = np.diff(digit.view(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if len(starts) and int((ends - starts).max()) > MAX_DIGITS:
        return None  # may not fit int64: the exact, slower path decides
    newlines = np.flatnonzero(raw == NEWLINE)
    line_of_token = np.searchsorted(newlines, starts)
    widths = np.bincount(line_of_token, minlength=len(newlines)).astype(np.int32)
    if not len(starts):  # fromstring reads a blank text as [0]
        return IntegerLines(widths, np.zeros(0, dtype=np.int32))
    values = np.fromstring(block, dtype=np.int64, sep=" ")
    if len(values) != len(starts):
        return None
    if int(values.max()) <= np.iinfo(np.int32).max:
        values = values.astype(np.int32)
    return IntegerLines(widths, values)


def line_text(path: str | os.PathLike, line: int, limit: int = 80) -> str:
    """Line ``line`` (0-based) of the file, for error examples (reads up to it)."""
    seen = 0
    with open(path, "rb") as handle:
        for block in _line_blocks(handle, CHUNK_BYTES):
            count = block.count(b"\n")
            if seen + count > line:
                text = block.split(b"\n")[line - seen]
                return text[:limit].decode("utf-8", errors="replace").rstrip("\r")
            seen += count
    return ""
