"""Tolerant, fast reading of delimited text files.

Well-formed files take Arrow's strict CSV reader (fast path). When it rejects the file, the
file is parsed again line by line (a record never spans lines, so a stray quote
damages one line, not the rest of the file) to find *which* lines are bad and why: a few
bad lines are skipped and counted (with the first examples kept for the report); more
than ``max_bad_fraction`` of them is an error, because then the format (separator,
column order, file) is most likely wrong rather than a few lines damaged.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import csv as pacsv
from tqdm.auto import tqdm

from data_modules.preprocessing import DataFormatError

log = logging.getLogger(__name__)

# A separator pandas' C parser cannot take ("::") is replaced by this byte first.
UNIT_SEP = "\x1f"
PROGRESS_MIN_BYTES = 32 << 20
MAX_EXAMPLES = 5
UTF8_BOM = b"\xef\xbb\xbf"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
# An integer written plainly, optionally with a zero fraction ("5.0"), never via float.
_INTEGER = r"[+-]?[0-9]+(?:\.0*)?"
_SAFE_DIGITS = 18  # at most this many digits always fits int64
ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
_COMMON_SEPARATORS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "'|'", " ": "space"}


def require_file(path: str | os.PathLike, hint: str) -> Path:
    """The path, or an error that says what is there instead and what to do."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file; {hint}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {hint}")
    return path


def strip_bom(raw: bytes) -> bytes:
    """``raw`` without a leading UTF-8 byte-order mark, which would otherwise glue
    itself to the first id or column name."""
    return raw[len(UTF8_BOM):] if raw.startswith(UTF8_BOM) else raw


def parse_int64(texts: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact int64 values of decimal strings, with masks of the ones that are not
    integers and of the integers outside int64 (values 0 there).

    Never goes through float64, which would merge distinct ids above 2**53.
    """
    texts = np.asarray(texts, dtype=object)
    if _plain_ascii(texts):  # int() would also take "1_000" and non-ASCII digits
        try:  # fast path: every entry a plain, in-range integer
            values = texts.astype(np.int64)
            return values, np.zeros(len(texts), dtype=bool), np.zeros(len(texts), dtype=bool)
        except (ValueError, OverflowError, TypeError):
            pass
    text = pd.Series(texts, dtype=object).astype(str).str.strip()
    integer = text.str.fullmatch(_INTEGER).fillna(False).to_numpy(dtype=bool)
    digits = text.str.replace(r"\.0*$", "", regex=True).str.lstrip("+")
    long = integer & (digits.str.lstrip("-").str.len() > _SAFE_DIGITS).to_numpy(dtype=bool)
    outside = np.zeros(len(texts), dtype=bool)
    for index in np.flatnonzero(long):  # only the few very long numbers
        outside[index] = not INT64_MIN <= int(digits.iloc[index]) <= INT64_MAX
    ok = integer & ~outside
    values = np.zeros(len(texts), dtype=np.int64)
    values[ok] = digits[ok].to_numpy(dtype=object).astype(np.int64)
    return values, ~integer, outside


def _plain_ascii(texts: np.ndarray) -> bool:
    """All entries are ASCII strings without underscores (one C-speed pass)."""
    try:
        joined = "".join(texts)
    except TypeError:
        return False
    return joined.isascii() and "_" not in joined


def out_of_range_error(where: str, column: str, value: str, advice: str) -> DataFormatError:
    """The error for an integer outside int64: no exact int64 holds it, and rounding
    would merge distinct ids."""
    return DataFormatError(
        f"{where}: {column}={_clip(str(value))!r} is outside the 64-bit integer range "
        f"[{INT64_MIN}, {INT64_MAX}]; {advice}"
    )


def read_bytes(path: str | os.PathLike, progress: bool | None = None) -> bytes:
    """Whole file (without a UTF-8 byte-order mark), with a progress bar for big files."""
    path = Path(path)
    size = path.stat().st_size
    show = size >= PROGRESS_MIN_BYTES if progress is None else progress
    chunks = []
    with open(path, "rb") as handle, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"read {path.name}", disable=not show, leave=False
    ) as bar:
        for block in iter(lambda: handle.read(8 << 20), b""):
            chunks.append(block)
            bar.update(len(block))
    return strip_bom(b"".join(chunks))


def decode(raw: bytes, path: Path, encoding: str = "utf-8") -> str:
    """Text of ``raw``; a decode error names the file and line."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}:{line}: not valid {encoding} ({exc.reason}); pass the file's encoding "
            "(MovieLens .dat/u.* files are latin-1)"
        ) from None


def read_text(path: str | os.PathLike, encoding: str = "utf-8", progress: bool | None = None) -> str:
    """Whole file as text (progress bar for big files); a decode error names the line."""
    return decode(read_bytes(path, progress), Path(path), encoding)


def text_lines(text: str) -> list[str]:
    """The lines of ``text``; a final newline does not start another (empty) line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def skipped_lines_report(
    path: Path,
    n_lines: int,
    n_bad: int,
    examples: list[str],
    blank_lines: int,
    max_bad_fraction: float,
    *,
    problem: str = "",
    advice: str = "",
) -> dict[str, Any]:
    """Read report of a file whose ``n_bad`` malformed lines were skipped.

    More than ``max_bad_fraction`` of them (or no line at all) is an error, because then
    the format (separator, layout, file) is most likely wrong rather than a few lines
    damaged; the message shows the first ``examples``.
    """
    if n_lines == 0:
        raise DataFormatError(f"{path} has no data lines (it is empty or blank); {advice or 'check the path'}")
    if n_bad > max_bad_fraction * n_lines:
        raise DataFormatError(
            f"{path}: {n_bad} of {n_lines} lines are malformed{problem} "
            f"(more than max_bad_fraction={max_bad_fraction}). First ones:\n  "
            + "\n  ".join(examples)
            + f"\n{advice}"
        )
    report: dict[str, Any] = {"lines": n_lines, "skipped_lines": n_bad}
    if n_bad:
        report["bad_line_examples"] = examples
        log.warning("%s: skipped %d malformed line(s) of %d, e.g. %s", path, n_bad, n_lines, examples[0])
    if blank_lines:
        report["blank_lines"] = blank_lines
    return report


def read_delimited(
    path: str | os.PathLike,
    *,
    sep: str,
    dtypes: Mapping[str, str],
    names: list[str] | None = None,
    header: bool = False,
    encoding: str = "utf-8",
    quotechar: str | None = None,
    max_bad_fraction: float = 0.01,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the columns in ``dtypes`` (``int``/``float``/``str``) of a delimited file.

    ``names`` lists every column of a record in order; with ``header=True`` and no
    ``names``, the first line gives them. Returns the frame and a report with
    ``lines`` (records read) and ``skipped_lines`` plus ``bad_line_examples``.
    """
    path = Path(path)
    raw = read_bytes(path, progress)
    if not raw.strip():
        raise DataFormatError(f"{path} is empty; point the path at the data file (or fill it)")
    single = sep if len(sep) == 1 else UNIT_SEP
    if len(sep) > 1:  # the CSV parsers take one-character separators only
        raw = raw.replace(sep.encode(encoding), UNIT_SEP.encode(encoding))
    head = None
    if header:
        end = raw.find(b"\n")
        head = decode(raw[: end if end >= 0 else len(raw)], path, encoding).rstrip("\r")
    if names is None:
        if head is None:
            raise ValueError("read_delimited needs names or header=True")
        names = next(csv.reader([head], delimiter=single, quotechar=quotechar or '"'))
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise DataFormatError(
            f"{path}: column name(s) {repeated} appear more than once in {names}; "
            "every column needs its own name (fix the header line)"
        )
    missing = [c for c in dtypes if c not in names]
    if missing:
        raise DataFormatError(
            f"{path}: column(s) {missing} not found; the file has {names}"
            + (" (from its header line)" if header else "")
            + (f". {_hint(head, sep, list(dtypes))}" if header and len(names) == 1 else "")
        )
    try:
        frame = _fast(raw, encoding, single, names, dtypes, header, quotechar)
    except (ValueError, OverflowError, pa.ArrowException):  # includes UnicodeDecodeError
        frame = None
    if frame is not None and frame.empty:
        raise DataFormatError(f"{path} has a header line but no data lines; fill it or point the path elsewhere")
    if frame is not None:
        return frame, {"lines": len(frame), "skipped_lines": 0}
    text = decode(raw, path, encoding)
    del raw
    return _tolerant(path, text, sep, single, names, dtypes, header, quotechar, max_bad_fraction)


def _fast(
    raw: bytes,
    encoding: str,
    sep: str,
    names: list[str],
    dtypes: Mapping[str, str],
    header: bool,
    quotechar: str | None,
) -> pd.DataFrame:
    """Arrow's CSV reader: multi-threaded and strict. Every line must have all fields
    and integers must be plain int64 literals (pandas' parser would read "1e3" in an
    id column as a float and round every id above 2**53). Anything else raises, and
    the tolerant pass explains it."""
    if b"\x00" in raw or b"0x" in raw or b"0X" in raw:
        raise ValueError("NUL bytes or hex literals")  # Arrow would read "0x1F" as the integer 31
    table = pacsv.read_csv(
        io.BytesIO(raw),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0, encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=quotechar or False, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: ARROW_TYPES[t] for c, t in dtypes.items()},
            include_columns=list(dtypes),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    frame = table.to_pandas()
    if frame.isna().to_numpy().any():  # empty fields: the tolerant pass tells them from short lines
        raise ValueError("missing values")
    texts = [c for c, t in dtypes.items() if t == "str"]
    if quotechar and texts and frame[texts].apply(lambda c: c.str.contains("[\r\n]").any()).any():
        raise ValueError("a quoted field spans lines")  # a stray quote: one record per line
    floats = [c for c, t in dtypes.items() if t == "float"]
    if floats and not np.isfinite(frame[floats].to_numpy()).all():
        raise ValueError("infinite values")  # the tolerant pass names and counts them
    return frame[list(dtypes)]


def _tolerant(
    path: Path,
    text: str,
    sep: str,
    single: str,
    names: list[str],
    dtypes: Mapping[str, str],
    header: bool,
    quotechar: str | None,
    max_bad_fraction: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Record-by-record parse that finds and explains every bad line."""
    lines = text_lines(text)
    first_line = 2 if header else 1
    if header:
        lines = lines[1:]
    rows, unreadable = _split_records(lines, single, quotechar)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    blank = (widths == 0) & ~unreadable
    line_numbers = np.arange(len(rows)) + first_line
    reasons: dict[int, str] = {}
    wrong = np.flatnonzero((widths != len(names)) & ~blank)
    for index in wrong[:MAX_EXAMPLES]:
        reasons[index] = (
            "not a delimited record (NUL byte, stray quote or carriage return)"
            if unreadable[index]
            else f"expected {len(names)} fields separated by {_show_sep(sep)}, got {widths[index]}"
        )
    good = np.flatnonzero(widths == len(names))
    columns = list(dtypes)
    picked = [names.index(c) for c in columns]
    table = pd.DataFrame([rows[i] for i in good], columns=names).iloc[:, picked] if len(good) else (
        pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    )
    bad_value = np.zeros(len(good), dtype=bool)
    out = {}
    for column in columns:
        out[column], invalid, outside = _convert(table[column], dtypes[column])
        if outside.any():
            index = int(np.flatnonzero(outside)[0])
            raise out_of_range_error(
                f"{path}:{line_numbers[good[index]]}", column, table[column].iloc[index],
                "integer ids and timestamps must fit in int64; fix the file or keep the column as text",
            )
        for index in np.flatnonzero(invalid & ~bad_value)[: MAX_EXAMPLES]:
            reasons.setdefault(
                good[index], f"{column}={table[column].iloc[index]!r} is not {_kind(dtypes[column])}"
            )
        bad_value |= invalid
    n_bad = len(wrong) + int(bad_value.sum())
    n_records = int((~blank).sum())
    examples = [
        f"{path}:{line_numbers[i]}: {reason}: {_clip(lines[i])!r}"
        for i, reason in sorted(reasons.items())[:MAX_EXAMPLES]
    ]
    report = skipped_lines_report(
        path, n_records, n_bad, examples, int(blank.sum()), max_bad_fraction,
        advice=_hint(lines[wrong[0]] if len(wrong) else "", sep, names),
    )
    frame = pd.DataFrame({c: v[~bad_value] for c, v in out.items()}).reset_index(drop=True)
    return frame, report


def _split_records(lines: list[str], sep: str, quotechar: str | None) -> tuple[list[list[str]], np.ndarray]:
    """Fields of each line, never across lines; a line the csv module rejects (NUL byte,
    bare carriage return, bad quoting) gets no fields and is flagged unreadable."""
    lines = [line.rstrip("\r") for line in lines]
    unreadable = np.zeros(len(lines), dtype=bool)
    if quotechar is None:
        return [line.split(sep) if line else [] for line in lines], unreadable
    rows: list[list[str]] = []
    for index, line in enumerate(lines):
        try:
            rows.append(next(csv.reader([line], delimiter=sep, quotechar=quotechar, strict=True), []))
        except csv.Error:
            rows.append([])
            unreadable[index] = True
    return rows, unreadable


def _convert(values: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Typed values, a mask of the ones that do not parse and one of integers outside
    int64 (integers are parsed exactly, never through float)."""
    none = np.zeros(len(values), dtype=bool)
    if kind == "str":
        return values.to_numpy(dtype=object), none, none
    if kind == "int":
        return parse_int64(values.to_numpy(dtype=object))
    numbers = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    return numbers, ~np.isfinite(numbers), none


def _kind(kind: str) -> str:
    return {"int": "an integer", "float": "a finite number"}.get(kind, "text")


def _show_sep(sep: str) -> str:
    return _COMMON_SEPARATORS.get(sep, repr(sep))


def _clip(line: str, limit: int = 80) -> str:
    line = line.rstrip("\r").replace(UNIT_SEP, "::")
    return line if len(line) <= limit else line[:limit] + "..."


def _hint(line: str, sep: str, names: list[str]) -> str:
    """Suggest the separator the bad line seems to use."""
    expected = f"Expected columns {names} separated by {_show_sep(sep)}."
    for other, label in _COMMON_SEPARATORS.items():
        if other != sep and line.count(other) >= max(len(names) - 1, 1):
            return f"{expected} The lines look {label}-separated: set sep={other!r} (or fix the file)."
    return f"{expected} Fix or remove those lines, or raise max_bad_fraction to skip them."
