"""Experiment loggers: W&B (offline unless credentials exist), CSV, or none.

A W&B run is named and tagged from the config (``<model>-<data>-<loss>-s<seed>``; tags
model, data, loss, strategy, curriculum), grouped by its multirun folder, and keeps one
id per run folder: the id is stored in ``<run>/run.json`` when the run starts and reused
when the run is resumed (``resume`` or ``ckpt_path`` set), so the resumed session logs into the same
W&B run. After the test the final metrics become the run's summary and, with
``logger.log_model=true``, the tested checkpoint and metrics.json become artifacts.
Nothing here is imported by tasks or models: they only call ``self.log``.
"""
from __future__ import annotations

import json
import logging
import netrc
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from train.extras import require
from train.training.run_names import data_name

log = logging.getLogger(__name__)
RUN_FILE = "run.json"  # tracker identity of a run folder: {"wandb_id": ..., "wandb_group": ...}


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def auto_mode() -> str:
    """``WANDB_MODE`` when set (``disabled`` turns W&B off), else online with credentials, else offline."""
    env = {"run": "online", "dryrun": "offline"}.get(os.environ.get("WANDB_MODE", ""), os.environ.get("WANDB_MODE"))
    if env in {"online", "offline", "disabled"}:
        return env
    return "online" if wandb_credentials_present() else "offline"


class RecflowWandbLogger(WandbLogger):
    """WandbLogger that publishes the run's outcome after the test (:meth:`publish`).

    Lightning's own ``log_model`` uploads at the end of ``fit`` (before the test), refuses
    offline runs and cannot add DeepSpeed checkpoint folders; this one does all three.
    """

    def __init__(self, *, upload_outputs: bool = False, **kwargs: Any) -> None:
        super().__init__(log_model=False, **kwargs)
        self.upload_outputs = upload_outputs

    def publish(self, metrics: Mapping[str, Any], metrics_file: Path) -> None:
        """Final metrics as the summary; with ``upload_outputs`` the checkpoint and metrics.json as artifacts."""
        run = self.experiment
        summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
        run.summary.update(summary)
        if self.upload_outputs:
            self._log_artifacts(run, metrics.get("best_checkpoint"), metrics_file, summary)
        run.finish()  # the next run in this process (a sweep's next job) gets its own

    @staticmethod
    def _log_artifacts(run: Any, best: str | None, metrics_file: Path, summary: Mapping[str, Any]) -> None:
        import wandb

        if best:
            model = wandb.Artifact(f"model-{run.id}", type="model", metadata=dict(summary))
            path = Path(best)
            if path.is_dir():  # a DeepSpeed checkpoint
                model.add_dir(str(path), name=path.name)
            else:
                model.add_file(str(path))
            run.log_artifact(model, aliases=["best", "latest"])
        results = wandb.Artifact(f"metrics-{run.id}", type="metrics", metadata=dict(summary))
        results.add_file(str(metrics_file))
        run.log_artifact(results, aliases=["latest"])


def wandb_logger(
    project: str,
    save_dir: str,
    mode: str = "auto",
    name: str | None = None,
    log_model: bool = False,
    **kwargs: Any,
) -> RecflowWandbLogger:
    """W&B logger; ``mode=auto`` goes offline without credentials (``wandb sync`` uploads later).

    ``id`` (with ``resume="allow"``), ``group``, ``tags`` and ``job_type`` go to ``wandb.init``.
    """
    if mode not in {"auto", "online", "offline", "disabled"}:
        raise ValueError(f"logger.mode must be auto, online, offline or disabled, got {mode!r}")
    if mode == "auto":
        mode = auto_mode()
    if kwargs.get("id"):
        kwargs.setdefault("resume", "allow")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    finish_stale_run()
    return RecflowWandbLogger(
        project=project, save_dir=save_dir, name=name, offline=mode == "offline", mode=mode,
        upload_outputs=bool(log_model), **kwargs,
    )


def finish_stale_run() -> None:
    """Close a W&B run left open in this process (e.g. by a job of a sweep that failed):
    Lightning's logger would otherwise log this run's values into that one."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is not None:
        log.warning("finishing W&B run %s left open in this process before starting a new one", run.id)
        wandb.finish()


def csv_logger(save_dir: str, name: str = "csv") -> CSVLogger:
    return CSVLogger(save_dir=save_dir, name=name, version="")


def _short(target: Any, suffix: str = "") -> str:
    """``pointwise`` for ``train.training.tasks.PointwiseTask`` (suffix ``Task``)."""
    return str(target).rsplit(".", 1)[-1].removesuffix(suffix).lower() if target else "none"


def _choice(group: str) -> str | None:
    """The config file Hydra picked for ``group`` (``trainer`` -> ``ddp_cpu``), outside Hydra None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def _strategy(cfg: DictConfig) -> str:
    """The trainer config's name (``ddp_cpu``; ``single`` for the default one), else the strategy's."""
    choice = _choice("trainer")
    if choice:
        return "single" if choice == "default" else choice
    strategy = cfg.trainer.get("strategy", "auto")
    return _short(strategy.get("_target_"), "Strategy") if isinstance(strategy, Mapping) else str(strategy)


def run_facts(cfg: DictConfig) -> dict[str, str]:
    """Model, data, loss, strategy and curriculum of a run, short enough for names and tags."""
    task = cfg.model.get("task") or {}
    loss = task.get("loss")
    loss_name = loss.get("name") if isinstance(loss, Mapping) else loss
    curriculum = cfg.get("curriculum") or {}
    return {
        "model": str(cfg.model.name),
        "data": data_name(cfg.data),
        "loss": str(loss_name or _short(task.get("_target_"), "Task")),
        "strategy": _strategy(cfg),
        "curriculum": _choice("curriculum") or ("on" if "_target_" in curriculum else "none"),
    }


def run_name(cfg: DictConfig, facts: Mapping[str, str]) -> str:
    return f"{facts['model']}-{facts['data']}-{facts['loss']}-s{cfg.seed}"


def run_tags(facts: Mapping[str, str], extra: Sequence[str] = ()) -> list[str]:
    """model and data as they are, the rest as ``key:value``; W&B caps tags at 64 characters."""
    tags = [facts["model"], facts["data"], *(f"{k}:{facts[k]}" for k in ("loss", "strategy", "curriculum"))]
    return list(dict.fromkeys(t[:64] for t in [*tags, *map(str, extra)]))


def sweep_group(output_dir: Path) -> str | None:
    """The multirun folder's name for a multirun job (one W&B group per sweep), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return output_dir.parent.name
    return None


def run_identity(output_dir: Path, resuming: bool, group: str | None) -> dict[str, Any]:
    """This folder's tracker id and group: stored ones when resuming, else new (written by rank 0)."""
    path = output_dir / RUN_FILE
    stored = json.loads(path.read_text()) if resuming and path.is_file() else {}
    identity = {"wandb_id": stored.get("wandb_id") or secrets.token_hex(4),
                "wandb_group": stored.get("wandb_group", group)}
    if identity != stored and rank_zero_only.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(identity, indent=2) + "\n")
    return identity


def logger_overrides(cfg: DictConfig, node: DictConfig) -> dict[str, Any]:
    """Values for the keys the logger config leaves null (name, group, id) and the tags."""
    facts = run_facts(cfg)
    output_dir = Path(cfg.paths.output_dir)
    fill: dict[str, Any] = {}
    if "id" in node and node.id is None:
        resuming = bool(cfg.get("ckpt_path") or cfg.get("resume"))
        identity = run_identity(output_dir, resuming, sweep_group(output_dir))
        fill["id"] = identity["wandb_id"]
        if "group" in node and node.group is None:
            fill["group"] = identity["wandb_group"]
    elif "group" in node and node.group is None:
        fill["group"] = sweep_group(output_dir)
    if "name" in node and node.name is None:
        fill["name"] = run_name(cfg, facts)
    if "tags" in node:
        fill["tags"] = run_tags(facts, node.tags or ())
    return fill


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The configured logger (none for ``logger=none``), its nulls filled from the run."""
    node = cfg.get("logger")
    if not node or "_target_" not in node:
        return []
    return [hydra.utils.instantiate(node, **logger_overrides(cfg, node))]


def tracking_callbacks(callbacks: Sequence[Callback], loggers: Sequence[Logger]) -> list[Callback]:
    """A learning-rate monitor when a logger records it (it refuses a trainer without one)."""
    if not loggers or any(isinstance(cb, LearningRateMonitor) for cb in callbacks):
        return []
    return [LearningRateMonitor()]


def log_config(loggers: Sequence[Logger], cfg: DictConfig) -> None:
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))


@rank_zero_only
def publish_results(loggers: Sequence[Logger], metrics: Mapping[str, Any], metrics_file: Path) -> None:
    """After the test: hand the final metrics (and, if asked, files) to each tracker."""
    for logger in loggers:
        if isinstance(logger, RecflowWandbLogger):
            logger.publish(metrics, metrics_file)


def tensorboard_logger(save_dir: str, name: str = "tensorboard", **kwargs: Any) -> TensorBoardLogger:
    """``logger=tensorboard``: event files in ``<save_dir>/<name>/``; the optional package
    (``recflow[tensorboard]``) is named if missing."""
    if find_spec("tensorboardX") is None:  # Lightning writes through either package
        require("tensorboard", "tensorboard", "logger=tensorboard")
    return TensorBoardLogger(save_dir=save_dir, name=name, version="", **kwargs)
