"""The default data source: generated data (see :mod:`data_modules.synthetic_generator`)."""
from __future__ import annotations

from data_modules.interactions import InteractionData
from data_modules.preprocessing import PreprocessConfig, preprocess as run_preprocess
from data_modules.sources._common import PreprocessArg
from data_modules.synthetic_generator import generate


def synthetic(
    num_users: int = 1000,
    num_items: int = 500,
    num_clusters: int = 5,
    min_length: int = 30,
    max_length: int = 60,
    seed: int = 0,
    zipf_exponent: float = 1.0,
    p_sequential: float = 0.6,
    p_cluster: float = 0.3,
    num_successors: int = 3,
    num_genres: int = 8,
    name: str = "synthetic",
    preprocess: PreprocessArg = None,
    progress: bool | None = None,
) -> InteractionData:
    """Generate and preprocess (leave-one-out by default); never cached, it is fast."""
    tables = generate(
        num_users=num_users,
        num_items=num_items,
        num_clusters=num_clusters,
        min_length=min_length,
        max_length=max_length,
        seed=seed,
        zipf_exponent=zipf_exponent,
        p_sequential=p_sequential,
        p_cluster=p_cluster,
        num_successors=num_successors,
        num_genres=num_genres,
    )
    return run_preprocess(
        tables.raw,
        PreprocessConfig.of(preprocess),
        name=name,
        item_features=tables.item_features,
        user_features=tables.user_features,
        source_report={"generator": "synthetic", "seed": seed, "rows": len(tables.raw)},
        progress=progress,
    )
