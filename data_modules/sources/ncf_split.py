"""The published NCF split (He et al. 2017): ``<name>.train.rating``, ``<name>.test.rating``
and ``<name>.test.negative`` in one folder.

- ``*.rating``: ``user<TAB>item<TAB>rating<TAB>timestamp``, 0-based ids.
- ``*.test.negative``: ``(user,item)`` then the user's sampled negatives, tab-separated.

The split is the files' own: TEST is the ``test.rating`` pair; VAL is each user's last
training interaction by timestamp (ties: the later line), so model selection never
looks at the test pair. ``eval_negatives["test"]`` holds the given negatives as
``[num_users, n]`` internal ids, row ``u`` for internal user ``u``. The ids are
already dense and 0-based, so internal ids equal NCF's ids unless filtering removes some.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Unpack

import numpy as np
import pandas as pd

from data_modules.id_index import IdIndex
from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from data_modules.preprocessing import DataFormatError
from data_modules.sources._common import Loader, SourceOptions, expands_paths
from data_modules.sources._features import optional_feature_table
from data_modules.sources._reading import parse_int64, read_delimited, read_text, require_file, text_lines

COLUMNS = ["user", "item", "rating", "timestamp"]
DTYPES = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}
VALIDATION = ("last", "random", "none")


@expands_paths
def ncf_split(
    root: str | os.PathLike,
    name: str = "ml-1m",
    validation: str = "last",
    item_features_path: str | os.PathLike | None = None,
    **options: Unpack[SourceOptions],
) -> InteractionData:
    """Load NCF's files; ``preprocess.split`` is always ``given`` (the files' split).

    ``validation``: ``last`` holds out each user's latest training line as VAL,
    ``random`` a random one (the paper's choice), ``none`` keeps every line in TRAIN.
    """
    if validation not in VALIDATION:
        raise ValueError(f"ncf_split validation={validation!r} is unknown; use one of {VALIDATION}")
    root = Path(root)
    hint = f"set data.root to the folder holding NCF's {name}.train.rating/.test.rating/.test.negative"
    train_path, test_path, neg_path = (
        require_file(root / f"{name}.{suffix}", hint)
        for suffix in ("train.rating", "test.rating", "test.negative")
    )
    load = Loader.of(f"ncf-{name}", options, split="given")
    files = [train_path, test_path, neg_path]
    if item_features_path:
        files.append(Path(item_features_path))

    def build() -> InteractionData:
        train, train_report = read_delimited(
            train_path, sep="\t", names=COLUMNS, dtypes=DTYPES, max_bad_fraction=load.max_bad_fraction,
            progress=load.progress,
        )
        # Every test pair is needed: a damaged test file is an error, never a skip.
        test, _ = read_delimited(test_path, sep="\t", names=COLUMNS, dtypes=DTYPES, max_bad_fraction=0.0)
        negatives = read_negatives(neg_path, test)
        raw = _with_split(train, test, validation)
        report = {"train_file": train_report, "test_users": len(test)}
        items = optional_feature_table(item_features_path, "item", report)
        data = load.preprocess(raw, report, items)
        _attach_negatives(data, test["user"].to_numpy(), negatives)
        return data

    settings = {"name": name, "validation": validation, "max_bad_fraction": load.max_bad_fraction}
    return load.cached(build, source="ncf_split", settings=settings, files=files, data_root=root)


def read_negatives(path: Path, test: pd.DataFrame) -> np.ndarray:
    """``[len(test), n]`` raw negative ids, row ``k`` for ``test`` row ``k``; strict."""
    lines = text_lines(read_text(path))
    fields = pd.Series(lines).str.rstrip("\r").str.split("\t", regex=False)
    widths = fields.str.len().to_numpy()
    width = int(np.bincount(widths).argmax()) if len(widths) else 0
    wrong = np.flatnonzero(widths != width)
    if len(wrong) or width < 2:
        line = int(wrong[0]) if len(wrong) else 0
        raise DataFormatError(
            f"{path}:{line + 1}: expected '(user,item)' and {width - 1} tab-separated negatives "
            f"like the other lines, got {widths[line] - 1 if len(widths) else 0}; "
            "every test user needs its negatives, so the file must be complete"
        )
    table = pd.DataFrame(fields.tolist())
    pair = table[0].str.extract(r"^\((?P<user>-?[0-9]+),(?P<item>-?[0-9]+)\)$")
    bad_pair = pair["user"].isna().to_numpy()
    cells = np.column_stack([pair.fillna("0").to_numpy(dtype=object), table.iloc[:, 1:].to_numpy(dtype=object)])
    values, not_integer, outside = parse_int64(cells.ravel())
    values, bad = values.reshape(cells.shape), (not_integer | outside).reshape(cells.shape)
    if bad_pair.any() or bad.any():
        line = int(np.flatnonzero(bad_pair | bad.any(axis=1))[0])
        raise DataFormatError(
            f"{path}:{line + 1}: expected '(user,item)' then integer item ids (within int64), "
            f"got {lines[line][:80]!r}"
        )
    users, items, negatives = values[:, 0], values[:, 1], values[:, 2:]
    order = pd.Index(users)
    if len(order) != len(test):
        raise DataFormatError(
            f"{path} has {len(order)} lines but test.rating has {len(test)}; "
            "they must list the same users"
        )
    if order.has_duplicates:
        raise DataFormatError(f"{path}: user {order[order.duplicated()][0]} has two lines")
    rows = IdIndex(users, "negatives user").lookup(test["user"].to_numpy())
    if (rows < 0).any():
        missing = test["user"].to_numpy()[rows < 0][0]
        raise DataFormatError(f"{path}: no negatives line for test user {missing}")
    mismatch = items[rows] != test["item"].to_numpy()
    if mismatch.any():
        k = int(np.flatnonzero(mismatch)[0])
        raise DataFormatError(
            f"{path}:{rows[k] + 1}: pair ({users[rows[k]]},{items[rows[k]]}) does not match the "
            f"test.rating pair ({test['user'].iloc[k]},{test['item'].iloc[k]}); the files are from "
            "different splits"
        )
    return negatives[rows]


def _with_split(train: pd.DataFrame, test: pd.DataFrame, validation: str) -> pd.DataFrame:
    """Raw table with a ``split`` column: test pairs TEST, last train row per user VAL."""
    if test["user"].duplicated().any():
        user = test["user"][test["user"].duplicated()].iloc[0]
        raise DataFormatError(f"test.rating has more than one line for user {user}")
    split = np.full(len(train), TRAIN, dtype=np.int8)
    if validation == "last" and len(train):
        order = np.lexsort((train["timestamp"].to_numpy(), train["user"].to_numpy()))
        users_sorted = train["user"].to_numpy()[order]
        last = np.r_[users_sorted[1:] != users_sorted[:-1], True]
        split[order[last]] = VAL
    elif validation == "random" and len(train):
        # The NCF paper's choice (section 4.1): one random training interaction per user
        # (seeded), so the most recent history stays in training. Users with a single
        # training row keep it.
        users = train["user"].to_numpy()
        order = np.lexsort((np.random.default_rng(0).random(len(train)), users))
        users_sorted = users[order]
        first = np.r_[True, users_sorted[1:] != users_sorted[:-1]]
        counts = np.bincount(np.unique(users_sorted, return_inverse=True)[1])
        has_two = np.repeat(counts >= 2, counts)
        split[order[first & has_two]] = VAL
    train = train.assign(split=split)
    return pd.concat([train, test.assign(split=np.int8(TEST))], ignore_index=True)


def _attach_negatives(data: InteractionData, test_users: np.ndarray, negatives: np.ndarray) -> None:
    """Store negatives as internal ids, one row per internal user."""
    users = IdIndex(data.user_ids, "user").lookup(test_users)
    kept = users >= 0
    items = IdIndex(data.item_ids, "item").lookup(negatives[kept])
    if (items < 0).any():
        raise DataFormatError(
            f"{int((items < 0).sum())} test negatives are items that filtering removed or that "
            "never occur in the rating files; disable k-core filtering for ncf_split "
            "(min_user_interactions/min_item_interactions: 0)"
        )
    out = np.full((data.num_users, negatives.shape[1]), -1, dtype=np.int64)
    out[users[kept]] = items
    if (out < 0).any():
        missing = data.user_ids[np.flatnonzero((out < 0).any(axis=1))[0]]
        raise DataFormatError(f"user {missing} has interactions but no test.negative line")
    test_users_internal, test_items = data.targets(TEST)
    contains = (out[test_users_internal] == test_items[:, None]).any(axis=1)
    data.eval_negatives["test"] = out
    data.report["source"]["negatives"] = {
        "per_user": int(negatives.shape[1]),
        "users_whose_negatives_contain_the_target": int(contains.sum()),
        "dense_ids_equal_raw": bool(
            np.array_equal(data.user_ids, np.arange(data.num_users))
            and np.array_equal(data.item_ids, np.arange(data.num_items))
        ),
    }
