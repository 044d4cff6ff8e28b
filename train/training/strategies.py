"""Distributed strategies built from config, picked for the machine at run time.

The ``conf/trainer/*.yaml`` strategy files name the factories below through
``_target_`` so that ``run.py`` stays one straight sequence: whether a run uses DDP or
DeepSpeed (and on which device) is configuration, never a branch in the training code.

Why a CPU DeepSpeed strategy: Lightning's stock :class:`DeepSpeedStrategy` refuses
any accelerator but CUDA, yet DeepSpeed itself runs ZeRO-1/2/3 on CPU over gloo. The
subclass below lifts only the two CUDA-specific checks, so CI and laptops exercise the
same ZeRO code paths (partitioning, sharded checkpoints) that GPU clusters use.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.seed import reset_seed
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies import DDPStrategy, DeepSpeedStrategy
from pytorch_lightning.trainer.states import TrainerFn

from train.extras import require
from train.training.atomic_checkpoints import part_path, publish_folder, remove_tree
from train.runs.consolidate import ConsolidationError, checkpoint_world_size

log = logging.getLogger(__name__)

GPU_NAMES = ("cuda", "gpu")
ACCELERATORS = ("auto", "cpu", *GPU_NAMES)


class StrategyConfigError(ValueError):
    """A strategy setting cannot work; the message names the key and the fix."""


# -- device and precision -------------------------------------------------------------
def resolve_accelerator(accelerator: str = "auto") -> str:
    """``"cuda"`` or ``"cpu"``: what ``accelerator`` means on this machine."""
    name = str(accelerator).lower()
    if name not in ACCELERATORS:
        raise StrategyConfigError(
            f"trainer.accelerator={accelerator!r} is not supported by the distributed strategies; "
            f"choose from {list(ACCELERATORS)}"
        )
    if name in GPU_NAMES and not torch.cuda.is_available():
        raise StrategyConfigError(
            f"trainer.accelerator={accelerator!r} but no CUDA device is visible; "
            "use trainer.accelerator=cpu (or auto) on this machine"
        )
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if name == "cpu" else "cuda"


def auto_precision(accelerator: str = "auto") -> str:
    """bf16 mixed precision on GPUs that support it, fp16 mixed on older GPUs, fp32 on CPU.

    CPU bf16 autocast is slower than fp32 on most CPUs and changes results, so CPU runs
    (CI, laptops) stay in full precision.
    """
    if resolve_accelerator(accelerator) == "cpu":
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"



def _timeout(minutes: float) -> timedelta:
    if minutes <= 0:
        raise StrategyConfigError(f"trainer.strategy.timeout_minutes must be positive, got {minutes}")
    return timedelta(minutes=minutes)


# -- DDP ---------------------------------------------------------------------------------
def ddp(
    accelerator: str = "auto",
    find_unused_parameters: bool = False,
    static_graph: bool = False,
    timeout_minutes: float = 30,
) -> DDPStrategy:
    """Data parallel: full replicas, gradients all-reduced (gloo on CPU, NCCL on GPU)."""
    backend = "gloo" if resolve_accelerator(accelerator) == "cpu" else "nccl"
    return DDPStrategy(
        process_group_backend=backend,
        find_unused_parameters=find_unused_parameters,
        static_graph=static_graph,
        timeout=_timeout(timeout_minutes),
    )


# -- DeepSpeed -------------------------------------------------------------------------
class ZeroStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy with two ZeRO-3 fixes and whole-or-nothing saves.

    1. ZeRO-3 all-gathers a module's weights every time the module runs, so every rank
       must run the same modules the same number of times. Modules that run a data-
       dependent number of passes (recmodels' transformer encodes CPU batches once per
       length group, ``max_groups``) are switched to a single pass in :meth:`setup`;
       otherwise the ranks' collectives mismatch and training hangs.
    2. ``trainer.validate/test(ckpt_path=...)`` builds an optimizer-less DeepSpeed engine;
       under ZeRO-3 its parameter coordinator lacks ``_restore_from_bit16_weights``, which
       DeepSpeed calls after loading the (already gathered and re-partitioned) weights.
       An evaluation engine has no fp32 master copy to refresh, so a no-op is exact.

    A checkpoint folder is written as ``<folder>.part`` and swapped in once every rank has
    written its shards (:func:`train.training.atomic_checkpoints.publish_folder`): a kill
    while saving leaves the previous ``last.ckpt`` whole.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        target = Path(self.broadcast(str(filepath)))
        part = part_path(target)
        if self.is_global_zero:
            remove_tree(part)  # left by a save that was killed
        self.barrier("ZeroStrategy.save_checkpoint")
        super().save_checkpoint(checkpoint, part, storage_options=storage_options)  # ends in a barrier
        if self.is_global_zero:
            publish_folder(part, target)
        self.barrier("ZeroStrategy.save_checkpoint")

    def setup(self, trainer: Any) -> None:
        if self.zero_stage_3:
            single_pass_modules(self.lightning_module)
        super().setup(trainer)

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        universal = bool((self.config.get("checkpoint") or {}).get("load_universal"))
        if self.lightning_module.trainer.state.fn == TrainerFn.FITTING and not (self.load_full_weights or universal):
            check_resume_world_size(checkpoint_path, self.world_size)
        optimizer = getattr(self.deepspeed_engine, "optimizer", None)
        if optimizer is not None and not hasattr(optimizer, "_restore_from_bit16_weights"):
            optimizer._restore_from_bit16_weights = _nothing
        return super().load_checkpoint(checkpoint_path, weights_only)


def single_pass_modules(module: torch.nn.Module) -> int:
    """Make modules with a data-dependent number of passes (``max_groups``) run once.

    Returns how many modules were changed (the result is the same, only speed differs).
    """
    changed = 0
    for sub in module.modules():
        if isinstance(getattr(sub, "max_groups", None), int) and sub.max_groups > 1:
            sub.max_groups = 1
            changed += 1
    if changed:
        log.info("ZeRO-3: %d module(s) set to one pass per batch (max_groups=1) so ranks stay in step", changed)
    return changed


def _nothing() -> None:
    return None


def check_resume_world_size(checkpoint_path: Any, world_size: int) -> None:
    """ZeRO optimizer shards only fit the world size that wrote them: say so, and what to do."""
    try:
        saved = checkpoint_world_size(checkpoint_path)
    except ConsolidationError:
        return  # not a sharded checkpoint; Lightning/DeepSpeed report what it is
    if saved != world_size:
        raise StrategyConfigError(
            f"checkpoint {checkpoint_path} was written by {saved} DeepSpeed ranks but this run has "
            f"{world_size}; ZeRO optimizer shards cannot be re-partitioned on load. Resume with {saved} "
            "processes, or convert it to a DeepSpeed universal checkpoint, which resumes at any world size: "
            f"`python -m deepspeed.checkpoint.ds_to_universal --inject_missing_state --input_folder "
            f"{checkpoint_path}/checkpoint --output_folder {checkpoint_path}/checkpoint_universal`, then add "
            "+trainer.strategy.config.checkpoint.load_universal=true. For the weights alone (optimizer state "
            f"restarts): `recflow-consolidate {checkpoint_path}`, or init_from=<run dir> once a run "
            "has finished"
        )


class CPUDeepSpeedStrategy(ZeroStrategy):
    """DeepSpeed ZeRO on CPU processes talking over gloo.

    Differs from the stock strategy in three places only: no CUDA-only check in
    :meth:`setup_environment`, no GPU index validation in :meth:`setup_distributed`,
    and a ``cpu:<local_rank>`` root device (DeepSpeed reads the index as its rank).
    """

    strategy_name = "deepspeed_cpu"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("process_group_backend", "gloo")
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        # DDPStrategy.setup_environment: accelerator device setup, then setup_distributed().
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)


def deepspeed_config(config: Mapping[str, Any] | None, on_cpu: bool) -> dict[str, Any]:
    """A plain, checked copy of the DeepSpeed JSON config.

    ``train_micro_batch_size_per_gpu`` only feeds DeepSpeed's throughput logs (our data
    modules batch themselves); it is set so Lightning does not probe the dataloader.
    """
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    cfg: dict[str, Any] = copy.deepcopy(dict(config or {}))
    zero = cfg.setdefault("zero_optimization", {})
    stage = zero.setdefault("stage", 2)
    if stage not in (0, 1, 2, 3):
        raise StrategyConfigError(
            f"trainer.strategy.config.zero_optimization.stage={stage!r}: ZeRO stages are 0, 1, 2 or 3"
        )
    if zero.get("offload_param") and stage != 3:
        raise StrategyConfigError(
            "trainer.strategy.config.zero_optimization.offload_param needs stage=3 "
            f"(got stage={stage}); use trainer=deepspeed_zero3_offload or drop offload_param"
        )
    if zero.get("offload_optimizer") and stage == 0:
        raise StrategyConfigError("offload_optimizer needs ZeRO stage 1, 2 or 3, got stage=0")
    if "gradient_accumulation_steps" in cfg:
        raise StrategyConfigError(
            "do not set gradient_accumulation_steps in trainer.strategy.config; "
            "use trainer.accumulate_grad_batches (Lightning passes it to DeepSpeed)"
        )
    cfg.setdefault("train_micro_batch_size_per_gpu", 1)
    cfg.setdefault("zero_allow_untested_optimizer", True)
    if on_cpu:
        # The task's torch optimizer runs as is; DeepSpeed's fused CPU Adam would need
        # a compiled extension that CPU installs do not have. Pinned memory needs CUDA.
        cfg["zero_force_ds_cpu_optimizer"] = False
        for key in ("offload_optimizer", "offload_param"):
            if isinstance(zero.get(key), dict):
                zero[key]["pin_memory"] = False
    return cfg


def deepspeed(
    accelerator: str = "auto",
    config: Mapping[str, Any] | None = None,
    load_full_weights: bool = False,
    timeout_minutes: float = 30,
    logging_level: int = logging.WARNING,
) -> DeepSpeedStrategy:
    """DeepSpeed ZeRO strategy from a DeepSpeed JSON ``config``: :class:`ZeroStrategy` on GPUs,
    :class:`CPUDeepSpeedStrategy` (gloo) on CPU."""
    require("deepspeed", "deepspeed", "trainer=deepspeed_* (DeepSpeed ZeRO)", "DeepSpeed")
    on_cpu = resolve_accelerator(accelerator) == "cpu"
    kwargs = dict(
        config=deepspeed_config(config, on_cpu),
        load_full_weights=load_full_weights,
        timeout=_timeout(timeout_minutes),
        logging_level=logging_level,
    )
    return CPUDeepSpeedStrategy(**kwargs) if on_cpu else ZeroStrategy(**kwargs)
