"""Sampled negatives come from a stream of (run seed, step, rank): resumable, and seeded."""
from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

import train.training.tasks.sequence as sequence_task
from tests.helpers import tiny_config
from train.building import build_with_data
from train.training.tasks.sequence import step_generator

CPU = torch.device("cpu")


def _draws(seed: int, step: int, rank: int) -> list[int]:
    return torch.randint(0, 1_000_000, (32,), generator=step_generator(CPU, seed, step, rank)).tolist()


def test_the_same_triple_replays_and_any_change_gives_another_stream() -> None:
    assert _draws(42, 10, 0) == _draws(42, 10, 0)
    base = _draws(42, 10, 0)
    for other in [(43, 10, 0), (42, 11, 0), (42, 10, 1), (0, 0, 0)]:
        assert _draws(*other) != base, other
    # Triples that a linear mix such as seed + step + rank would confuse.
    assert _draws(1, 0, 0) != _draws(0, 1, 0) != _draws(0, 0, 1)


def _tasks_loss(tmp_path: Path, seed: int, loss: list[str]) -> float:
    cfg = tiny_config(tmp_path, "model=sasrec", *loss)
    data = hydra.utils.instantiate(cfg.data)
    evaluator = hydra.utils.instantiate(cfg.eval)
    torch.manual_seed(0)  # the same weights whatever the run seed
    model = build_with_data(cfg.model.net, data)
    task = build_with_data(cfg.model.task, data, {"seed": seed}, model=model, evaluator=evaluator)
    task.setup("fit")
    batch = {
        "history": torch.tensor([[0, 3, 5, 7], [2, 4, 6, 8]]),
        "targets": torch.tensor([[3, 5, 7, 9], [4, 6, 8, 10]]),
    }
    model.eval()  # no dropout: only the negatives can differ
    with torch.no_grad():
        return float(task.training_loss(batch))


SAMPLED = ["model.task.loss.name=sampled_softmax", "+model.task.loss.num_negatives=4"]


def test_the_run_seed_changes_the_sampled_loss_and_only_it(tmp_path: Path) -> None:
    assert _tasks_loss(tmp_path, 1, SAMPLED) == _tasks_loss(tmp_path, 1, SAMPLED)
    assert _tasks_loss(tmp_path, 1, SAMPLED) != _tasks_loss(tmp_path, 2, SAMPLED)
    full = ["model.task.loss.name=ce"]
    assert _tasks_loss(tmp_path, 1, full) == _tasks_loss(tmp_path, 2, full)  # no negatives to draw


def test_a_run_draws_from_its_configured_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m train seed=7`` reaches the negative stream of every step."""
    from train.training.run import train

    calls: list[tuple[int, int, int]] = []
    real = sequence_task.step_generator

    def recording(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
        calls.append((seed, step, rank))
        return real(device, seed, step, rank)

    monkeypatch.setattr(sequence_task, "step_generator", recording)
    cfg = tiny_config(
        tmp_path, "model=sasrec", "seed=7", *SAMPLED, "model.datamodule.batch_size=16",
        "trainer.max_epochs=1", "trainer.limit_train_batches=3",
    )
    train(cfg)
    assert calls == [(7, 0, 0), (7, 1, 0), (7, 2, 0)]
