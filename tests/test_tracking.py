"""Run folders and W&B: folder names, run name/tags/group/id, summary and artifacts.

W&B runs offline here; an offline run keeps everything it would upload in
``wandb/offline-run-*/run-<id>.wandb``, a log of protobuf records that
:func:`wandb_records` reads back (the run record holds id, name, group, tags, job type).
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.utils import setup_globals
from omegaconf import OmegaConf

from tests.helpers import CONF_DIR, TINY_DATA, tiny_config
from train.training.run import train
from train.training.run_names import data_name, register_run_label, run_label
from train.training.tracking import RUN_FILE, run_identity, run_tags

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 32 * 1024  # the .wandb log is written in 32 KiB blocks of (crc, length, type) records
TINY_GMF = [*TINY_DATA, "model=gmf", "model.datamodule.batch_size=128", "trainer.enable_progress_bar=false"]
STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"


def wandb_records(run_file: Path) -> Iterator[Any]:
    """The complete protobuf records of an offline run's ``.wandb`` file, in order.

    W&B's writer process may be appending while this reads; a record whose bytes are not
    all there yet ends the scan (``offline_runs`` polls until the exit record)."""
    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B", run_file
    pos, pending = 7, b""
    while pos + 7 <= len(raw):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        if pos + 7 + length > len(raw):  # the writer is still appending this record
            break
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(run_dir: Path, timeout: float = 60.0) -> list[Path]:
    """The offline run files under ``run_dir``, each complete: W&B's writer process may
    still be flushing a finished run's records when training returns."""
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    deadline = time.monotonic() + timeout
    for run_file in files:
        while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_file)):
            assert time.monotonic() < deadline, f"{run_file} has no exit record after {timeout}s"
            time.sleep(0.2)
    return files


def run_record(run_file: Path) -> Any:
    return next(r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run")


def summary_of(run_file: Path) -> dict[str, Any]:
    """The run's final summary: later updates win, as on the W&B server."""
    summary: dict[str, Any] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def history_keys(run_file: Path) -> set[str]:
    return {item.key or "/".join(item.nested_key) for record in wandb_records(run_file)
            if record.WhichOneof("record_type") == "history" for item in record.history.item}


def cli_env() -> dict[str, str]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "TORCHELASTIC_RUN_ID", "RECFLOW_RUN_DIR", "WANDB_API_KEY"):
        env.pop(key, None)
    return env


def train_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m train`` in ``cwd`` (so outputs/ lands there), failing loudly."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"training failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    return done


# -- run folder names -------------------------------------------------------------------
def folder_name(*overrides: str) -> str:
    """``hydra.run.dir`` as the command line with ``overrides`` would resolve it."""
    register_run_label()
    setup_globals()  # ${now:}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return str(OmegaConf.select(cfg, "hydra.run.dir"))


@pytest.mark.parametrize("overrides, label", [
    ((), "neumf_synthetic"),
    (("model=sasrec",), "sasrec_synthetic"),
    (("data=movielens", "data.root=/data"), "neumf_ml-1m"),
    (("data=movielens", "data.root=/data", "data.name=ml-20m"), "neumf_ml-20m"),
    (("data=sequence_file", "data.path=/data/ml-1m.txt", "model=bert4rec"), "bert4rec_ml-1m"),
    (("data=tabular", "data.path=/x/clicks_2024.parquet"), "neumf_clicks-2024"),
    (("data=ncf_split", "data.root=/ncf"), "neumf_ml-1m"),
    (("data=sequence_file",), "neumf_sequence-file"),  # path not given yet: the source's name
])
def test_run_folder_is_named_date_time_model_data(overrides: tuple[str, ...], label: str) -> None:
    name = folder_name(*overrides)
    assert re.fullmatch(rf"outputs/runs/{STAMP}_{label}", name), name


def test_a_sweep_over_models_names_every_model() -> None:
    data = OmegaConf.create({"_target_": "data_modules.sources.synthetic"})
    assert run_label("neumf", data, ["model=gmf,mlp", "seed=1,2"]) == "gmf+mlp_synthetic"
    assert run_label("neumf", data, ["seed=1,2"]) == "neumf_synthetic"
    assert data_name(OmegaConf.create({"name": "a/b c", "path": "x.txt"})) == "a-b-c"


# -- W&B identity ------------------------------------------------------------------------
def test_run_id_is_stored_and_reused_only_when_resuming(tmp_path: Path) -> None:
    first = run_identity(tmp_path, resuming=False, group="sweep-a")
    assert json.loads((tmp_path / RUN_FILE).read_text()) == first
    assert re.fullmatch(r"[0-9a-f]{8}", first["wandb_id"])
    # A resumed session keeps id and group, whatever the launch looks like now.
    assert run_identity(tmp_path, resuming=True, group=None) == first
    # A fresh run in the same folder is another W&B run.
    assert run_identity(tmp_path, resuming=False, group=None)["wandb_id"] != first["wandb_id"]


def test_tags_are_short_and_unique() -> None:
    facts = {"model": "gmf", "data": "synthetic", "loss": "pointwise", "strategy": "single", "curriculum": "none"}
    assert run_tags(facts, ["gmf", "x" * 80]) == [
        "gmf", "synthetic", "loss:pointwise", "strategy:single", "curriculum:none", "x" * 64]


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One in-process offline W&B run of GMF with ``logger.log_model=true``."""
    out = tmp_path_factory.mktemp("wandb_run")
    cfg = tiny_config(out, "model=gmf", "trainer.max_epochs=2", "model.datamodule.batch_size=64", "seed=7",
                      "logger=wandb", "logger.mode=offline", "logger.log_model=true", "logger.tags=[baseline]",
                      "logger.entity=my-team")
    return out, train(cfg)


def test_wandb_run_is_named_tagged_and_keeps_the_folders_id(wandb_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = wandb_run
    (run_file,) = offline_runs(out)
    run = run_record(run_file)
    stored = json.loads((out / RUN_FILE).read_text())
    assert run.run_id == stored["wandb_id"] and run_file.name == f"run-{run.run_id}.wandb"
    assert run.display_name == "gmf-synthetic-pointwise-s7"
    assert list(run.tags) == ["gmf", "synthetic", "loss:pointwise", "strategy:auto", "curriculum:none", "baseline"]
    assert run.job_type == "train" and run.run_group == "" and run.project == "recflow"
    assert run.entity == "my-team"


def test_wandb_summary_holds_the_final_metrics_and_the_lr_is_logged(wandb_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = wandb_run
    (run_file,) = offline_runs(out)
    summary = summary_of(run_file)
    for key in ("test/ndcg@10", "test/hr@10", "val/ndcg@10", "epochs", "model", "best_checkpoint"):
        assert summary[key] == pytest.approx(metrics[key]), key
    assert "lr-Adam" in history_keys(run_file)  # LearningRateMonitor, added because a logger exists


def test_wandb_project_follows_wandb_project_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B users set WANDB_PROJECT; an explicit project in wandb.init would override it."""
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    assert tiny_config(tmp_path, "logger=wandb").logger.project == "from-env"
    assert tiny_config(tmp_path, "logger=wandb", "logger.project=given").logger.project == "given"
    monkeypatch.delenv("WANDB_PROJECT")
    assert tiny_config(tmp_path, "logger=wandb").logger.project == "recflow"


def test_log_model_uploads_the_tested_checkpoint_and_metrics(wandb_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = wandb_run
    (run_file,) = offline_runs(out)
    run_id = run_record(run_file).run_id
    artifacts = {r.artifact.name: r.artifact for r in wandb_records(run_file) if r.WhichOneof("record_type") == "artifact"}
    assert set(artifacts) == {f"model-{run_id}", f"metrics-{run_id}"}
    model, results = artifacts[f"model-{run_id}"], artifacts[f"metrics-{run_id}"]
    assert model.type == "model" and "best" in model.aliases and results.type == "metrics"
    assert [c.path for c in model.manifest.contents] == [Path(metrics["best_checkpoint"]).name]
    assert [c.path for c in results.manifest.contents] == ["metrics.json"]
    assert json.loads(model.metadata)["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"])


def test_without_log_model_nothing_is_uploaded(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model=pop", "logger=wandb", "logger.mode=offline")
    train(cfg)
    (run_file,) = offline_runs(tmp_path)
    assert not [r for r in wandb_records(run_file) if r.WhichOneof("record_type") == "artifact"]
    assert summary_of(run_file)["model"] == "pop"


@pytest.mark.slow
def test_multirun_jobs_share_a_folder_and_a_wandb_group(tmp_path: Path) -> None:
    """`-m seed=1,2`: outputs/multiruns/<date>_<time>_gmf_synthetic/{0,1}, one W&B group named
    after it; a job resumed later keeps its id and group."""
    train_cli(tmp_path, "-m", *TINY_GMF, "logger=wandb", "trainer.max_epochs=1", "seed=1,2")
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    assert re.fullmatch(rf"{STAMP}_gmf_synthetic", sweep.name), sweep.name
    runs = [run_record(f) for job in ("0", "1") for f in offline_runs(sweep / job)]
    assert [r.run_group for r in runs] == [sweep.name, sweep.name]
    assert [r.display_name for r in runs] == ["gmf-synthetic-pointwise-s1", "gmf-synthetic-pointwise-s2"]
    assert len({r.run_id for r in runs}) == 2
    assert "strategy:single" in runs[0].tags
    for job in ("0", "1"):
        assert json.loads((sweep / job / RUN_FILE).read_text())["wandb_group"] == sweep.name

    # A job resumed on its own stays one run in its folder, its W&B run and its group.
    train_cli(tmp_path, f"resume={sweep / '0'}", "trainer.max_epochs=2")
    first, second = (run_record(f) for f in offline_runs(sweep / "0"))
    assert (second.run_id, second.run_group, second.display_name) == (first.run_id, sweep.name, first.display_name)
    assert json.loads((sweep / "0" / "metrics.json").read_text())["epochs"] == 2
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert not (tmp_path / "outputs" / "runs").exists()
