"""ncf_split on tiny files in NCF's published format."""
from __future__ import annotations

import numpy as np
import pytest

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.preprocessing import DataFormatError
from data_modules.sources import ncf_split

# User 0: timestamps descending like NCF's file, items 2 and 1 tie at 300 (1 is the later line).
TRAIN_LINES = [
    "0\t2\t4\t300", "0\t1\t4\t300", "0\t0\t3\t100", "1\t3\t5\t50", "1\t4\t2\t60", "2\t0\t1\t0", "2\t5\t1\t0",
]  # fmt: skip
TEST_LINES = ["0\t3\t5\t400", "1\t5\t4\t70", "2\t4\t3\t10"]
NEG_LINES = ["(0,3)\t4\t5", "(1,5)\t0\t1", "(2,4)\t1\t4"]


def write(folder, train=TRAIN_LINES, test=TEST_LINES, neg=NEG_LINES, name="ml-1m"):
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, lines in (("train.rating", train), ("test.rating", test), ("test.negative", neg)):
        (folder / f"{name}.{suffix}").write_text("\n".join(lines) + "\n")
    return folder


def split_of(data) -> dict:
    inter = data.interactions
    return {(int(u), int(i)): int(s) for u, i, s in zip(inter["user"], inter["item"], inter["split"])}


def test_split_validation_and_negatives(tmp_path):
    data = ncf_split(write(tmp_path), cache=False)
    np.testing.assert_array_equal(data.user_ids, [0, 1, 2])
    np.testing.assert_array_equal(data.item_ids, np.arange(6))
    splits = split_of(data)
    assert [k for k, s in splits.items() if s == TEST] == [(0, 3), (1, 5), (2, 4)]
    # Last training interaction by time; ties go to the later line.
    assert [k for k, s in splits.items() if s == VAL] == [(0, 1), (1, 4), (2, 5)]
    assert sum(s == TRAIN for s in splits.values()) == 4
    np.testing.assert_array_equal(data.eval_negatives["test"], [[4, 5], [0, 1], [1, 4]])
    negatives = data.report["source"]["negatives"]
    assert negatives == {
        "per_user": 2, "users_whose_negatives_contain_the_target": 1, "dense_ids_equal_raw": True,
    }


def test_without_validation(tmp_path):
    data = ncf_split(write(tmp_path), validation="none", cache=False)
    assert (data.interactions["split"] != VAL).all()


def test_negative_pair_must_match_test_pair(tmp_path):
    write(tmp_path, neg=["(0,3)\t4\t5", "(1,2)\t0\t1", "(2,4)\t1\t4"])
    with pytest.raises(DataFormatError, match=r"test.negative:2: pair \(1,2\) does not match.*\(1,5\)"):
        ncf_split(tmp_path, cache=False)


def test_negative_lines_must_have_the_same_length(tmp_path):
    write(tmp_path, neg=["(0,3)\t4\t5", "(1,5)\t0", "(2,4)\t1\t4"])
    with pytest.raises(DataFormatError, match=r"test.negative:2: expected '\(user,item\)' and 2"):
        ncf_split(tmp_path, cache=False)


def test_filtering_that_removes_negative_items_is_an_error(tmp_path):
    write(tmp_path)
    with pytest.raises(DataFormatError, match="disable k-core filtering"):
        ncf_split(tmp_path, preprocess={"min_item_interactions": 2}, cache=False)


def test_missing_file_names_the_fix(tmp_path):
    write(tmp_path)
    (tmp_path / "ml-1m.test.negative").unlink()
    with pytest.raises(FileNotFoundError, match="set data.root"):
        ncf_split(tmp_path)


def test_bad_test_line_is_an_error_not_a_skip(tmp_path):
    write(tmp_path, test=["0\t3\t5\t400", "1\tfive\t4\t70", "2\t4\t3\t10"])
    with pytest.raises(DataFormatError, match="test.rating:2: item='five'"):
        ncf_split(tmp_path, cache=False)


def test_random_validation_holds_out_one_training_row_per_user(tmp_path) -> None:
    """Random hold-out (the NCF paper's validation): one VAL row per user with >= 2 rows."""
    import numpy as np

    from data_modules.interactions import TEST, TRAIN, VAL
    from data_modules.sources import ncf_split

    train_lines = ["0\t1\t5\t10", "0\t2\t4\t20", "0\t3\t3\t30", "1\t0\t5\t10", "2\t2\t5\t5", "2\t3\t5\t6"]
    (tmp_path / "toy.train.rating").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "toy.test.rating").write_text("0\t0\t5\t40\n1\t1\t5\t40\n2\t1\t5\t40\n")
    (tmp_path / "toy.test.negative").write_text("(0,0)\t3\n(1,1)\t3\n(2,1)\t0\n")
    data = ncf_split(tmp_path, name="toy", validation="random", cache=False)
    rows = data.interactions
    val = rows[rows["split"] == VAL]
    assert sorted(data.user_ids[val["user"]].tolist()) == [0, 2]  # user 1 has one training row
    assert (rows["split"] == TEST).sum() == 3 and (rows["split"] == TRAIN).sum() == 4
    again = ncf_split(tmp_path, name="toy", validation="random", cache=False).interactions
    np.testing.assert_array_equal(again["split"].to_numpy(), rows["split"].to_numpy())
