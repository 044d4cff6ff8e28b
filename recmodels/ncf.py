"""Neural Collaborative Filtering (He et al., WWW 2017): GMF, MLP and NeuMF.

Each model maps (user, item) to a logit. Scoring the whole catalogue reuses the
structure of the first layer so it never runs the network on B x I concatenations:
GMF is a dot product with the output weights folded into the user vector, and the
MLP's first layer splits into a user part plus a precomputed item part.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from recmodels.base import Context, DotProductScores, ItemScores, PairwiseRecommender
from recmodels.growth import RowMap, check_growth, grown_embedding, prefixed


def _paper_normal(weight: Tensor) -> Tensor:
    return nn.init.normal_(weight, std=0.01)  # the paper's N(0, 0.01) initialisation


def _init_embedding(num: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(num, dim)
    _paper_normal(emb.weight)
    return emb


class _IdTables(PairwiseRecommender):
    """A model with one user and one item embedding table (GMF, MLP) and an output layer
    ``out`` over its pairwise :meth:`features`."""

    out: nn.Linear

    def __init__(self, num_users: int, num_items: int, embed_dim: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.user_emb = _init_embedding(num_users, embed_dim)
        self.item_emb = _init_embedding(num_items, embed_dim)

    def features(self, users: Tensor, items: Tensor) -> Tensor:
        """The vector ``out`` reads for each (user, item) pair (NeuMF fuses these)."""
        raise NotImplementedError

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        return self.out(self.features(users, items)).squeeze(-1)

    def user_representation(self, context: Context) -> Tensor:
        return self.user_emb(context["user"])

    def grow(self, num_users: int, num_items: int) -> RowMap:
        """Tables for ``num_users``/``num_items`` ids; old rows keep their index and bits,
        new rows are drawn like fresh ones."""
        old_users, old_items = self.user_emb.num_embeddings, self.item_emb.num_embeddings
        check_growth("user", old_users, num_users)
        check_growth("item", old_items, num_items)
        users, items = torch.arange(old_users), torch.arange(old_items)
        self.user_emb = grown_embedding(self.user_emb, num_users, users, _paper_normal)
        self.item_emb = grown_embedding(self.item_emb, num_items, items, _paper_normal)
        self.num_items = num_items
        return {"user_emb.weight": users, "item_emb.weight": items}

    def embedding_penalty(self, users: Tensor, items: Tensor) -> Tensor:
        """Mean squared norm of the user and item rows this batch looks up.

        Penalising only the rows in use pulls each row towards zero in proportion to
        how often it is trained, the usual L2 for sparse embedding tables.
        """
        return (self.user_emb(users).pow(2).sum(-1) + self.item_emb(items).pow(2).sum(-1)).mean()


class GMF(_IdTables):
    """Generalised matrix factorisation: h^T (p_u * q_i)."""

    def __init__(self, num_users: int, num_items: int, embed_dim: int = 8) -> None:
        super().__init__(num_users, num_items, embed_dim)
        self.out = nn.Linear(embed_dim, 1)

    def features(self, users: Tensor, items: Tensor) -> Tensor:
        return self.user_emb(users) * self.item_emb(items)

    def score_all(self, context: Context) -> Tensor:
        folded = self.user_emb(context["user"]) * self.out.weight  # [B, d]
        return folded @ self.item_emb.weight.T + self.out.bias

    def item_scores(self, context: Context) -> ItemScores:
        """The dot product of :meth:`score_all`, an item range at a time."""
        folded = self.user_emb(context["user"]) * self.out.weight
        return DotProductScores(folded, self.item_emb.weight, self.out.bias)


class MLPTower(nn.Module):
    """ReLU tower over [p_u, q_i]; the first layer is kept split by input half."""

    def __init__(self, embed_dim: int, layers: Sequence[int]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("MLP needs at least one hidden layer, e.g. layers=[64, 32, 16, 8]")
        self.first_user = nn.Linear(embed_dim, layers[0])
        self.first_item = nn.Linear(embed_dim, layers[0], bias=False)
        rest: list[nn.Module] = []
        for width_in, width_out in zip(layers[:-1], layers[1:]):
            rest += [nn.ReLU(), nn.Linear(width_in, width_out)]
        self.rest = nn.Sequential(*rest, nn.ReLU())
        self.out_dim = layers[-1]

    def forward(self, user_vec: Tensor, item_vec: Tensor) -> Tensor:
        return self.rest(self.first_user(user_vec) + self.first_item(item_vec))

    def all_items(self, user_vec: Tensor, item_table: Tensor) -> Tensor:
        """Tower output for every (user, item) pair: [B, I, out_dim]."""
        item_part = self.first_item(item_table)  # [I, h] once for the whole batch
        return self.rest(self.first_user(user_vec).unsqueeze(1) + item_part.unsqueeze(0))


class MLP(_IdTables):
    """Multi-layer perceptron over concatenated user and item embeddings."""

    def __init__(
        self, num_users: int, num_items: int, embed_dim: int = 32, layers: Sequence[int] = (64, 32, 16, 8)
    ) -> None:
        super().__init__(num_users, num_items, embed_dim)
        self.tower = MLPTower(embed_dim, list(layers))
        self.out = nn.Linear(self.tower.out_dim, 1)

    def features(self, users: Tensor, items: Tensor) -> Tensor:
        return self.tower(self.user_emb(users), self.item_emb(items))

    def score_all(self, context: Context) -> Tensor:
        hidden = self.tower.all_items(self.user_emb(context["user"]), self.item_emb.weight)
        return self.out(hidden).squeeze(-1)


class NeuMF(PairwiseRecommender):
    """GMF and MLP with separate embeddings, fused by one output layer."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        mf_dim: int = 8,
        mlp_embed_dim: int = 32,
        layers: Sequence[int] = (64, 32, 16, 8),
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.gmf = GMF(num_users, num_items, mf_dim)
        self.mlp = MLP(num_users, num_items, mlp_embed_dim, layers)
        # The sub-models' own output layers are unused; NeuMF has its own.
        self.out = nn.Linear(mf_dim + self.mlp.tower.out_dim, 1)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        fused = torch.cat([self.gmf.features(users, items), self.mlp.features(users, items)], dim=-1)
        return self.out(fused).squeeze(-1)

    def score_all(self, context: Context) -> Tensor:
        users = context["user"]
        mf_dim = self.gmf.item_emb.embedding_dim
        w_gmf, w_mlp = self.out.weight[:, :mf_dim], self.out.weight[:, mf_dim:]
        gmf_part = (self.gmf.user_emb(users) * w_gmf) @ self.gmf.item_emb.weight.T
        mlp_hidden = self.mlp.tower.all_items(self.mlp.user_emb(users), self.mlp.item_emb.weight)
        return gmf_part + (mlp_hidden @ w_mlp.T).squeeze(-1) + self.out.bias

    def user_representation(self, context: Context) -> Tensor:
        users = context["user"]
        return torch.cat([self.gmf.user_emb(users), self.mlp.user_emb(users)], dim=-1)

    def embedding_penalty(self, users: Tensor, items: Tensor) -> Tensor:
        """Both branches' looked-up rows (see :meth:`GMF.embedding_penalty`)."""
        return self.gmf.embedding_penalty(users, items) + self.mlp.embedding_penalty(users, items)

    def grow(self, num_users: int, num_items: int) -> RowMap:
        """Grow both branches' tables; the fused output layer does not depend on ids."""
        rows = {**prefixed("gmf", self.gmf.grow(num_users, num_items)),
                **prefixed("mlp", self.mlp.grow(num_users, num_items))}
        self.num_items = num_items
        return rows

    @torch.no_grad()
    def load_pretrained(self, gmf: GMF, mlp: MLP, alpha: float = 0.5) -> None:
        """Initialise from trained GMF and MLP (the paper's pre-training, alpha = 0.5)."""
        self.gmf.load_state_dict(gmf.state_dict())
        self.mlp.load_state_dict(mlp.state_dict())
        self.out.weight.copy_(torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1))
        self.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)
