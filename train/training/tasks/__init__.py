"""Lightning tasks: one per training objective, each wrapping a plain recmodels module."""
from train.training.tasks.base import RecTask
from train.training.tasks.pointwise import PointwiseTask
from train.training.tasks.popularity import PopularityTask
from train.training.tasks.sequence import SequenceTask

__all__ = ["RecTask", "PointwiseTask", "PopularityTask", "SequenceTask"]
