"""Curriculum learning: serve progressively harder training data on a pacing schedule.

A curriculum changes only what the sampler and collate yield, never the model or the
task. Built from ``conf/curriculum/*.yaml`` as a Lightning callback; see
docs/curriculum.md.
"""
from train.curriculum.callback import CurriculumCallback
from train.curriculum.curriculum import Curriculum
from train.curriculum.difficulty import Difficulty, SelfPacedLoss, SequenceLength, TargetPopularity
from train.curriculum.hard_negatives import HardNegativeMiner, MixedNegativeSampler, NegativeHardness
from train.curriculum.knobs import Knob, MaskRatio, MaxLength
from train.curriculum.pacing import GeometricPacing, LinearPacing, Pacing, RootPacing, StepPacing, make_pacing
from train.curriculum.pool import allowed_pool, easiest_order, pool_size
from train.curriculum.scheduler import CurriculumScheduler

__all__ = [
    "Curriculum",
    "CurriculumCallback",
    "CurriculumScheduler",
    "Difficulty",
    "GeometricPacing",
    "HardNegativeMiner",
    "Knob",
    "LinearPacing",
    "MaskRatio",
    "MaxLength",
    "MixedNegativeSampler",
    "NegativeHardness",
    "Pacing",
    "RootPacing",
    "SelfPacedLoss",
    "SequenceLength",
    "StepPacing",
    "TargetPopularity",
    "allowed_pool",
    "easiest_order",
    "make_pacing",
    "pool_size",
]
