"""Turning trained weights into recommendations: loading, top-K, batch output."""
from train.inference.batch import BatchReport, RecommendationWriter, recommend_users, write_recommendations
from train.inference.ids import IdIndex
from train.inference.loading import RunContext, load_recommender
from train.inference.topk import NO_ITEM, known_pairs, mask_pairs_, recommend, top_k

__all__ = [
    "BatchReport",
    "IdIndex",
    "NO_ITEM",
    "RecommendationWriter",
    "RunContext",
    "known_pairs",
    "load_recommender",
    "mask_pairs_",
    "recommend",
    "recommend_users",
    "top_k",
    "write_recommendations",
]
