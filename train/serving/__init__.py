"""Using a trained run without Lightning: loading, top-K, batch output, HTTP, export, profiles."""
from train.serving.batch import BatchReport, RecommendationWriter, recommend_users, write_recommendations
from data_modules.id_index import IdIndex
from train.serving.loading import RunContext, load_recommender
from train.serving.topk import NO_ITEM, known_pairs, mask_pairs_, recommend, top_k

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
