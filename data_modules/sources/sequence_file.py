"""Whitespace-separated sequence files, as shipped with SASRec/BERT4Rec benchmarks.

Two layouts:

- ``pairs``: one ``user item`` pair per line, each user's lines in chronological order
  (SASRec's ``ml-1m.txt``);
- ``rows``: one user per line, ``user item1 item2 ...`` in chronological order.

``auto`` picks ``pairs`` when most lines have exactly two tokens and users repeat
across lines, else ``rows``; in ``pairs`` the other lines then count as malformed
(against ``max_bad_fraction``), so a few damaged lines never flip the layout. Ids are
parsed exactly as int64; one outside int64 is an error (``numeric_ids: false`` keeps
ids as text). There are no timestamps in these files: an interaction's position in the
file is its timestamp, which keeps file order. Clean numeric files are parsed in chunks
(a 100M-interaction file in well under a minute and without per-token Python objects).

Optional side features come from tab-separated files with a header whose key column
is ``item`` (resp. ``user``), in the same id space as the sequence file; a ``genres``
column is split on ``|`` into a list.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Unpack

import numpy as np
import pandas as pd

from data_modules.interactions import InteractionData
from data_modules.sources._common import Loader, SourceOptions, expands_paths
from data_modules.sources._features import optional_feature_table
from data_modules.sources._integer_lines import line_text, parse_integer_lines
from data_modules.sources._reading import (
    MAX_EXAMPLES,
    out_of_range_error,
    parse_int64,
    read_text,
    require_file,
    skipped_lines_report,
    text_lines,
)

FORMATS = ("auto", "pairs", "rows")


@expands_paths
def sequence_file(
    path: str | os.PathLike,
    format: str = "auto",
    item_features_path: str | os.PathLike | None = None,
    user_features_path: str | os.PathLike | None = None,
    numeric_ids: bool = True,
    name: str | None = None,
    **options: Unpack[SourceOptions],
) -> InteractionData:
    """Load a ``pairs``/``rows`` sequence file (see module docstring) as InteractionData."""
    if format not in FORMATS:
        raise ValueError(f"sequence_file format={format!r} is unknown; use one of {FORMATS}")
    path = require_file(path, "set data.path to a sequence file (`user item` per line)")
    load = Loader.of(name or path.stem, options)
    feature_paths = [Path(p) for p in (item_features_path, user_features_path) if p]
    key_dtype = "int" if numeric_ids else "str"

    def build() -> InteractionData:
        raw, report = read_sequences(path, format, numeric_ids, load.max_bad_fraction, load.progress)
        items, users = (
            optional_feature_table(
                file, key, report, key_dtype=key_dtype, max_bad_fraction=load.max_bad_fraction
            )
            for file, key in ((item_features_path, "item"), (user_features_path, "user"))
        )
        return load.preprocess(raw, report, items, users)

    settings = {"format": format, "numeric_ids": numeric_ids, "max_bad_fraction": load.max_bad_fraction}
    return load.cached(
        build, source="sequence_file", settings=settings, files=[path, *feature_paths], data_root=path.parent
    )


def read_sequences(
    path: Path,
    format: str = "auto",
    numeric_ids: bool = True,
    max_bad_fraction: float = 0.01,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Raw (user, item, timestamp=position) table and the read report.

    Clean numeric files are parsed in chunks without Python strings
    (:mod:`~data_modules.sources._integer_lines`); other files, or ``numeric_ids:
    false``, go through the tolerant text path that finds and explains bad tokens.
    """
    parsed = parse_integer_lines(path, progress) if numeric_ids else None
    if parsed is not None:
        widths, values = parsed.widths, parsed.values
        bad_token = None
        show_line = functools.partial(line_text, path)
    else:
        lines = text_lines(read_text(path, progress=progress))
        widths = np.fromiter(map(len, map(str.split, lines)), dtype=np.int64, count=len(lines))
        tokens = np.array(" ".join(lines).split(), dtype=object)
        values, bad_token = _parse_ids(path, tokens, widths, numeric_ids)
        show_line = lambda i: lines[i][:80]  # noqa: E731
    starts = np.cumsum(widths, dtype=np.int64) - widths
    blank = widths == 0
    detected = format == "auto"
    if detected:
        format = _detect(widths, values, starts, blank)
    line_bad_token = np.zeros(len(widths), dtype=bool)
    if bad_token is not None and bad_token.any():
        token_line = np.repeat(np.arange(len(widths)), widths)
        line_bad_token[token_line[bad_token]] = True
    if format == "pairs":
        wrong_width = (widths != 2) & ~blank
        good = ~wrong_width & ~blank & ~line_bad_token
        if good.all():  # the usual clean file: views, no index arrays
            users, items = values[0::2], values[1::2]
            stamps = np.arange(len(widths), dtype=np.int64)
        else:
            users = values[starts[good]]
            items = values[starts[good] + 1]
            stamps = np.flatnonzero(good)
        no_items = 0
    else:
        wrong_width = np.zeros(len(widths), dtype=bool)
        empty_user = (widths == 1) & ~line_bad_token
        good = (widths >= 2) & ~line_bad_token
        n_items = np.where(good, widths - 1, 0)
        line_of = np.repeat(np.arange(len(widths)), n_items)
        offset = np.arange(n_items.sum()) - np.repeat(np.cumsum(n_items) - n_items, n_items)
        item_pos = starts[line_of] + 1 + offset
        users = values[starts[line_of]]
        items = values[item_pos]
        stamps = item_pos
        no_items = int(empty_user.sum())
    bad = wrong_width | line_bad_token
    report = _report(path, show_line, widths, bad, wrong_width, format, max_bad_fraction, blank, detected)
    if no_items:
        report["users_without_items"] = no_items
    raw = pd.DataFrame({"user": users, "item": items, "timestamp": stamps.astype(np.int64)}, copy=False)
    return raw, report


def _detect(widths: np.ndarray, tokens: np.ndarray, starts: np.ndarray, blank: np.ndarray) -> str:
    """``pairs`` when most non-blank lines hold two tokens and users repeat, else ``rows``.

    A majority, not "nearly all": damaged lines must be counted as malformed in the
    file's real layout, never turn a pairs file into rows of made-up users.
    """
    nonblank = ~blank
    two = (widths == 2) & nonblank
    if nonblank.sum() == 0:
        return "pairs"
    users = tokens[starts[two]]
    # Grouped files repeat a user on the next line; only others need the hash pass.
    repeats = bool(np.any(users[1:] == users[:-1])) or len(pd.unique(users)) < len(users)
    return "pairs" if 2 * two.sum() > nonblank.sum() and repeats else "rows"


def _parse_ids(
    path: Path, tokens: np.ndarray, widths: np.ndarray, numeric: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 ids (or the strings) and a mask of non-integer tokens; an integer
    outside int64 is an error, since rounding it would merge distinct ids."""
    if not numeric:
        return tokens, np.zeros(len(tokens), dtype=bool)
    values, bad, outside = parse_int64(tokens)
    if outside.any():
        token = int(np.flatnonzero(outside)[0])
        line = int(np.searchsorted(np.cumsum(widths), token, side="right")) + 1
        raise out_of_range_error(
            f"{path}:{line}", "id", tokens[token], "set numeric_ids: false to keep ids as strings"
        )
    return values, bad


def _report(
    path: Path,
    show_line: Callable[[int], str],
    widths: np.ndarray,
    bad: np.ndarray,
    wrong_width: np.ndarray,
    format: str,
    max_bad: float,
    blank: np.ndarray,
    detected: bool = False,
) -> dict:
    n_lines = int((~blank).sum())
    bad_lines = np.flatnonzero(bad)
    examples = [
        f"{path}:{i + 1}: "
        + (f"expected 2 tokens (user item), got {widths[i]}" if wrong_width[i] else "non-integer id")
        + f": {show_line(int(i))!r}"
        for i in bad_lines[:MAX_EXAMPLES]
    ]
    hint = ""
    if wrong_width.any():
        hint += "For `user item1 item2 ...` lines set format: rows. "
    if (bad & ~wrong_width).any():
        hint += "Ids must be integers; set numeric_ids: false for string ids. "
    counts = skipped_lines_report(
        path, n_lines, len(bad_lines), examples or ["(the file is empty)"], int(blank.sum()), max_bad,
        problem=f" for format={format!r}" + (" as detected from most lines" if detected else ""),
        advice=f"{hint}Fix or remove the lines, or raise max_bad_fraction to skip them.",
    )
    return {"format": format, **({"format_detected": True} if detected else {}), **counts}
