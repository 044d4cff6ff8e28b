"""Seeded corruptions of input files and the independent parse of what stays valid.

Each generator returns a :class:`FileCase`: the bytes to write, the loader call and the
*expected* outcome, computed here line by line with plain Python (never with the code
under test): an error (and why), or the interactions the valid lines hold and how many
lines or rows must be reported as skipped.
"""
from __future__ import annotations

import csv
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
BOM = "\ufeff"
INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
HUGE = str(2**64)
BIG = 2**53 + 1  # ids above 2**53 must stay exact


@dataclass
class FileCase:
    """One malformed file: its bytes, loader options and the expected outcome."""

    kind: str
    data: bytes
    options: dict[str, Any]
    error: str | None = None  # why the load must fail; None: it must load
    rows: list[tuple] = field(default_factory=list)  # expected raw interactions
    skipped: int = 0  # lines (or rows) the report must count as skipped
    features: dict[Any, tuple] | None = None  # expected item features by raw id


def is_integer(token: str) -> bool:
    return bool(INTEGER.fullmatch(token.strip()))


def integer(token: str) -> int:
    """The value of an integer literal (a zero fraction allowed), exactly."""
    return int(token.strip().split(".")[0])


def in_int64(token: str) -> bool:
    return INT64_MIN <= integer(token) <= INT64_MAX


# --- line corruptions ------------------------------------------------------------------


def garbage(rng: random.Random) -> str:
    """Printable and control Unicode noise (valid UTF-8 once encoded)."""
    return "".join(chr(rng.choice([rng.randrange(0x21, 0x7F), rng.randrange(0xA0, 0x3000)])) for _ in range(8))


def corrupt_tokens(tokens: list[str], rng: random.Random, sep: str) -> str:
    """One damaged line made from a valid line's ``tokens``."""
    choice = rng.randrange(14)
    if choice == 0:
        return sep.join(tokens[:-1])  # a missing field
    if choice == 1:
        return sep.join([*tokens, str(rng.randrange(100))])  # an extra field
    if choice == 2:
        return sep.join([f"x{tokens[0]}", *tokens[1:]])  # a non-numeric id
    if choice == 3:
        return sep.join([tokens[0], "nan", *tokens[2:]])
    if choice == 4:
        return sep.join([tokens[0], f"{tokens[1]}.5", *tokens[2:]])  # a fractional id
    if choice == 5:
        return ";".join(tokens)  # another separator
    if choice == 6:
        return garbage(rng)
    if choice == 7:
        return BOM + sep.join(tokens)  # a byte-order mark inside the file
    if choice == 8:
        return sep.join(["user", "item", *(["timestamp"] if len(tokens) > 2 else [])])  # a header again
    if choice == 9:
        return sep.join(tokens) + "\x00"
    if choice == 10:
        return sep.join([tokens[0], "", *tokens[2:]])  # an empty field
    if choice == 11:
        return sep.join([tokens[0], "1e3", *tokens[2:]])
    if choice == 12:
        return sep.join([tokens[0], "0x1F", *tokens[2:]])
    return sep.join([tokens[0], "inf", *tokens[2:]])


def pick_lines(n: int, rng: random.Random) -> set[int]:
    """Which of ``n`` lines to damage: none, one, or a share from 0.5% to 35%."""
    share = rng.choice([0.0, -1, 0.005, 0.01, 0.02, 0.05, 0.1, 0.35])
    count = 1 if share == -1 else int(round(share * n))
    return set(rng.sample(range(n), min(count, n)))


def base_log(rng: random.Random, users: int = 24) -> list[tuple[int, int]]:
    """A clean interaction log: (user, item) in time order, 6-9 items per user; ids
    include negatives and values above 2**53 to check exact parsing."""
    pool = [rng.randrange(1, 5000) for _ in range(60)] + [BIG + i for i in range(5)] + [-3, 0]
    ids = rng.sample(range(1, 10**6), users - 2) + [BIG + 7, INT64_MAX]
    log = []
    for user in ids:
        log += [(user, item) for item in rng.sample(pool, rng.randrange(6, 10))]
    return log


def file_level(rng: random.Random, text: str) -> tuple[bytes, str | None]:
    """Whole-file damage: (bytes, expected error or None when the text stays as is)."""
    choice = rng.randrange(12)
    if choice == 0:
        return b"", "empty"
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(300)), "binary"
    if choice == 2:
        return BOM.encode() + text.encode(), None  # a leading BOM is stripped
    if choice == 3:
        return text.replace("\n", "\r\n").encode(), None
    if choice == 4:
        return b"\n\n  \n", "empty"
    if choice == 5:
        cut = rng.randrange(len(text))
        return text[:cut].encode(), "truncated"  # checked by re-parsing the cut text
    return text.encode(), None


# --- sequence files ---------------------------------------------------------------------


def sequence_case(rng: random.Random) -> FileCase:
    """A ``pairs`` or ``rows`` file with damaged lines."""
    log = base_log(rng)
    layout = rng.choice(["pairs", "rows"])
    if layout == "pairs":
        lines = [f"{u} {i}" for u, i in log]
    else:
        by_user: dict[int, list[int]] = {}
        for u, i in log:
            by_user.setdefault(u, []).append(i)
        lines = [" ".join(map(str, [u, *items])) for u, items in by_user.items()]
    sep = rng.choice([" ", " ", "\t"])
    lines = [line.replace(" ", sep) for line in lines]
    for index in pick_lines(len(lines), rng):
        lines[index] = corrupt_tokens(lines[index].split(), rng, sep)
    if rng.random() < 0.15:
        lines.insert(rng.randrange(len(lines)), rng.choice(["", "   ", f"{HUGE} 5"]))
    text = "\n".join(lines) + "\n"
    data, damage = file_level(rng, text)
    max_bad = rng.choice([0.01, 0.05, 0.2])
    options = {"format": rng.choice(["auto", layout]), "max_bad_fraction": max_bad, "cache": False}
    case = FileCase("sequence", data, options)
    expect_sequence(case, layout, max_bad)
    return case


def decoded(case: FileCase) -> str | None:
    """The file's text as the format defines it (UTF-8, a leading BOM dropped); None
    when it is not UTF-8 (then the load must fail)."""
    try:
        text = case.data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith(BOM) else text


def expect_sequence(case: FileCase, layout: str, max_bad: float) -> None:
    text = decoded(case)
    if text is None:
        case.error = "not valid utf-8"
        return
    lines = [line.split() for line in text.split("\n")]
    records = [tokens for tokens in lines if tokens]
    if not records:
        case.error = "no lines"
        return
    if any(is_integer(t) and not in_int64(t) for tokens in records for t in tokens):
        case.error = "id outside int64"
        return
    good = [t for t in records if (len(t) == 2 if layout == "pairs" else len(t) >= 2)]
    good = [t for t in good if all(is_integer(x) for x in t)]
    alone = [t for t in records if layout == "rows" and len(t) == 1 and is_integer(t[0])]
    bad = len(records) - len(good) - len(alone)
    if layout == "pairs" and 2 * sum(len(t) == 2 for t in records) <= len(records):
        case.error = "not a pairs file any more"  # auto-detection may then read rows
        return
    if bad > max_bad * len(records):
        case.error = "too many malformed lines"
        return
    case.rows = [(integer(t[0]), integer(i)) for t in good for i in t[1:]]
    case.skipped = bad
    eval_rows_expectation(case)


def eval_rows_expectation(case: FileCase) -> None:
    """Leave-one-out needs a user with 3 interactions; otherwise the load must fail."""
    counts: dict[Any, int] = {}
    for row in case.rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    if not counts or max(counts.values()) < 3:
        case.error = "no validation rows"


# --- tabular CSV/TSV --------------------------------------------------------------------


TIMESTAMP_DAMAGE = ["abc", "nan", "NaN", "inf", "-inf", "", "-17", "2.5"]
ID_DAMAGE = ["x7", "", HUGE, "007", "+5", "5.0", " 12 "]


def tabular_case(rng: random.Random) -> FileCase:
    """A CSV or TSV with header ``user,item,timestamp`` and damaged rows/fields."""
    log = base_log(rng)
    suffix = rng.choice([".csv", ".tsv"])
    sep = "," if suffix == ".csv" else "\t"
    rows = [[str(u), str(i), str(t)] for t, (u, i) in enumerate(log)]
    lines = [sep.join(r) for r in rows]
    for index in pick_lines(len(lines), rng):
        lines[index] = damage_row(rows[index], rng, sep)
    header = sep.join(["user", "item", "timestamp"])
    if rng.random() < 0.05:
        header = sep.join(["user", "user", "timestamp"])
    text = "\n".join([header, *lines]) + "\n"
    data, _ = file_level(rng, text)
    max_bad = rng.choice([0.01, 0.05, 0.2])
    options = {"max_bad_fraction": max_bad, "cache": False, "preprocess": {"dedup": False}}
    case = FileCase("tabular" + suffix, data, options)
    expect_tabular(case, sep, max_bad)
    return case


def damage_row(row: list[str], rng: random.Random, sep: str) -> str:
    """A field-level or line-level corruption of one row."""
    choice = rng.randrange(4)
    if choice == 0:
        return sep.join([row[0], row[1], rng.choice(TIMESTAMP_DAMAGE)])
    if choice == 1:
        position = rng.randrange(2)
        fields = list(row)
        fields[position] = rng.choice(ID_DAMAGE)
        return sep.join(fields)
    if choice == 2:
        return sep.join([row[0], f'"{row[1]}', row[2]])  # a stray quote
    return corrupt_tokens(row, rng, sep)


def expect_tabular(case: FileCase, sep: str, max_bad: float) -> None:
    text = decoded(case)
    if text is None:
        case.error = "not valid utf-8"
        return
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not "".join(lines).strip():
        case.error = "empty"
        return
    header = split_csv(lines[0], sep)
    if header is None or sorted(set(header)) != sorted(header) or header[:3] != ["user", "item", "timestamp"]:
        case.error = "bad header"
        return
    records = [line for line in lines[1:] if line != ""]
    fields = [split_csv(line, sep) for line in records]
    good = [f for f in fields if f is not None and len(f) == 3]
    if not records:
        case.error = "no data lines"
        return
    if len(records) - len(good) > max_bad * len(records):
        case.error = "too many malformed lines"
        return
    users, user_bad = id_column([f[0] for f in good])
    items, item_bad = id_column([f[1] for f in good])
    stamps = [timestamp(f[2]) for f in good]
    bad = [ub or ib or s is None for ub, ib, s in zip(user_bad, item_bad, stamps)]
    if sum(bad) > max_bad * len(good):
        case.error = "too many unparsable rows"
        return
    case.rows = [(u, i, s) for u, i, s, b in zip(users, items, stamps, bad) if not b]
    case.skipped = (len(records) - len(good)) + sum(bad)
    eval_rows_expectation(case)


def split_csv(line: str, sep: str) -> list[str] | None:
    """Fields of one CSV line (quotes allowed within the line); None if unreadable."""
    if line == "":
        return []
    try:
        return next(csv.reader([line], delimiter=sep, quotechar='"', strict=True))
    except csv.Error:
        return None


def id_column(values: list[str]) -> tuple[list[Any], list[bool]]:
    """Ids as the documented rule reads them, and which rows are bad: mostly numbers ->
    non-numbers are bad; every number plain and within int64 -> integers, else text."""
    text = [v.strip() for v in values]
    missing = [t == "" for t in text]
    numeric = [not m and is_integer(t) for t, m in zip(text, missing)]
    present = len(text) - sum(missing)
    if 2 * sum(numeric) <= present:
        return text, missing
    bad = [m or not n for m, n in zip(missing, numeric)]
    plain = all(str(integer(t)) == t and in_int64(t) for t, n in zip(text, numeric) if n)
    return ([integer(t) if n else t for t, n in zip(text, numeric)] if plain else text), bad


def timestamp(value: str) -> float | None:
    """A finite number, else None (then the row is skipped)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- feature tables ---------------------------------------------------------------------


def features_case(rng: random.Random) -> tuple[bytes, FileCase]:
    """A clean pairs file and a damaged item feature TSV (item, year, genres)."""
    log = base_log(rng)
    pairs = ("\n".join(f"{u} {i}" for u, i in log) + "\n").encode()
    items = sorted({i for _, i in log})
    rows = [[str(i), str(1950 + rng.randrange(70)), rng.choice(["Drama", "Drama|War", "", "Comedy"])] for i in items]
    lines = ["\t".join(r) for r in rows]
    for index in pick_lines(len(lines), rng):
        lines[index] = corrupt_tokens(rows[index], rng, "\t")
    if rng.random() < 0.1:  # the same item twice
        lines.append(lines[0])
    header = rng.choice(["item\tyear\tgenres"] * 9 + ["movie\tyear\tgenres", "item\tyear\tyear"])
    text = "\n".join([header, *lines]) + "\n"
    data, _ = file_level(rng, text)
    max_bad = rng.choice([0.01, 0.05, 0.2])
    case = FileCase("features", data, {"max_bad_fraction": max_bad, "cache": False})
    case.rows = [(u, i) for u, i in log]
    expect_features(case, max_bad)
    return pairs, case


def expect_features(case: FileCase, max_bad: float) -> None:
    text = decoded(case)
    if text is None or not text.strip():
        case.error = "not valid utf-8" if text is None else "empty"
        return
    lines = [line.rstrip("\r") for line in text.split("\n")]
    header = lines[0].split("\t")
    if header != ["item", "year", "genres"]:
        case.error = "bad header"
        return
    records = [line.split("\t") for line in lines[1:] if line != ""]
    if not records:
        case.error = "no data lines"
        return
    if any(len(r) == 3 and is_integer(r[0]) and not in_int64(r[0]) for r in records):
        case.error = "id outside int64"
        return
    good = [r for r in records if len(r) == 3 and is_integer(r[0])]
    if len(records) - len(good) > max_bad * len(records):
        case.error = "too many malformed lines"
        return
    keys = [integer(r[0]) for r in good]
    if len(set(keys)) != len(keys):
        case.error = "duplicate id"
        return
    years = [r[1].strip() for r in good]
    if any(y and not is_integer(y) and timestamp(y) is None for y in years):
        years_numeric = False
    else:
        years_numeric = True
    case.features = {
        k: (str(integer(y)) if years_numeric and y and is_integer(y) else y, [g for g in r[2].split("|") if g])
        for k, y, r in zip(keys, years, good)
    }
    case.skipped = len(records) - len(good)


# --- MovieLens ml-1m ratings.dat -------------------------------------------------------------


def movielens_case(rng: random.Random) -> FileCase:
    """``user::item::rating::timestamp`` lines (latin-1), some damaged."""
    log = base_log(rng)
    rows = [[str(u), str(i), str(rng.randrange(1, 6)), str(1_000_000 + t)] for t, (u, i) in enumerate(log)]
    lines = ["::".join(r) for r in rows]
    for index in pick_lines(len(lines), rng):
        lines[index] = corrupt_tokens(rows[index], rng, "::")
    text = "\n".join(lines) + "\n"
    data = text.encode("utf-8").replace(b"\x00", b"\x00")
    max_bad = rng.choice([0.01, 0.05, 0.2])
    options = {"max_bad_fraction": max_bad, "cache": False, "preprocess": {"dedup": False}}
    case = FileCase("movielens", data, options)
    expect_movielens(case, max_bad)
    return case


def expect_movielens(case: FileCase, max_bad: float) -> None:
    text = case.data.decode("latin-1")
    text = text[3:] if text.startswith("\xef\xbb\xbf") else text  # a UTF-8 BOM, read as latin-1
    records = [line.rstrip("\r").split("::") for line in text.split("\n") if line.rstrip("\r") != ""]
    width = [r for r in records if len(r) == 4]
    if any(is_integer(v) and not in_int64(v) for r in width for v in (r[0], r[1], r[3])):
        case.error = "id outside int64"
        return
    good = [r for r in width if all(is_integer(v) for v in (r[0], r[1], r[3])) and rating(r[2]) is not None]
    bad = len(records) - len(good)
    if not records or bad > max_bad * len(records):
        case.error = "too many malformed lines"
        return
    case.rows = [(integer(r[0]), integer(r[1]), float(integer(r[3])), rating(r[2])) for r in good]
    case.skipped = bad
    eval_rows_expectation(case)


def rating(value: str) -> float | None:
    number = timestamp(value.strip())
    return number if number is not None else None
