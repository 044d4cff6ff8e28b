"""Fail fast on config values that would otherwise break deep inside a run."""
from __future__ import annotations

from omegaconf import DictConfig

from train.extras import check_deepspeed_installed


class ConfigError(ValueError):
    """A config value is invalid; the message says which key and how to fix it."""


def check_config(cfg: DictConfig) -> None:
    monitor = cfg.get("monitor", "")
    if not monitor.startswith("val/"):
        raise ConfigError(f"monitor={monitor!r}: the checkpoint must be chosen on a validation metric (val/...)")
    optimized = cfg.get("optimized_metric")
    if optimized and not optimized.startswith("val/"):
        raise ConfigError(f"optimized_metric={optimized!r}: sweeps must optimise a validation metric, never test")
    _, _, k = monitor.partition("@")
    ks = list(cfg.eval.get("ks", []))
    if k and int(k) not in ks:
        raise ConfigError(f"monitor={monitor!r} needs k={k} in eval.ks (now {ks}); add it, e.g. eval.ks=[5,10,20]")
    for key in ("max_epochs",):
        value = cfg.trainer.get(key)
        if value is not None and value != -1 and value < 1:
            raise ConfigError(f"trainer.{key}={value} must be >= 1 (or -1 for no limit)")
    _check_weight_averaging(cfg)
    check_deepspeed_installed(cfg)


def _check_weight_averaging(cfg: DictConfig) -> None:
    """The averaged copy is a whole model: DeepSpeed partitions and saves weights its own way."""
    averaging = (cfg.get("callbacks") or {}).get("weight_averaging")
    strategy = cfg.trainer.get("strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    if averaging and "_target_" in averaging and "deepspeed" in target.lower():  # as build_callbacks reads it
        raise ConfigError(
            "callbacks=averaged does not work with DeepSpeed strategies (the average is a whole, "
            "unpartitioned copy of the model); use callbacks=default, or trainer=ddp for averaging"
        )
