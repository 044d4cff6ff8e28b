"""The curriculum's clock: the current step and the competence it implies.

The step is always taken from the trainer's global step, never counted locally, so all
ranks agree and a resumed run picks up where the checkpoint left off.
"""
from __future__ import annotations

import math
from typing import Any

from train.curriculum.pacing import Pacing


class CurriculumScheduler:
    """Holds ``step`` and answers ``competence``/``progress`` for it."""

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.step = 0

    def advance(self, global_step: int) -> float:
        """Move to ``global_step``; returns the competence there."""
        if global_step < 0:
            raise ValueError(f"global step must be >= 0, got {global_step}")
        self.step = int(global_step)
        return self.competence

    @property
    def competence(self) -> float:
        return self.pacing(self.step)

    @property
    def progress(self) -> float:
        """0 at the start competence, 1 at full competence (drives per-step knobs)."""
        return self.pacing.progress(self.step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "competence": self.competence,
            "start": self.pacing.start,
            "ramp_steps": self.pacing.ramp_steps,
            "pacing": type(self.pacing).__name__,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step; refuses a checkpoint written under another schedule."""
        mine = self.state_dict()
        for key in ("pacing", "start", "ramp_steps"):
            if key in state and state[key] != mine[key]:
                raise ValueError(
                    f"checkpoint curriculum has {key}={state[key]!r} but this run has {mine[key]!r}; "
                    "resume with the same curriculum config (or start a new run)"
                )
        self.step = int(state["step"])
        if "competence" in state and not math.isclose(self.competence, float(state["competence"]), abs_tol=1e-9):
            raise ValueError(
                f"checkpoint competence {state['competence']} differs from {self.competence} recomputed at "
                f"step {self.step}; the pacing config changed since the checkpoint was written"
            )
