"""Pacing functions: how much of the data (competence) a model may see at a step.

A pacing function maps the global optimiser step ``t`` to a competence
``c(t)`` in ``[c0, 1]``: ``c(0) = c0`` and ``c(t) = 1`` from the end of the ramp
``T`` onwards. Competence is a pure function of the step, so every rank computes the
same value and a resumed run continues the same schedule from its restored step.

- linear:    c(t) = min(1, c0 + (1 - c0) t / T)
- root:      c(t) = min(1, (t (1 - c0^p) / T + c0^p)^(1/p)), p = 2 is Platanios et
  al. (2019)'s square-root competence
- geometric: c(t) = min(1, c0 (1 / c0)^(t / T))  (exponential growth)
- step:      c(t) = min(1, c0 f^floor(t / L)) with L = T / ceil(log(1/c0) / log f):
  Hacohen & Weinshall (2019)'s fixed exponential pacing, its step length L chosen so
  competence reaches 1 exactly at T.

Ramp lengths are given in steps or in epochs; an epoch means the number of steps one
pass over the *whole* training data takes (a curriculum's early epochs are shorter
because they see only part of the data).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Pacing:
    """Base: ``start`` competence and ``ramp_steps`` to reach full competence."""

    start: float
    ramp_steps: int

    def __post_init__(self) -> None:
        if not 0.0 < self.start <= 1.0:
            raise ValueError(f"pacing start competence must lie in (0, 1], got {self.start}")
        if self.ramp_steps < 0:
            raise ValueError(f"pacing ramp must be >= 0 steps, got {self.ramp_steps}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.ramp_steps == 0 or step >= self.ramp_steps or self.start >= 1.0:
            return 1.0
        return min(1.0, max(self.start, self._ramp(step / self.ramp_steps)))

    def progress(self, step: int) -> float:
        """Where the schedule is, 0 at the start and 1 at full competence."""
        if self.start >= 1.0:
            return 1.0
        return (self(step) - self.start) / (1.0 - self.start)

    def _ramp(self, fraction: float) -> float:
        """Competence at ``fraction = t / T`` in [0, 1)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LinearPacing(Pacing):
    def _ramp(self, fraction: float) -> float:
        return self.start + (1.0 - self.start) * fraction


@dataclass(frozen=True)
class RootPacing(Pacing):
    """Platanios et al. (2019) competence; ``power = 2`` is their square root."""

    power: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.power <= 0:
            raise ValueError(f"root pacing power must be positive, got {self.power}")

    def _ramp(self, fraction: float) -> float:
        c0p = self.start**self.power
        return (fraction * (1.0 - c0p) + c0p) ** (1.0 / self.power)


@dataclass(frozen=True)
class GeometricPacing(Pacing):
    def _ramp(self, fraction: float) -> float:
        return self.start * (1.0 / self.start) ** fraction


@dataclass(frozen=True)
class StepPacing(Pacing):
    """Competence multiplied by ``factor`` at evenly spaced steps until it reaches 1."""

    factor: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.factor <= 1.0:
            raise ValueError(f"step pacing factor must be > 1, got {self.factor}")

    @property
    def increments(self) -> int:
        """Number of multiplications needed to go from ``start`` to 1."""
        return max(1, math.ceil(math.log(1.0 / self.start) / math.log(self.factor) - 1e-12))

    def _ramp(self, fraction: float) -> float:
        done = math.floor(fraction * self.increments + 1e-12)
        return self.start * self.factor**done


PACINGS: dict[str, type[Pacing]] = {
    "linear": LinearPacing,
    "root": RootPacing,
    "sqrt": RootPacing,
    "geometric": GeometricPacing,
    "exponential": GeometricPacing,
    "step": StepPacing,
}


def ramp_to_steps(ramp_steps: int | None, ramp_epochs: float | None, steps_per_epoch: int | None) -> int:
    """One ramp length in steps from either ``ramp_steps`` or ``ramp_epochs``."""
    if (ramp_steps is None) == (ramp_epochs is None):
        raise ValueError(
            "curriculum pacing needs exactly one of ramp_steps or ramp_epochs "
            f"(got ramp_steps={ramp_steps}, ramp_epochs={ramp_epochs})"
        )
    if ramp_steps is not None:
        return int(ramp_steps)
    if steps_per_epoch is None or steps_per_epoch <= 0:
        raise ValueError(f"ramp_epochs={ramp_epochs} needs the steps per epoch, got {steps_per_epoch}")
    return int(round(float(ramp_epochs) * steps_per_epoch))


def make_pacing(
    name: str,
    start: float,
    ramp_steps: int | None = None,
    ramp_epochs: float | None = None,
    steps_per_epoch: int | None = None,
    **options: float,
) -> Pacing:
    """Build a pacing function by name (``linear``, ``root``, ``geometric``, ``step``)."""
    if name not in PACINGS:
        raise ValueError(f"unknown curriculum pacing '{name}'; choose from {sorted(PACINGS)}")
    steps = ramp_to_steps(ramp_steps, ramp_epochs, steps_per_epoch)
    try:
        return PACINGS[name](start=float(start), ramp_steps=steps, **options)
    except TypeError as exc:
        raise ValueError(f"pacing '{name}' does not take options {sorted(options)}: {exc}") from exc
