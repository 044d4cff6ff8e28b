"""model.task.lr_scaling: the learning rate follows the global batch size by a named rule."""
from __future__ import annotations

import math
from types import SimpleNamespace

import hydra
import pytest
from omegaconf import OmegaConf

from tests.helpers import tiny_config
from train.training.lr_scaling import check_lr_scaling, lr_factor


@pytest.mark.parametrize(
    ("rule", "batch", "expected"),
    [("linear", 512, 4.0), ("sqrt", 512, 2.0), ("sqrt", 32, 0.5), ("linear", 128, 1.0)],
)
def test_factor_by_hand(rule: str, batch: int, expected: float) -> None:
    assert lr_factor({"rule": rule, "reference_batch_size": 128}, batch) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rule": "cubic", "reference_batch_size": 128}, r"rule='cubic' is unknown.*linear.*sqrt"),
        ({"rule": "sqrt", "reference_batch_size": 0}, "reference_batch_size must be a positive integer"),
        ({"rule": "sqrt", "reference_batch_size": True}, "reference_batch_size must be a positive integer"),
        ({"rule": "sqrt"}, r"exactly the keys \['rule', 'reference_batch_size'\]"),
        ("sqrt", "lr_scaling must be null or have exactly the keys"),
    ],
)
def test_bad_values_name_the_key(value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_lr_scaling(value)


@pytest.mark.parametrize(("world", "accumulate"), [(1, 1), (4, 2)])
def test_optimizer_groups_start_from_the_scaled_rate(tmp_path, world: int, accumulate: int) -> None:
    """The task as the config builds it: every group's lr = configured lr x sqrt(global / reference)."""
    cfg = tiny_config(
        tmp_path, "model=sasrec", "model.datamodule.batch_size=32",
        "model.task.lr_scaling={rule:sqrt,reference_batch_size:8}", "model.task.optimizer.lr=0.002",
    )
    from train.building import build_with_data

    data = hydra.utils.instantiate(cfg.data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    model = build_with_data(cfg.model.net, data)
    task = build_with_data(cfg.model.task, data, model=model, evaluator=evaluator)
    # The trainer fields the task reads, as DDP with `world` ranks and accumulation would set them.
    fake = SimpleNamespace(datamodule=SimpleNamespace(batch_size=32), world_size=world, accumulate_grad_batches=accumulate)
    task.__class__ = type("Attached", (type(task),), {"trainer": property(lambda self: fake)})
    optimizer = task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    expected = 0.002 * math.sqrt(32 * world * accumulate / 8)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([expected] * len(optimizer.param_groups))
    assert OmegaConf.select(cfg, "model.task.optimizer.lr") == 0.002  # the config keeps the tuned value
