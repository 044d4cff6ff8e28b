"""Every published-setting experiment composes and builds its model, data module and task.

The experiments point at MovieLens files the tests cannot ship, so each one is composed
as a user would run it and then built on tiny synthetic data: a key that the model or
task does not accept, or a value it rejects, fails here instead of hours into a GPU job.
"""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from helpers import CONF_DIR, tiny_config
from train.building import build_with_data, instantiate_with

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def experiment_config(name: str) -> DictConfig:
    """As composed for ``python -m train experiment=NAME``; the paths the user would add
    (data files, GMF/MLP checkpoints) stay unset, as the build below never reads them."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={name}"])


def test_every_experiment_is_found() -> None:
    assert {"ncf_ml1m", "sasrec_ml1m_paper", "bert4rec_ml1m", "gsasrec_ml1m"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_on_tiny_data(name: str, tmp_path: Path) -> None:
    cfg = experiment_config(name)
    data = hydra.utils.instantiate(tiny_config(tmp_path).data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    datamodule = instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    task = build_with_data(cfg.model.task, data, model=model, evaluator=evaluator)
    assert task.model is model and datamodule is not None
    assert datamodule.eval_spec is evaluator.spec  # evaluation rows come from the data module
    if hasattr(task, "item_popularity"):  # statistics arrive at construction, from the data
        assert (task.item_popularity == data.item_popularity()).all()
    # The experiment's own model settings reached the module.
    if name == "gsasrec_ml1m":
        assert model.output_emb is not None and model.hidden == 128
    if name.startswith("ncf_ml1m"):
        assert model.gmf.item_emb.embedding_dim == cfg.model.net.mf_dim
