"""The training sequence: data -> model -> fit -> best checkpoint -> test -> metrics.json.

Kept as one straight function so a reader sees the whole run at once; every object
comes from the config through ``_target_``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from train.runs.artifacts import save_run_artifacts
from train.building import build_with_data, instantiate_with
from train.training.config_checks import check_memory_fit, check_validation_rows
from train.training.console import console_callbacks, count_parameters, quiet_loggers, quiet_third_party
from train.training.atomic_checkpoints import atomic_checkpoints
from train.training.checkpoint_checksums import checksum_checkpoints
from train.training.compilation import compile_model
from train.training.incremental import align_with_previous_run, warm_start
from train.training.threads import check_setting, configure_threads
from train.runs.results import flat_metrics, results_table, write_metrics
from train.training.resolvers import register_resolvers
from train.training.resume import resume_checkpoint
from train.training.tracking import build_loggers, log_config, publish_results, tracking_callbacks

log = logging.getLogger(__name__)


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """Configured callbacks plus the curriculum's (``curriculum=none`` adds nothing)."""
    nodes = [*(cfg.get("callbacks") or {}).values(), cfg.get("curriculum")]
    return [hydra.utils.instantiate(node) for node in nodes if node and "_target_" in node]


def checkpoint_callback(callbacks: list[pl.Callback]) -> ModelCheckpoint | None:
    return next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)


def first(results: list[dict[str, float]]) -> dict[str, float]:
    """The one dataloader's metrics; ``{}`` when Lightning ran none (``limit_*_batches=0``)."""
    return results[0] if results else {}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, keep the best checkpoint by ``cfg.monitor`` (``protocol=refit``: the last),
    test it, write metrics.json."""
    register_resolvers()  # ${recflow.precision:} in trainer configs composed outside the commands
    output_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    check_setting(cfg.get("num_threads"))  # a bad value fails before the data loads
    quiet_third_party()
    started = time.perf_counter()

    data = hydra.utils.instantiate(cfg.data)
    data = align_with_previous_run(data, cfg.get("init_from"))  # old raw ids keep their rows
    check_memory_fit(cfg, data.num_items)  # the item table and loss fit, or an error naming the fix
    log.info(data.summary())
    has_validation = check_validation_rows(cfg, data)  # none: only with protocol=refit
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    for initialise in (cfg.model.get("initialisers") or {}).values():
        hydra.utils.instantiate(initialise)(model)  # e.g. NeuMF from pre-trained GMF/MLP
    model = warm_start(model, data, cfg)  # init_from: previous weights, grown for new ids
    model = compile_model(model, cfg)  # compile=: torch.compile in place (same state-dict keys)
    datamodule = instantiate_with(cfg.model.datamodule, data=data, eval_spec=evaluator.spec, seed=cfg.seed)
    task = build_with_data(cfg.model.task, data, {"seed": cfg.seed}, model=model, evaluator=evaluator)

    loggers = build_loggers(cfg)  # W&B: named, tagged, same id when resumed (tracking.py)
    quiet_loggers(loggers)
    callbacks = build_callbacks(cfg)
    callbacks += tracking_callbacks(callbacks, loggers)
    callbacks += console_callbacks(cfg.trainer)  # parameter summary (embedding vs dense), progress bar
    trainer: pl.Trainer = instantiate_with(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_model_summary=False
    )
    atomic_checkpoints(trainer)  # <ckpt>.part, fsync, rename: a kill never leaves half a checkpoint
    checksum_checkpoints(trainer)  # <ckpt>.sha256 written on save, checked before every load
    configure_threads(cfg.get("num_threads"), count_parameters(model).total, processes=trainer.num_devices)
    log_config(loggers, cfg)

    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg))
    checkpoint = checkpoint_callback(callbacks)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    # protocol=refit trained on the validation rows: there is nothing left to validate on.
    val = first(trainer.validate(task, datamodule=datamodule, ckpt_path=best, verbose=False)) if has_validation else {}
    test = first(trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False))
    if trainer.is_global_zero:  # what infer/serve/profile reload
        save_run_artifacts(output_dir, cfg, data, best, model=model)

    metrics = flat_metrics(
        val,
        test,
        protocol=evaluator.protocol_name,
        model=cfg.model.name,
        data=data.name,
        best_checkpoint=best,
        epochs=trainer.current_epoch,
        train_seconds=round(time.perf_counter() - started, 1),
    )
    report_results(output_dir, metrics)
    publish_results(loggers, metrics, output_dir / "metrics.json")  # summary, artifacts (log_model)
    return metrics


@rank_zero_only
def report_results(output_dir: Path, metrics: dict[str, Any]) -> None:
    write_metrics(output_dir / "metrics.json", metrics)
    text = (f"Protocol: {metrics['protocol']}  model: {metrics['model']}  data: {metrics['data']}\n"
            f"{results_table(metrics)}\n\nRun directory: {output_dir.resolve()}  (metrics.json, checkpoints, logs)")
    if logging.getLogger().hasHandlers():  # under Hydra: the console and the run's train.log
        log.info("results\n%s", text)
    else:
        print(f"\n{text}")
