"""A run folder is data: its config may name only recflow's own classes.

Each crafted config carries a live payload (a pickle that creates a marker file when
unpickled, reached through ``pandas.read_pickle``/``numpy.load``); loading must refuse
the target, name it and the file, and the marker must never appear.
"""
from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.helpers import Payload, tiny_config
from tests.serving_runs import trained_run
from train.runs.artifacts import load_run_artifacts
from train.runs.targets import UntrustedConfigError, allowed_targets, checked_run_config
from train.serving import load_recommender
from train.training.incremental import previous_run

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
EVALS = sorted(p.stem for p in (ROOT / "conf" / "eval").glob("*.yaml"))



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("neumf") / "run", "neumf")


def payload_files(folder: Path, marker: Path) -> dict[str, Path]:
    pkl, npy = folder / "payload.pkl", folder / "payload.npy"
    pkl.write_bytes(pickle.dumps(Payload(marker)))
    np.save(npy, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return {"pkl": pkl, "npy": npy}


def crafted_run(run_dir: Path, tmp_path: Path, edit: Callable[[Any, dict[str, Path]], None]) -> tuple[Path, Path]:
    """A copy of ``run_dir`` whose config.yaml is changed by ``edit``; (run, marker)."""
    evil = tmp_path / "evil_run"
    shutil.copytree(run_dir, evil)
    marker = tmp_path / "PAYLOAD_RAN"
    files = payload_files(tmp_path, marker)
    path = evil / "artifacts" / "config.yaml"
    cfg = OmegaConf.load(path)
    edit(cfg, files)
    path.write_text(OmegaConf.to_yaml(cfg))
    return evil, marker


def read_pickle(files: dict[str, Path]) -> dict[str, Any]:
    return {"_target_": "pandas.read_pickle", "filepath_or_buffer": str(files["pkl"])}


def _net(cfg, node) -> None:
    cfg.model.net = node


EDITS: dict[str, tuple[Callable[[Any, dict[str, Path]], None], str]] = {
    "read_pickle": (lambda cfg, f: _net(cfg, read_pickle(f)), "pandas.read_pickle"),
    "numpy_load": (lambda cfg, f: _net(cfg, {"_target_": "numpy.load", "file": str(f["npy"]), "allow_pickle": True}),
                   "numpy.load"),
    "nested_in_model": (lambda cfg, f: cfg.model.net.__setitem__("layers", read_pickle(f)), "pandas.read_pickle"),
    "in_args_list": (lambda cfg, f: cfg.model.net.__setitem__("_args_", [1, [read_pickle(f)]]), "pandas.read_pickle"),
    "eval_node": (lambda cfg, f: cfg.__setitem__("eval", read_pickle(f)), "pandas.read_pickle"),
    "target_by_interpolation": (
        lambda cfg, f: (cfg.model.__setitem__("name", "pandas.read_pickle"),
                        cfg.model.net.__setitem__("_target_", "${model.name}"),
                        cfg.model.net.__setitem__("filepath_or_buffer", str(f["pkl"]))),
        "pandas.read_pickle",
    ),
    "net_by_interpolation": (
        lambda cfg, f: (cfg.__setitem__("elsewhere", read_pickle(f)), cfg.model.__setitem__("net", "${elsewhere}")),
        "pandas.read_pickle",
    ),
    "node_made_by_resolver": (
        lambda cfg, f: cfg.model.net.__setitem__(
            "extra", "${oc.create:{_target_: pandas.read_pickle, filepath_or_buffer: '" + str(f["pkl"]) + "'}}"
        ),
        "pandas.read_pickle",
    ),
    "escaped_interpolation": (
        lambda cfg, f: cfg.model.net.__setitem__(
            "extra", "\\${oc.create:{_target_: pandas.read_pickle, filepath_or_buffer: '" + str(f["pkl"]) + "'}}"
        ),
        "interpolation",
    ),
}
LOADERS: dict[str, Callable[[Path], Any]] = {
    "load_recommender": load_recommender,  # serve, infer, export, profile, evaluate
    "load_run_artifacts": load_run_artifacts,
    "init_from": previous_run,  # incremental training's previous run
}


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The payloads below really run when unpickled: their absence later means something."""
    marker = tmp_path / "PAYLOAD_RAN"
    files = payload_files(tmp_path, marker)
    subprocess.run([sys.executable, "-c", f"import pandas; pandas.read_pickle({str(files['pkl'])!r})"], check=True)
    assert marker.exists()
    marker.unlink()
    subprocess.run([sys.executable, "-c", f"import numpy; numpy.load({str(files['npy'])!r}, allow_pickle=True)"],
                   check=True)
    assert marker.exists()


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("case", sorted(EDITS))
def test_crafted_targets_are_refused_before_anything_runs(run_dir: Path, tmp_path: Path, case: str, loader: str) -> None:
    edit, named = EDITS[case]
    evil, marker = crafted_run(run_dir, tmp_path, edit)
    with pytest.raises(UntrustedConfigError) as caught:
        LOADERS[loader](evil)
    message = str(caught.value)
    assert named in message and str(evil / "artifacts" / "config.yaml") in message
    assert not marker.exists()


def test_cli_commands_refuse_a_crafted_run(run_dir: Path, tmp_path: Path) -> None:
    evil, marker = crafted_run(run_dir, tmp_path, EDITS["read_pickle"][0])
    out = tmp_path / "recs.parquet"
    proc = subprocess.run([sys.executable, "-m", "train.cli.infer", f"run={evil}", f"out={out}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    assert "pandas.read_pickle" in proc.stderr and "config.yaml" in proc.stderr
    assert not marker.exists() and not out.exists()


def test_parts_that_do_not_resolve_are_refused(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"model": {"net": {"_target_": "recmodels.ncf.GMF"}}, "eval": "${oc.env:RECFLOW_UNSET_VAR}"})
    with pytest.raises(UntrustedConfigError, match="config.yaml: eval could not be resolved"):
        checked_run_config(cfg, "config.yaml")
    with pytest.raises(UntrustedConfigError, match="has no model.net section"):
        checked_run_config(OmegaConf.create({"model": {"net": "recmodels.ncf.GMF"}}), "config.yaml")


def test_allowlist_holds_the_project_models_and_evaluator() -> None:
    models = allowed_targets("model")
    assert {"recmodels.ncf.NeuMF", "recmodels.ncf.GMF", "recmodels.ncf.MLP", "recmodels.sasrec.SASRec",
            "recmodels.bert4rec.BERT4Rec", "recmodels.pop.MostPopular", "recmodels.feature_ncf.FeatureNeuMF"} <= models
    assert all(t.startswith("recmodels.") for t in models)
    assert allowed_targets("eval") == {"train.evaluation.Evaluator"}


@pytest.mark.parametrize("model", MODELS)
def test_every_shipped_model_config_passes_unchanged(model: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, f"model={model}")
    resolved = OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True))  # as training saves it
    checked = checked_run_config(resolved, "config.yaml")
    assert OmegaConf.to_container(checked.model.net) == OmegaConf.to_container(resolved.model.net)


@pytest.mark.parametrize("protocol", EVALS)
def test_every_shipped_eval_config_passes(protocol: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, f"eval={protocol}")
    checked = checked_run_config(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
    assert checked.eval._target_ == "train.evaluation.Evaluator"


def test_a_real_run_still_loads(run_dir: Path) -> None:
    model, ctx = load_recommender(run_dir)
    assert type(model).__name__ == "NeuMF" and ctx.cfg.model.net._target_ == "recmodels.ncf.NeuMF"
