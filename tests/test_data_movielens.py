"""MovieLens readers on tiny files in each release's format."""
from __future__ import annotations

import numpy as np
import pytest

from data_modules.interactions import TEST, VAL
from data_modules.preprocessing import DataFormatError
from data_modules.sources import movielens


def ratings_lines(sep: str, users=range(1, 6), items=range(1, 41)) -> list[str]:
    return [f"{u}{sep}{i}{sep}{(u * i) % 5 + 1}{sep}{978300000 + 7 * i + u}" for u in users for i in items]


def write_1m(folder, ratings: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n")
    movies = [f"{i}::Movie {i} (19{50 + i})::Comedy|Drama" for i in range(1, 41)]
    movies[0] = "1::Café Society, The (1999)::Drama"  # Latin-1 byte é
    movies[1] = "2::Toy Story (1995)::Animation|Children's|Comedy"
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    ages = [1, 18, 25, 35, 45]
    users = [f"{u}::{'F' if u % 2 else 'M'}::{ages[u - 1]}::{u + 3}::0{u}123" for u in range(1, 6)]
    (folder / "users.dat").write_text("\n".join(users) + "\n")


def test_ml1m_reads_ratings_and_features(tmp_path):
    write_1m(tmp_path / "ml-1m", ratings_lines("::"))
    data = movielens("ml-1m", root=tmp_path, download=False, cache=False)
    assert (data.num_users, data.num_items, len(data.interactions)) == (5, 40, 200)
    items = data.item_features
    assert items.loc[0, "title"] == "Café Society, The" and int(items.loc[0, "year"]) == 1999
    assert items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    users = data.user_features
    assert list(users.columns) == ["gender", "age", "occupation", "zip"]
    assert users.loc[0, "zip"] == "01123" and users.loc[1, "gender"] == "M"
    # Per user the last two ratings by time are VAL and TEST (time grows with item id).
    last = data.interactions.groupby("user").tail(2)
    assert list(data.item_ids[last["item"]][:2]) == [39, 40]
    assert list(last["split"][:2]) == [VAL, TEST]


def test_root_may_be_the_release_folder(tmp_path):
    write_1m(tmp_path / "ml-1m", ratings_lines("::"))
    data = movielens("ml-1m", root=tmp_path / "ml-1m", download=False, cache=False)
    assert data.num_users == 5


def test_few_malformed_lines_are_skipped_and_reported(tmp_path):
    lines = ratings_lines("::")
    lines[9] = "3::7::4"  # line 10: a field missing
    lines[19] = "3::x::4::978300000"  # line 20: not a number
    write_1m(tmp_path / "ml-1m", lines)
    data = movielens("ml-1m", root=tmp_path, download=False, cache=False, max_bad_fraction=0.05)
    source = data.report["source"]
    assert source["skipped_lines"] == 2 and len(data.interactions) == 198
    assert "ratings.dat:10: expected 4 fields" in source["bad_line_examples"][0]
    assert "ratings.dat:20: item='x' is not an integer" in source["bad_line_examples"][1]


def test_many_malformed_lines_are_an_error_with_location(tmp_path):
    write_1m(tmp_path / "ml-1m", ratings_lines("\t"))  # wrong separator everywhere
    with pytest.raises(DataFormatError) as info:
        movielens("ml-1m", root=tmp_path, download=False, cache=False)
    message = str(info.value)
    assert "ratings.dat:1: expected 4 fields separated by '::', got 1" in message
    assert "200 of 200 lines" in message and "tab-separated" in message


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="set download=true"):
        movielens("ml-1m", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="unknown MovieLens release 'ml-2m'"):
        movielens("ml-2m", root=tmp_path)


def test_ml100k_format(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("\n".join(ratings_lines("\t", users=(1, 2), items=range(1, 6))) + "\n")
    flags = lambda on: "|".join("1" if g in on else "0" for g in range(19))  # noqa: E731
    items = [f"{i}|Film {i} (1994)|01-Jan-1994||http://x|{flags({1, 5})}" for i in range(1, 6)]
    items[2] = f"3|unknown||||{flags({0})}"  # ml-100k's item without title year or date
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    data = movielens("ml-100k", root=tmp_path, download=False, cache=False)
    feats = data.item_features
    assert feats.loc[0, "genres"] == ["Action", "Comedy"]
    assert feats.loc[2, "genres"] == ["unknown"] and feats["year"].isna().sum() == 1
    assert data.user_features.loc[1, "occupation"] == "other" and data.user_features.loc[1, "age"] == 53


def test_ml20m_csv_with_quoted_titles(tmp_path):
    folder = tmp_path / "ml-20m"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        + "\n".join(ratings_lines(",", users=(1, 2), items=(1, 2, 3)))
        + "\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n'
        "2,Heat (1995),Action\n3,Nothing (2003),(no genres listed)\n"
    )
    data = movielens("ml-20m", root=tmp_path, download=False, cache=False)
    assert len(data.interactions) == 6 and data.user_features is None
    assert data.item_features.loc[0, "title"] == "American President, The"
    assert data.item_features.loc[2, "genres"] == []
    first_user = data.interactions[data.interactions["user"] == 0]
    np.testing.assert_array_equal(first_user["rating"], [2.0, 3.0, 4.0])  # (u * i) % 5 + 1


def test_ids_never_pass_through_float(tmp_path):
    """An id written like a float ("1e3", "0x1F") once made the parser read the whole
    column as floats and round ids above 2**53; such lines are skipped, the rest exact."""
    big = 2**53 + 1
    lines = ratings_lines("::", users=range(big, big + 5))
    lines[7] = lines[7].replace("::8::", "::1e3::")
    lines[9] = lines[9].replace("::10::", "::0x1F::")
    write_1m(tmp_path / "ml-1m", lines)
    data = movielens("ml-1m", root=tmp_path, download=False, features=False, cache=False, max_bad_fraction=0.05)
    assert list(data.user_ids) == list(range(big, big + 5))
    assert data.report["source"]["skipped_lines"] == 2
    first = data.interactions[data.interactions["user"] == 0]
    assert sorted(data.item_ids[first["item"]]) == [i for i in range(1, 41) if i not in (8, 10)]
    assert 1000 not in set(data.item_ids)
    assert sorted(first["timestamp"]) == [978300000 + 7 * i + big for i in range(1, 41) if i not in (8, 10)]


def test_ids_outside_int64_are_errors(tmp_path):
    lines = ratings_lines("::")
    lines[3] = lines[3].replace("1::", f"{2**64}::", 1)
    write_1m(tmp_path / "ml-1m", lines)
    with pytest.raises(DataFormatError, match=r"ratings.dat:4: user='18446744073709551616' is outside the 64-bit"):
        movielens("ml-1m", root=tmp_path, download=False, features=False, cache=False)


def test_extra_fields_are_malformed_not_dropped(tmp_path):
    lines = ratings_lines("::")
    lines[0] += "::7"
    write_1m(tmp_path / "ml-1m", lines)
    data = movielens("ml-1m", root=tmp_path, download=False, features=False, cache=False)
    assert data.report["source"]["skipped_lines"] == 1
    assert "expected 4 fields separated by '::', got 5" in data.report["source"]["bad_line_examples"][0]
