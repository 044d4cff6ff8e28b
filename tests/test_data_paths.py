"""``~`` and ``$VAR`` in every path option: data sources and run folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_modules.paths import expand_path
from data_modules.sources import movielens, ncf_split, sequence_file, tabular
from tests.test_data_movielens import ratings_lines, write_1m
from tests.test_data_ncf_split import write as write_ncf
from train.runs.artifacts import ArtifactError, load_run_artifacts


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home folder (``~``) and ``$DATA`` pointing into it; cwd elsewhere."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATA", str(home / "data"))
    monkeypatch.chdir(tmp_path)
    return home


def test_expand_path_expands_home_and_variables(home: Path) -> None:
    assert expand_path("~/data/x.txt") == home / "data" / "x.txt"
    assert expand_path("$DATA/x.txt") == expand_path("${DATA}/x.txt") == home / "data" / "x.txt"
    assert expand_path("relative/x.txt") == Path("relative/x.txt")


def test_sequence_file_expands_path_features_and_cache_dir(home: Path, tmp_path: Path) -> None:
    (home / "data" / "seq.txt").write_text("".join(f"{u} {i}\n" for u in (1, 2) for i in (1, 2, 3)))
    (home / "data" / "items.tsv").write_text("item\tgenres\n1\tA\n2\tB|C\n3\t\n")
    data = sequence_file(
        "~/data/seq.txt", item_features_path="$DATA/items.tsv", cache_dir="~/cache"
    )
    assert len(data.interactions) == 6 and "genres" in data.item_features.columns
    assert any((home / "cache").iterdir())
    assert not (tmp_path / "~").exists()


def test_every_file_source_expands_its_paths(home: Path, tmp_path: Path) -> None:
    (home / "data" / "log.csv").write_text("user,item,timestamp\n1,1,1\n1,2,2\n1,3,3\n")
    assert len(tabular("$DATA/log.csv", cache=False).interactions) == 3
    write_ncf(home / "data" / "ncf")
    assert ncf_split("~/data/ncf", cache_dir="$DATA/ncf-cache").num_users == 3
    write_1m(home / "data" / "ml-1m", ratings_lines("::"))
    assert movielens("ml-1m", root="~/data", download=False, cache=False).num_users == 5
    assert not (tmp_path / "~").exists() and not (tmp_path / "$DATA").exists()


def test_run_folders_expand_home(home: Path) -> None:
    with pytest.raises(ArtifactError, match=str(home / "runs" / "missing")):
        load_run_artifacts("~/runs/missing")
