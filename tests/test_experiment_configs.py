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
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

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


# How each model.net setting shows in the built module (read from the module, not the config).
NET_READERS = {
    "hidden": lambda m: m.hidden,
    "max_len": lambda m: m.max_len,
    "num_blocks": lambda m: len(m.encoder.blocks),
    "num_heads": lambda m: only({block.attn.num_heads for block in m.encoder.blocks}),
    "dropout": lambda m: m.encoder.drop.p,
    "tied_output": lambda m: m.output_emb is None,
    "mf_dim": lambda m: m.gmf.item_emb.embedding_dim,
}


def only(values: set) -> object:
    assert len(values) == 1, values
    return values.pop()


def experiment_file(name: str) -> DictConfig:
    """The experiment's own settings, read from its file (independently of composition)."""
    return OmegaConf.load(Path(CONF_DIR) / "experiment" / f"{name}.yaml")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_on_tiny_data(name: str, tmp_path: Path) -> None:
    cfg = experiment_config(name)
    data = hydra.utils.instantiate(tiny_config(tmp_path).data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    datamodule = instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    task = build_with_data(cfg.model.task, data, model=model, evaluator=evaluator)
    assert task.model is model
    assert type(datamodule) is get_object(cfg.model.datamodule._target_) and datamodule.data is data
    assert datamodule.eval_spec is evaluator.spec  # evaluation rows come from the data module
    if hasattr(task, "item_popularity"):  # statistics arrive at construction, from the data
        assert (task.item_popularity == data.item_popularity()).all()
    # The experiment file's own settings reached the built objects.
    own = experiment_file(name).get("model", {})
    for key, value in (own.get("net") or {}).items():
        assert NET_READERS[key](model) == value, f"model.net.{key}"
    if "batch_size" in (own.get("datamodule") or {}):  # pairs: instances per step -> positives per step
        per_step = 1 + own.datamodule.get("num_negatives", 0) if hasattr(datamodule, "negative_sampler") else 1
        assert datamodule.batch_size == own.datamodule.batch_size // per_step
    if "ks" in (experiment_file(name).get("eval") or {}):
        assert list(evaluator.ks) == sorted(experiment_file(name).eval.ks)
    loss = (own.get("task") or {}).get("loss")
    if loss is not None:  # built lazily (gSASRec's 256 negatives exceed the tiny catalogue)
        assert task.loss_config == dict(loss)
    lr = ((own.get("task") or {}).get("optimizer") or {}).get("lr")
    if lr is not None:
        optimizer = task.configure_optimizers()
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        assert optimizer.param_groups[0]["lr"] == lr
    if "embedding_l2" in (own.get("task") or {}):
        assert task.embedding_l2 == own.task.embedding_l2


def test_switching_the_loss_keeps_no_option_the_new_loss_lacks() -> None:
    """hstu_ml1m sets sampled-softmax negatives; naming another loss on the command line
    keeps them, which the check reports with the override that removes them."""
    from train.training.config_checks import ConfigError, check_config

    def composed(*extra: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=["experiment=hstu_ml1m", "data.path=x.txt", *extra])

    removals = "'~model.task.loss.num_negatives' '~model.task.loss.negatives'"
    with pytest.raises(ConfigError, match=r"loss.num_negatives .*; model.task.loss.negatives \(taken by: sampled_softmax\) "
                       rf"are not an option of loss 'ce'.*remove with {removals}"):
        check_config(composed("model.task.loss.name=ce"))
    check_config(composed("model.task.loss.name=ce", "~model.task.loss.num_negatives", "~model.task.loss.negatives"))
    with pytest.raises(ConfigError, match=r"loss.negatives \(taken by: sampled_softmax\) is not an option of loss 'gbce'"):
        check_config(composed("model.task.loss.name=gbce"))  # gbce takes num_negatives, not negatives
    check_config(composed("model.task.loss.name=gbce", "~model.task.loss.negatives"))


def test_a_null_loss_option_is_unset(tmp_path: Path) -> None:
    """hstu_large_ce_ml1m clears model=hstu's sampled-softmax options with nulls: the check
    accepts them, the task builds the full CE, and a null elsewhere means the default."""
    from recmodels.losses import FullCrossEntropy, SampledSoftmax
    from train.training.config_checks import check_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=hstu_large_ce_ml1m", "data.path=x.txt"])
    assert cfg.model.task.loss.num_negatives is None and cfg.model.task.loss.negatives is None
    check_config(cfg)
    data = hydra.utils.instantiate(tiny_config(tmp_path).data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    task = build_with_data(cfg.model.task, data, model=model, evaluator=evaluator)
    task.setup("fit")
    assert type(task.loss_fn) is FullCrossEntropy
    assert "weight_averaging" in cfg.callbacks  # the averaged weights are what is chosen and tested

    task_cfg = OmegaConf.merge(cfg.model.task, {"loss": {"name": "sampled_softmax", "num_negatives": None}})
    task = build_with_data(task_cfg, data, model=model, evaluator=evaluator)
    task.setup("fit")
    assert type(task.loss_fn) is SampledSoftmax and task.loss_fn.num_negatives == 256  # its default
