"""OmegaConf resolvers the shipped configs use, registered without importing torch.

The commands register them before Hydra composes a config; torch and Lightning load only
when a config actually resolves a value, so ``--help``, ``--cfg`` and tab completion
answer at once.
"""
from __future__ import annotations

PRECISION_RESOLVER = "recflow.precision"


def precision(accelerator: str = "auto") -> str:
    """``${recflow.precision:<accelerator>}``: see :func:`train.training.strategies.auto_precision`."""
    from train.training.strategies import auto_precision

    return auto_precision(accelerator)


def register_resolvers() -> None:
    """Make ``${recflow.precision:<accelerator>}`` (trainer configs) and
    ``${recflow.run_label:...}`` (the run folder's name) available."""
    from omegaconf import OmegaConf

    from train.training.run_names import register_run_label

    if not OmegaConf.has_resolver(PRECISION_RESOLVER):
        OmegaConf.register_new_resolver(PRECISION_RESOLVER, precision)
    register_run_label()
