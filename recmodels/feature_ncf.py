"""NeuMF with side features: user profiles and item attributes feed both towers.

Plain NCF knows a user or item only through its id embedding, so an item nobody has
trained on (a new release) gets a random vector and is ranked by chance at best.
Here every vector is built by an :class:`~recmodels.item_encoder.ItemEncoder`
(id embedding + embeddings of categorical/multi-valued features + a projection of
numeric ones): the user vector mixes the id with e.g. gender/age/occupation, the
item vector with genres/year. Cold items then score through their features.

GMF and MLP keep separate encoders (as NeuMF keeps separate embeddings). Scoring the
whole catalogue encodes every item once per call and reuses the split first MLP layer
(:class:`~recmodels.ncf.MLPTower`), so it never runs the network on B x I
concatenations.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recmodels.base import Context, PairwiseRecommender
from recmodels.feature_tensors import FeatureTensors, id_only
from recmodels.item_encoder import ItemEncoder
from recmodels.ncf import MLPTower


def _encoder(features: FeatureTensors | None, rows: int, dim: int, fusion: str, what: str) -> ItemEncoder:
    features = features if features is not None else id_only(rows)
    if features.num_rows != rows:
        raise ValueError(
            f"{what} features have {features.num_rows} rows but the data has {rows} {what}s; "
            "encode the features of the same data set"
        )
    encoder = features.encoder(dim, fusion)
    for module in encoder.modules():  # NCF's N(0, 0.01) initialisation, padding rows zero
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            nn.init.normal_(module.weight, std=0.01)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
    return encoder


class FeatureNeuMF(PairwiseRecommender):
    """NeuMF whose user and item vectors come from id + side-feature encoders."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        item_features: FeatureTensors | None = None,
        user_features: FeatureTensors | None = None,
        mf_dim: int = 8,
        mlp_embed_dim: int = 32,
        layers: Sequence[int] = (64, 32, 16, 8),
        fusion: str = "sum",
    ) -> None:
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.gmf_users = _encoder(user_features, num_users, mf_dim, fusion, "user")
        self.gmf_items = _encoder(item_features, num_items, mf_dim, fusion, "item")
        self.mlp_users = _encoder(user_features, num_users, mlp_embed_dim, fusion, "user")
        self.mlp_items = _encoder(item_features, num_items, mlp_embed_dim, fusion, "item")
        self.tower = MLPTower(mlp_embed_dim, list(layers))
        self.mf_dim = mf_dim
        self.out = nn.Linear(mf_dim + self.tower.out_dim, 1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of (user, item) pairs of any matching shape."""
        gmf = self.gmf_users(users) * self.gmf_items(items)
        mlp = self.tower(self.mlp_users(users), self.mlp_items(items))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def score_all(self, context: Context) -> Tensor:
        users = context["user"]
        w_gmf, w_mlp = self.out.weight[:, : self.mf_dim], self.out.weight[:, self.mf_dim :]
        gmf = (self.gmf_users(users) * w_gmf) @ self.gmf_items.table().T
        hidden = self.tower.all_items(self.mlp_users(users), self.mlp_items.table())
        return gmf + (hidden @ w_mlp.T).squeeze(-1) + self.out.bias

    def user_representation(self, context: Context) -> Tensor:
        users = context["user"]
        return torch.cat([self.gmf_users(users), self.mlp_users(users)], dim=-1)
