"""tabular: CSV/TSV/Parquet with mapped columns, string ids, dates and bad rows."""
from __future__ import annotations

import pandas as pd
import pytest

from data_modules.interactions import TEST, VAL
from data_modules.preprocessing import DataFormatError
from data_modules.sources import tabular


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["u2", "u1", "u1", "u2", "u1", "u2"],
            "sku": ["B", "A", "B", "C", "C", "A"],
            "when": ["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-01", "2024-01-05", "2024-01-02"],
            "stars": [5, 4, 2, 3, 5, 1],
        }
    )


COLUMNS = {"user": "uid", "item": "sku", "timestamp": "when", "rating": "stars"}


def check(data) -> None:
    assert list(data.user_ids) == ["u1", "u2"] and list(data.item_ids) == ["A", "B", "C"]
    inter = data.interactions
    u1 = inter[inter["user"] == 0]
    assert list(data.item_ids[u1["item"]]) == ["A", "B", "C"]  # by date
    assert list(u1["split"][-2:]) == [VAL, TEST]
    assert u1["timestamp"].iloc[0] == 1704067200  # 2024-01-01 UTC in seconds
    assert list(inter["rating"][inter["user"] == 1]) == [3.0, 1.0, 5.0]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_formats(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    if suffix == ".parquet":
        table().to_parquet(path)
    else:
        table().to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    check(tabular(path, columns=COLUMNS, cache=False))


def test_headerless_with_names_and_integer_ids(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("1;10;100\n1;11;200\n2;10;150\n1;12;300\n2;11;50\n")
    columns = {"user": "u", "item": "i", "timestamp": "t"}
    data = tabular(path, sep=";", header=False, names=["u", "i", "t"], columns=columns, cache=False)
    assert data.user_ids.dtype.kind == "i" and list(data.item_ids) == [10, 11, 12]
    assert data.report["preprocess"]["split"] == "loo"


def test_ids_with_leading_zeros_stay_strings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n007,1,1\n7,1,2\n007,2,3\n007,3,4\n")
    data = tabular(path, cache=False)
    assert list(data.user_ids) == ["007", "7"]


def test_missing_column_lists_what_the_file_has(tmp_path):
    path = tmp_path / "log.csv"
    table().to_csv(path, index=False)
    expected = r"\['user', 'item', 'timestamp'\] not found.*'uid', 'sku'.*data.columns"
    with pytest.raises(DataFormatError, match=expected):
        tabular(path, cache=False)
    table().to_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataFormatError, match=r"\['user'\] not found.*data.columns"):
        tabular(tmp_path / "log.parquet", columns={**COLUMNS, "user": "user"}, cache=False)


def test_wrong_separator_gets_a_hint(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user;item;timestamp\n1;2;3\n")
    with pytest.raises(DataFormatError, match="semicolon-separated: set sep=';'"):
        tabular(path, cache=False)


def test_a_bad_timestamp_is_skipped_and_reported(tmp_path):
    frame = pd.DataFrame({"user": [1] * 150, "item": list(range(150)), "timestamp": list(range(150))})
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame.loc[7, "timestamp"] = "yesterday"
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    data = tabular(path, cache=False)
    skipped = data.report["source"]["skipped_rows"]
    assert skipped["count"] == 1 and skipped["bad_timestamp"] == 1 and "yesterday" in skipped["examples"][0]
    assert len(data.interactions) == 149
    frame.loc[:20, "timestamp"] = "yesterday"
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"21 of 150 rows.*bad_timestamp"):
        tabular(path, cache=False)


def test_short_lines_are_counted(tmp_path):
    lines = ["user,item,timestamp"] + [f"{u},{i},{i}" for u in range(10) for i in range(20)]
    lines[5] = "0,4"
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    data = tabular(path, cache=False)
    assert data.report["source"]["skipped_lines"] == 1
    assert data.report["source"]["bad_line_examples"][0].startswith(f"{path}:6: expected 3 fields")


def test_unknown_role(tmp_path):
    path = tmp_path / "log.csv"
    table().to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"unknown role\(s\) \['time'\]"):
        tabular(path, columns={"time": "when"})


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user,item,timestamp\n1,2,3\n1,caf\xe9,4\n")
    with pytest.raises(DataFormatError, match="log.csv:3: not valid utf-8"):
        tabular(path, cache=False)


def test_without_a_timestamp_column_file_order_is_time_order(tmp_path, caplog):
    frame = table().drop(columns=["when"])
    frame.to_parquet(tmp_path / "clicks.parquet")
    frame.to_csv(tmp_path / "clicks.csv", index=False)
    for name in ("clicks.parquet", "clicks.csv"):
        caplog.clear()
        data = tabular(tmp_path / name, columns={"user": "uid", "item": "sku"}, cache=False)
        assert "file order is taken as time order" in caplog.text
        u1 = data.interactions[data.interactions["user"] == 0]
        assert list(data.item_ids[u1["item"]]) == ["A", "B", "C"]  # the file's order
    with pytest.raises(DataFormatError, match=r"\['when'\] not found"):  # a named column must exist
        tabular(tmp_path / "clicks.csv", columns={"user": "uid", "item": "sku", "timestamp": "when"}, cache=False)


def test_byte_order_mark_before_the_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"user,item,timestamp\n" + b"".join(f"{u},{i},{i}\n".encode() for u in (1, 2) for i in range(5)))
    data = tabular(path, cache=False)
    assert len(data.interactions) == 10 and list(data.user_ids) == [1, 2]


def test_a_few_non_numeric_ids_are_skipped_not_turning_all_ids_into_text(tmp_path):
    rows = [f"{u},{i},{i}" for u in range(1, 11) for i in range(1, 21)]
    rows[7] = '1,"8,7'  # a stray quote: its line is malformed, the next one intact
    rows[30] = "2,x7,30"
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    data = tabular(path, cache=False, max_bad_fraction=0.05)
    assert data.item_ids.dtype.kind == "i" and data.user_ids.dtype.kind == "i"
    source = data.report["source"]
    assert source["skipped_lines"] == 1 and source["skipped_rows"]["non_numeric_item"] == 1
    assert len(data.interactions) == 198


def test_ids_beyond_int64_are_kept_exactly_as_text_and_reported(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{i}\n" for u in (1, 2**64) for i in range(1, 5)))
    data = tabular(path, cache=False)
    assert list(data.user_ids) == ["1", str(2**64)]
    assert "outside int64" in data.report["source"]["ids_as_text"]["user"]
