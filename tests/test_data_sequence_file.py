"""sequence_file: pairs/rows layouts, auto-detection, features, malformed lines."""
from __future__ import annotations

import pytest

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.preprocessing import DataFormatError
from data_modules.sources import sequence_file

SEQUENCES = {1: [5, 3, 9, 4], 2: [3, 5, 7], 3: [9, 8, 3, 5, 6]}


def pairs_text(sequences=SEQUENCES) -> str:
    return "".join(f"{u} {i}\n" for u, items in sequences.items() for i in items)


def rows_text(sequences=SEQUENCES) -> str:
    return "".join(f"{u} " + " ".join(map(str, items)) + "\n" for u, items in sequences.items())


def raw_sequences(data) -> dict:
    inter = data.interactions
    out: dict = {}
    for u, i in zip(data.user_ids[inter["user"]], data.item_ids[inter["item"]]):
        out.setdefault(int(u), []).append(int(i))
    return out


@pytest.mark.parametrize("layout", ["pairs", "rows"])
@pytest.mark.parametrize("declared", ["auto", "explicit"])
def test_layouts_keep_file_order(tmp_path, layout, declared):
    path = tmp_path / "seq.txt"
    path.write_text(pairs_text() if layout == "pairs" else rows_text())
    data = sequence_file(path, format="auto" if declared == "auto" else layout, cache=False)
    assert data.report["source"]["format"] == layout
    assert raw_sequences(data) == SEQUENCES
    first = data.interactions[data.interactions["user"] == 0]
    assert list(first["split"]) == [TRAIN, TRAIN, VAL, TEST]


def test_features_files(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text(pairs_text())
    items = tmp_path / "items.tsv"
    items.write_text(
        "item\tmovie_id\ttitle\tyear\tgenres\n"
        "3\t30\tThree\t1990\tAction|Comedy\n4\t40\tFour\t2000\tDrama\n5\t50\tFive\t1985\t\n"
        "6\t60\tSix\t1999\tWar\n7\t70\tSeven\t1970\tWar\n8\t80\tEight\t1971\tWar\n9\t90\tNine\t1972\tWar\n"
    )
    users = tmp_path / "users.tsv"
    users.write_text("user\tgender\tage\tzip\n1\tF\t25\t02134\n2\tM\t35\t94110\n3\tF\t18\t10001\n")
    data = sequence_file(path, item_features_path=items, user_features_path=users, cache=False)
    feats = data.item_features  # internal item 0 = raw 3
    assert feats.loc[0, "genres"] == ["Action", "Comedy"] and feats.loc[2, "genres"] == []
    assert int(feats.loc[1, "year"]) == 2000 and feats.loc[0, "title"] == "Three"
    assert data.user_features.loc[0, "zip"] == "02134"  # codes keep leading zeros
    assert int(data.user_features.loc[1, "age"]) == 35


def test_feature_file_without_key_column(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text(pairs_text())
    items = tmp_path / "items.tsv"
    items.write_text("movie\tyear\n3\t1990\n")
    with pytest.raises(DataFormatError, match="no 'item' column in the header"):
        sequence_file(path, item_features_path=items, cache=False)


def test_a_few_bad_lines_are_skipped_with_examples(tmp_path):
    lines = [f"{u} {i}" for u in range(1, 11) for i in range(1, 21)]  # 200 lines
    lines[41] = "3 4 5"  # line 42
    path = tmp_path / "seq.txt"
    path.write_text("\n".join(lines) + "\n")
    data = sequence_file(path, cache=False)
    source = data.report["source"]
    assert source["format"] == "pairs" and source["skipped_lines"] == 1
    assert source["bad_line_examples"] == [f"{path}:42: expected 2 tokens (user item), got 3: '3 4 5'"]
    assert len(data.interactions) == 199


def test_non_numeric_ids(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("a x\na y\nb x\nb z\na z\n")
    with pytest.raises(DataFormatError, match=r"(?s)seq.txt:1: non-integer id.*set numeric_ids: false"):
        sequence_file(path, cache=False)
    data = sequence_file(path, numeric_ids=False, cache=False)
    assert list(data.user_ids) == ["a", "b"] and data.num_items == 3


def test_rows_layout_with_many_tokens_declared_as_pairs(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text(rows_text())
    with pytest.raises(DataFormatError, match="(?s)3 of 3 lines are malformed.*set format: rows"):
        sequence_file(path, format="pairs", cache=False)


def test_user_line_without_items_is_counted(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text(rows_text() + "4\n")
    data = sequence_file(path, format="rows", cache=False)
    assert data.report["source"]["users_without_items"] == 1 and data.num_users == 3


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.path"):
        sequence_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        sequence_file(tmp_path / "empty.txt", cache=False)


def test_a_few_wide_lines_do_not_turn_pairs_into_rows(tmp_path):
    """2% of `1 2 3 4` lines once flipped detection to rows and made them user 1's items."""
    lines = [f"{u} {i}" for u in range(1, 51) for i in range(1, 21)]
    for k in range(5, 1000, 50):  # 20 lines
        lines[k] = "1 2 3 4"
    path = tmp_path / "seq.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"20 of 1000 lines are malformed for format='pairs' as detected"):
        sequence_file(path, cache=False)
    data = sequence_file(path, max_bad_fraction=0.05, cache=False)
    assert data.report["source"]["skipped_lines"] == 20 and len(data.interactions) == 980
    assert raw_sequences(data)[1] == [i for i in range(1, 21) if f"1 {i}" in lines]


def test_ids_outside_int64_are_errors_naming_the_line(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u} {i}\n" for u in (2**64, 2**64 + 1) for i in range(1, 6)))
    with pytest.raises(DataFormatError, match=r"seq.txt:1: id='18446744073709551616' is outside.*numeric_ids: false"):
        sequence_file(path, cache=False)
    data = sequence_file(path, numeric_ids=False, cache=False)  # as text: two users, exactly
    assert list(data.user_ids) == [str(2**64), str(2**64 + 1)]


def test_ids_above_2_53_stay_exact_when_a_line_is_bad(tmp_path):
    lines = [f"{2**53 + u} {i}" for u in range(50) for i in range(1, 5)]
    lines[3] = "x 1"
    path = tmp_path / "seq.txt"
    path.write_text("\n".join(lines) + "\n")
    data = sequence_file(path, max_bad_fraction=0.05, cache=False)
    assert data.num_users == 50 and list(data.user_ids) == [2**53 + u for u in range(50)]


def test_a_byte_order_mark_is_stripped(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"\xef\xbb\xbf" + pairs_text().encode())
    data = sequence_file(path, cache=False)
    assert raw_sequences(data) == SEQUENCES and data.report["source"]["skipped_lines"] == 0


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a file; set data.path to a sequence file"):
        sequence_file(tmp_path)


@pytest.mark.parametrize(
    "preprocess, needs",
    [({"split": "loo"}, "at least 3 interactions"), ({"split": "ratio"}, "validation row from 10 and a test row from 10")],
)
def test_users_too_short_for_the_split_fail_before_training(tmp_path, preprocess, needs):
    path = tmp_path / "seq.txt"
    path.write_text("1 5\n1 6\n2 5\n2 7\n3 8\n")
    with pytest.raises(ValueError, match=rf"left no validation and no test rows.*{needs}.*longest of the 3 users has 2"):
        sequence_file(path, preprocess=preprocess, cache=False)
