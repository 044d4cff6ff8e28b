"""Every conf/data/*.yaml instantiates through Hydra on small files."""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from data_modules.interactions import InteractionData
from data_modules.preprocessing import PreprocessConfig
from data_modules.sources import sequence_file

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


def instantiate(name: str, **overrides) -> InteractionData:
    cfg = OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)
    return hydra.utils.instantiate(cfg)


def test_all_configs_are_covered():
    expected = {"synthetic", "movielens", "sequence_file", "ncf_split", "tabular"}
    assert {p.stem for p in CONF.glob("*.yaml")} == expected


@pytest.mark.parametrize("name", ["synthetic", "movielens", "sequence_file", "tabular"])
def test_preprocess_block_lists_every_option(name):
    # Every option present means every option is overridable without a '+'.
    block = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml").preprocess)
    assert PreprocessConfig.of(block).to_dict() == block


def test_synthetic_default():
    data = instantiate("synthetic", num_users=50, num_items=60, min_length=5, max_length=10)
    assert data.num_users == 50 and data.report["preprocess"]["split"] == "loo"


def test_ratio_split_override():
    data = instantiate(
        "synthetic", num_users=20, num_items=60, min_length=10, max_length=10,
        preprocess={"split": "ratio", "ratios": [0.6, 0.2, 0.2]},
    )
    assert data.report["split_counts"] == {"train": 120, "val": 40, "test": 40}


def test_sequence_file(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in (1, 2, 3)))
    data = instantiate("sequence_file", path=str(path), cache=False)
    assert len(data.interactions) == 6


def test_tabular(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user,item,timestamp\n1,1,1\n1,2,2\n1,3,3\n")
    assert len(instantiate("tabular", path=str(path), cache_dir=str(tmp_path / "c")).interactions) == 3


def test_movielens(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1::5::10\n1::2::4::11\n1::3::3::12\n")
    data = instantiate("movielens", root=str(tmp_path), download=False, cache=False)
    assert data.num_items == 3 and data.item_features is None  # no movies.dat here


def test_ncf_split(tmp_path):
    (tmp_path / "ml-1m.test.rating").write_text("0\t2\t5\t3\n")
    (tmp_path / "ml-1m.test.negative").write_text("(0,2)\t3\n")
    (tmp_path / "ml-1m.train.rating").write_text("0\t0\t5\t1\n0\t1\t5\t2\n0\t3\t1\t0\n")
    data = instantiate("ncf_split", root=str(tmp_path), cache=False)
    assert data.eval_negatives["test"].tolist() == [[3]]


def test_an_unknown_source_option_names_the_valid_ones(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("1 1\n1 2\n1 3\n")
    with pytest.raises(TypeError, match=r"\['cach'\].*'cache', 'cache_dir'"):
        sequence_file(path, cach=False)


def test_ncf_split_always_uses_the_files_split(tmp_path):
    (tmp_path / "ml-1m.test.rating").write_text("0\t2\t5\t3\n")
    (tmp_path / "ml-1m.test.negative").write_text("(0,2)\t3\n")
    (tmp_path / "ml-1m.train.rating").write_text("0\t0\t5\t1\n0\t1\t5\t2\n0\t3\t1\t0\n")
    data = instantiate("ncf_split", root=str(tmp_path), cache=False, preprocess={"split": "ratio"})
    assert data.report["preprocess"]["split"] == "given"
