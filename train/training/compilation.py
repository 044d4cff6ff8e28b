"""Opt-in ``torch.compile`` of the model (``compile:`` in conf/train.yaml).

Why: on a GPU a small recommender's training step is bound by Python and kernel
launches, not by arithmetic; compiling the forward fuses its many small ops. On a CPU it
does not pay (README, "Compiling the model"), so it is off by default.

The model is compiled in place (:meth:`torch.nn.Module.compile`): its forward, which
both training (``model(history)``) and evaluation (``score_all`` through
``user_representation``) call, runs compiled, while its class, parameters and
state-dict keys stay those of the eager model. Checkpoints, resume, warm starts,
serving and export therefore never see a difference: a compiled run's checkpoint loads
into an uncompiled model. The losses stay eager (they live outside the model).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from train.training.config_error import ConfigError

# torch.compile's keyword arguments (all but the function to compile), read from the
# installed torch so a newer release's options are accepted as they appear.
COMPILE_KEYS: tuple[str, ...] = tuple(name for name in inspect.signature(torch.compile).parameters if name != "model")
EXAMPLE = "compile=true or compile='{mode: max-autotune, dynamic: true}'"


def compile_options(value: Any) -> dict[str, Any] | None:
    """``torch.compile`` keyword arguments from the ``compile`` setting; None = eager.

    ``null``/``false`` -> eager, ``true`` -> torch's defaults, a mapping -> those keywords.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"compile={value!r} must be null (eager), true (torch.compile's defaults) or a mapping of "
            f"torch.compile keywords ({', '.join(COMPILE_KEYS)}), e.g. {EXAMPLE}"
        )
    unknown = sorted(str(key) for key in value if key not in COMPILE_KEYS)
    if unknown:
        raise ConfigError(
            f"compile.{unknown[0]} is not a torch.compile keyword; valid keys: {', '.join(COMPILE_KEYS)} "
            f"(e.g. {EXAMPLE})"
        )
    return dict(value)


def check_strategy(options: dict[str, Any] | None, strategy_target: str, zero_stage: int | None) -> None:
    """Refuse compiling under DeepSpeed ZeRO-3. Between its gather hooks a partitioned
    weight is an empty tensor, and the compiler traces it as one: the first step fails
    deep inside torch ("broadcast a dimension of length 0"). ZeRO-1/2 leave the weights
    whole (a ZeRO-2 run compiles and trains)."""
    if options is not None and "deepspeed" in strategy_target.lower() and (zero_stage or 0) >= 3:
        raise ConfigError(
            "compile with DeepSpeed ZeRO-3 (trainer.strategy.config.zero_optimization.stage=3) does not "
            "work: ZeRO-3 hands the compiled forward empty, partitioned weights; use compile=null with "
            "ZeRO-3, or compile with trainer=deepspeed_zero2, deepspeed_zero1 or ddp"
        )


def compile_model(model: nn.Module, cfg: DictConfig) -> nn.Module:
    """Compile ``model``'s forward in place when ``cfg.compile`` asks for it; returns it."""
    options = compile_options(cfg.get("compile"))
    strategy = cfg.trainer.get("strategy") if "trainer" in cfg else None
    target = str(strategy.get("_target_", "")) if isinstance(strategy, DictConfig) else str(strategy or "")
    stage = OmegaConf.select(cfg, "trainer.strategy.config.zero_optimization.stage", default=None)
    check_strategy(options, target, stage)
    if options is not None:
        model.compile(**options)
    return model
