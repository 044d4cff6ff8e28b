"""MovieLens (GroupLens) ml-100k, ml-1m and ml-20m in their original release formats.

``root`` holds one folder per release (``<root>/ml-1m/ratings.dat``), as the official
zip files unpack; ``root`` may also be the release folder itself. Missing files are
downloaded from GroupLens (``download=True``), checked against the published checksum
and unpacked safely. Item features: ``title`` (without the year), ``year`` (from the
title), ``genres`` (list). User features (not in ml-20m): ``gender``, ``age``,
``occupation``, ``zip``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Unpack

import numpy as np
import pandas as pd

from data_modules.download import CHECKSUMS, fetch
from data_modules.interactions import InteractionData
from data_modules.sources._common import Loader, SourceOptions, expands_paths
from data_modules.sources._features import split_lists, split_title_year
from data_modules.sources._reading import read_delimited

log = logging.getLogger(__name__)

BASE_URL = "https://files.grouplens.org/datasets/movielens"
LATIN1 = "latin-1"
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
RATING_DTYPES = {"user": "int", "item": "int", "rating": "float", "timestamp": "int"}


@expands_paths
def movielens(
    name: str = "ml-1m",
    root: str | os.PathLike = "data",
    download: bool = True,
    url: str | None = None,
    base_url: str = BASE_URL,
    checksum: tuple[str, str] | list[str] | None = None,
    features: bool = True,
    **options: Unpack[SourceOptions],
) -> InteractionData:
    """Load a MovieLens release as :class:`InteractionData`.

    ``url`` (whole archive URL) or ``base_url`` (folder holding ``<name>.zip``) override
    the GroupLens address; ``checksum`` (``[algorithm, hexdigest]``) overrides the known
    one, which is looked up by archive file name.
    """
    if name not in READERS:
        raise ValueError(f"unknown MovieLens release {name!r}; use one of {sorted(READERS)}")
    load = Loader.of(name, options)
    archive_url = url or f"{base_url.rstrip('/')}/{name}.zip"
    folder = _locate(name, Path(root), download, archive_url, checksum, load.progress)
    ratings_file, item_file, user_file = (folder / f if f else None for f in FILES[name])
    files = [p for p in (ratings_file, item_file, user_file) if p is not None and p.is_file()]

    def build() -> InteractionData:
        ratings, report = READERS[name][0](ratings_file, load.max_bad_fraction, load.progress)
        items = users = None
        if features:
            items = _optional(item_file, READERS[name][1], "item", report, load.max_bad_fraction)
            users = _optional(user_file, READERS[name][2], "user", report, load.max_bad_fraction)
        return load.preprocess(ratings, {"files": [str(p) for p in files], **report}, items, users)

    settings = {"name": name, "features": features, "max_bad_fraction": load.max_bad_fraction}
    return load.cached(build, source="movielens", settings=settings, files=files, data_root=folder)


def _locate(
    name: str, root: Path, download: bool, url: str, checksum, progress: bool | None
) -> Path:
    """Folder holding the release's ratings file; downloads it when allowed."""
    ratings = FILES[name][0]
    for folder in (root / name, root):
        if (folder / ratings).is_file():
            return folder
    if not download:
        raise FileNotFoundError(
            f"MovieLens {name}: {ratings} not found in {root / name} or {root}; set "
            f"download=true or unpack {name}.zip (from {BASE_URL}) into {root}"
        )
    known = CHECKSUMS.get(url.rstrip("/").rsplit("/", 1)[-1])
    fetch(url, root, tuple(checksum) if checksum else known, progress=progress is not False)
    if not (root / name / ratings).is_file():
        raise FileNotFoundError(
            f"{url} unpacked into {root} but {root / name / ratings} is missing; "
            "check that url/base_url points at the official archive"
        )
    return root / name


def _optional(
    path: Path | None, reader: Callable | None, kind: str, report: dict, max_bad: float
) -> pd.DataFrame | None:
    """Side features when their file exists; a missing file is reported, not fatal."""
    if path is None or reader is None:
        return None
    if not path.is_file():
        log.warning("%s features file %s is missing; continuing without %s features", kind, path, kind)
        report[f"{kind}_features_missing"] = str(path)
        return None
    frame, file_report = reader(path, max_bad)
    if file_report.get("skipped_lines"):
        report[f"{kind}_file"] = file_report
    return frame


# --- ml-100k -------------------------------------------------------------------------


def _ratings_100k(path: Path, max_bad: float, progress) -> tuple[pd.DataFrame, dict]:
    return _ratings(path, "\t", max_bad, progress, header=False)


def _items_100k(path: Path, max_bad: float) -> tuple[pd.DataFrame, dict]:
    flags = [f"genre_{i}" for i in range(len(ML100K_GENRES))]
    names = ["item", "title", "release_date", "video_release_date", "url", *flags]
    dtypes = {"item": "int", "title": "str", "release_date": "str", **{f: "int" for f in flags}}
    frame, report = read_delimited(
        path, sep="|", names=names, dtypes=dtypes, encoding=LATIN1, max_bad_fraction=max_bad
    )
    title, year = split_title_year(frame["title"])
    release_year = pd.to_datetime(frame["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    year = year.fillna(release_year.astype("Int64"))
    mask = frame[flags].to_numpy() > 0
    names_array = np.array(ML100K_GENRES, dtype=object)
    genres = [list(names_array[row]) for row in mask]
    out = pd.DataFrame({"title": title, "year": year, "genres": pd.Series(genres, dtype=object)})
    out.index = pd.Index(frame["item"].to_numpy(), name="item")
    return out, report


def _users_100k(path: Path, max_bad: float) -> tuple[pd.DataFrame, dict]:
    return _users(path, "|", ["user", "age", "gender", "occupation", "zip"], "str", max_bad)


# --- ml-1m ---------------------------------------------------------------------------


def _ratings_1m(path: Path, max_bad: float, progress) -> tuple[pd.DataFrame, dict]:
    return _ratings(path, "::", max_bad, progress, header=False)


def _items_1m(path: Path, max_bad: float) -> tuple[pd.DataFrame, dict]:
    return _movies(path, "::", LATIN1, None, max_bad, header=False)


def _users_1m(path: Path, max_bad: float) -> tuple[pd.DataFrame, dict]:
    return _users(path, "::", ["user", "gender", "age", "occupation", "zip"], "int", max_bad)


# --- ml-20m --------------------------------------------------------------------------


def _ratings_20m(path: Path, max_bad: float, progress) -> tuple[pd.DataFrame, dict]:
    return _ratings(path, ",", max_bad, progress, header=True)


def _items_20m(path: Path, max_bad: float) -> tuple[pd.DataFrame, dict]:
    return _movies(path, ",", "utf-8", '"', max_bad, header=True)


# --- shared --------------------------------------------------------------------------


def _ratings(path: Path, sep: str, max_bad: float, progress, header: bool) -> tuple[pd.DataFrame, dict]:
    frame, report = read_delimited(
        path,
        sep=sep,
        names=RATING_COLUMNS,
        dtypes=RATING_DTYPES,
        header=header,
        encoding=LATIN1 if sep != "," else "utf-8",
        max_bad_fraction=max_bad,
        progress=progress,
    )
    return frame, report


def _users(
    path: Path, sep: str, names: list[str], occupation: str, max_bad: float
) -> tuple[pd.DataFrame, dict]:
    """User table of a file whose fields are ``names``; the columns come out in ``dtypes``
    order (gender, age, occupation, zip) whatever the file's order. Occupations are codes
    in ml-1m and words in ml-100k."""
    dtypes = {"user": "int", "gender": "str", "age": "int", "occupation": occupation, "zip": "str"}
    frame, report = read_delimited(
        path, sep=sep, names=names, dtypes=dtypes, encoding=LATIN1, max_bad_fraction=max_bad
    )
    return frame.set_index("user"), report


def _movies(
    path: Path, sep: str, encoding: str, quotechar: str | None, max_bad: float, header: bool
) -> tuple[pd.DataFrame, dict]:
    frame, report = read_delimited(
        path,
        sep=sep,
        names=["item", "title", "genres"],
        dtypes={"item": "int", "title": "str", "genres": "str"},
        header=header,
        encoding=encoding,
        quotechar=quotechar,
        max_bad_fraction=max_bad,
    )
    title, year = split_title_year(frame["title"])
    out = pd.DataFrame({"title": title, "year": year, "genres": split_lists(frame["genres"], "|")})
    out.index = pd.Index(frame["item"].to_numpy(), name="item")
    return out, report


FILES: dict[str, tuple[str, str, str | None]] = {
    "ml-100k": ("u.data", "u.item", "u.user"),
    "ml-1m": ("ratings.dat", "movies.dat", "users.dat"),
    "ml-20m": ("ratings.csv", "movies.csv", None),
}
READERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "ml-100k": (_ratings_100k, _items_100k, _users_100k),
    "ml-1m": (_ratings_1m, _items_1m, _users_1m),
    "ml-20m": (_ratings_20m, _items_20m, None),
}
