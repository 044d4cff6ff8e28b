"""NeuMF's pre-training (He et al. 2017, 3.4.1): start NeuMF from trained GMF and MLP runs.

Named in ``model.initialisers`` (conf/experiment/ncf_ml1m_pretrained.yaml); reads the two
checkpoints safely through :mod:`train.runs.checkpoints`.
"""
from __future__ import annotations

from torch import nn

from recmodels.ncf import GMF, MLP, NeuMF
from train.runs.checkpoints import CheckpointError, load_weights


def neumf_from_pretrained(model: NeuMF, gmf_ckpt: str, mlp_ckpt: str, alpha: float = 0.5) -> NeuMF:
    """NeuMF's pre-training (He et al. 2017, 3.4.1): start from trained GMF and MLP."""
    if not isinstance(model, NeuMF):
        raise CheckpointError(f"pre-trained GMF/MLP initialisation needs model=neumf, not {type(model).__name__}")
    gmf = GMF(model.gmf.user_emb.num_embeddings, model.num_items, model.gmf.user_emb.embedding_dim)
    mlp = MLP(
        model.mlp.user_emb.num_embeddings,
        model.num_items,
        model.mlp.user_emb.embedding_dim,
        [m.out_features for m in model.mlp.tower.modules() if isinstance(m, nn.Linear) and m is not model.mlp.tower.first_item],
    )
    load_weights(gmf, gmf_ckpt)
    load_weights(mlp, mlp_ckpt)
    model.load_pretrained(gmf, mlp, alpha)
    return model
