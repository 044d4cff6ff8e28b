"""Pacing functions against values computed by hand, and the competence clock."""
from __future__ import annotations

import math

import pytest

from train.curriculum.pacing import make_pacing, ramp_to_steps
from train.curriculum.scheduler import CurriculumScheduler


@pytest.mark.parametrize(
    ("name", "start", "expected"),
    [
        # c0 + (1 - c0) t / T with c0 = 0.2, T = 100
        ("linear", 0.2, {0: 0.2, 25: 0.4, 50: 0.6, 99: 0.992, 100: 1.0, 500: 1.0}),
        # sqrt(t (1 - 0.04) / 100 + 0.04)
        ("root", 0.2, {0: 0.2, 25: math.sqrt(0.28), 50: math.sqrt(0.52), 100: 1.0}),
        # 0.25 * 4^(t / 100)
        ("geometric", 0.25, {0: 0.25, 25: 0.25 * math.sqrt(2.0), 50: 0.5, 75: 0.25 * 4**0.75, 100: 1.0}),
        # 0.1 doubled 4 times (0.1 -> 0.2 -> 0.4 -> 0.8 -> 1): step length 100 / 4 = 25
        ("step", 0.1, {0: 0.1, 24: 0.1, 25: 0.2, 49: 0.2, 50: 0.4, 74: 0.4, 75: 0.8, 99: 0.8, 100: 1.0}),
    ],
)
def test_pacing_values_by_hand(name: str, start: float, expected: dict[int, float]) -> None:
    pacing = make_pacing(name, start, ramp_steps=100)
    for step, value in expected.items():
        assert pacing(step) == pytest.approx(value, abs=1e-12), (name, step)


def test_root_power_three_and_step_factor_three() -> None:
    # cube root: (t (1 - 0.125) / T + 0.125)^(1/3) at t = T/7: (0.125 + 0.125)^(1/3) = 0.25^(1/3)
    assert make_pacing("root", 0.5, ramp_steps=70, power=3)(10) == pytest.approx(0.25 ** (1 / 3))
    # factor 3 from 0.1: 0.1, 0.3, 0.9, 1 -> ceil(log 10 / log 3) = 3 increments of 30 steps
    pacing = make_pacing("step", 0.1, ramp_steps=90, factor=3.0)
    assert [pacing(t) for t in (0, 29, 30, 60, 89, 90)] == pytest.approx([0.1, 0.1, 0.3, 0.9, 0.9, 1.0])


def test_progress_maps_start_to_zero_and_ramp_end_to_one() -> None:
    pacing = make_pacing("linear", 0.2, ramp_steps=100)
    assert pacing.progress(0) == 0.0
    assert pacing.progress(50) == pytest.approx(0.5)
    assert pacing.progress(100) == 1.0
    assert make_pacing("linear", 1.0, ramp_steps=10).progress(0) == 1.0


def test_ramp_in_epochs_is_converted_with_steps_per_epoch() -> None:
    assert ramp_to_steps(None, 2.5, 40) == 100
    assert make_pacing("linear", 0.5, ramp_epochs=2, steps_per_epoch=10)(10) == pytest.approx(0.75)
    assert make_pacing("linear", 0.5, ramp_steps=0)(0) == 1.0  # no ramp: full competence


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "linear", "start": 0.0, "ramp_steps": 10}, "start competence"),
        ({"name": "linear", "start": 0.5, "ramp_steps": 10, "ramp_epochs": 1}, "exactly one"),
        ({"name": "linear", "start": 0.5}, "exactly one"),
        ({"name": "linear", "start": 0.5, "ramp_epochs": 1}, "steps per epoch"),
        ({"name": "cosine", "start": 0.5, "ramp_steps": 10}, "unknown curriculum pacing"),
        ({"name": "step", "start": 0.5, "ramp_steps": 10, "factor": 1.0}, "factor"),
        ({"name": "linear", "start": 0.5, "ramp_steps": 10, "power": 2}, "does not take"),
    ],
)
def test_bad_pacing_config_is_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_pacing(**kwargs)


def test_scheduler_state_round_trip_and_mismatch() -> None:
    scheduler = CurriculumScheduler(make_pacing("root", 0.2, ramp_steps=100))
    scheduler.advance(37)
    state = scheduler.state_dict()
    again = CurriculumScheduler(make_pacing("root", 0.2, ramp_steps=100))
    again.load_state_dict(state)
    assert again.step == 37 and again.competence == scheduler.competence
    other = CurriculumScheduler(make_pacing("root", 0.2, ramp_steps=200))
    with pytest.raises(ValueError, match="ramp_steps"):
        other.load_state_dict(state)
