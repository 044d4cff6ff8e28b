"""Learning rate that follows the global batch size (``model.task.lr_scaling``).

A larger batch takes fewer, less noisy steps per epoch; keeping the learning rate of a
small batch then slows convergence. The usual rules scale it with the ratio ``r`` of the
global batch (per-device batch x devices x accumulated batches) to the batch the
learning rate was tuned for:

- ``linear``: lr x r (Goyal et al. 2017, for SGD);
- ``sqrt``: lr x sqrt(r) (Malladi et al., NeurIPS 2022: the square-root rule keeps
  Adam-type optimisers' dynamics; the default choice for Adam).

The factor is applied to every parameter group when the optimizer is built, so a
scheduler built on top starts from the scaled value, and a resumed run computes the
same factor again.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

RULES = {"linear": lambda ratio: ratio, "sqrt": math.sqrt}
KEYS = ("rule", "reference_batch_size")


def check_lr_scaling(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``None`` or ``{rule: linear|sqrt, reference_batch_size: N}``, else an error naming the key."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != set(KEYS):
        raise ValueError(
            f"model.task.lr_scaling must be null or have exactly the keys {list(KEYS)}, got {value!r}; "
            "e.g. model.task.lr_scaling={rule:sqrt,reference_batch_size:128}"
        )
    rule, reference = value["rule"], value["reference_batch_size"]
    if rule not in RULES:
        raise ValueError(f"model.task.lr_scaling.rule={rule!r} is unknown; choose one of {sorted(RULES)}")
    if isinstance(reference, bool) or not isinstance(reference, int) or reference < 1:
        raise ValueError(
            f"model.task.lr_scaling.reference_batch_size must be a positive integer (the batch size the "
            f"learning rate was tuned for), got {reference!r}"
        )
    return {"rule": rule, "reference_batch_size": reference}


def lr_factor(scaling: Mapping[str, Any], global_batch_size: int) -> float:
    """Multiplier of the configured learning rate for this global batch size."""
    if global_batch_size < 1:
        raise ValueError(f"global batch size must be positive, got {global_batch_size}")
    return RULES[scaling["rule"]](global_batch_size / scaling["reference_batch_size"])


def scale_learning_rates(optimizer: Any, factor: float) -> None:
    """Multiply every parameter group's learning rate by ``factor`` (before any scheduler)."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * factor
