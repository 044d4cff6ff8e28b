"""Lightning tasks: one per training objective, each wrapping a plain recmodels module."""
from train.tasks.base import RecTask
from train.tasks.pointwise import PointwiseTask
from train.tasks.popularity import PopularityTask
from train.tasks.sequence import SequenceTask

__all__ = ["RecTask", "PointwiseTask", "PopularityTask", "SequenceTask"]
