"""Ranking evaluation shared by validation, test, benchmarks and inference."""
from data_modules.eval_candidates import SAMPLERS, sample_negatives, split_candidates
from data_modules.eval_spec import EvalSpec
from train.evaluation.evaluator import PROTOCOLS, Evaluator, evaluate, parse_split
from train.evaluation.metrics import DEFAULT_METRICS, RankingMetrics, pessimistic_rank

__all__ = [
    "DEFAULT_METRICS",
    "EvalSpec",
    "Evaluator",
    "PROTOCOLS",
    "RankingMetrics",
    "SAMPLERS",
    "evaluate",
    "parse_split",
    "pessimistic_rank",
    "sample_negatives",
    "split_candidates",
]
