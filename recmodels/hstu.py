"""HSTU (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential
Transducers for Generative Recommendations", ICML 2024) as a next-item recommender.

The sequential setting of the paper's section 4.1.1: SASRec's data, training and
scoring (causal next-item prediction, left-padded histories, one shared item table),
with the transformer blocks replaced by HSTU layers (:mod:`recmodels.hstu_layers`:
pointwise SiLU attention with a learned relative position bias, a U gate, no
feed-forward). As in the authors' ML-1M setting, inputs are scaled by sqrt(d), and
outputs score by cosine similarity divided by a temperature: the model L2-normalises its
output vectors and its output item table and divides the former by ``temperature``, so
every loss (sampled softmax included) and the scoring interface see cos / temperature
through a plain dot product. ``l2_norm=False`` scores raw dot products (still divided).

Long histories (``max_len`` 1,024 and more): on CPU, rows of a batch are grouped by
length and each group is trimmed of its left padding before attention, so short rows do
not pay ``max_len`` squared; the result equals the padded computation exactly (see
:class:`~recmodels.hstu_layers.HSTUEncoder`). Accelerators run the padded batch.

``sparse_embeddings=True`` gives row-wise item-table gradients for huge catalogues
(recmodels/item_table.py): the losses then read normalised rows through the lookup.

Left out: the paper's time bias (bucketed time gaps between events), because histories
here carry item ids only.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from recmodels.feature_tensors import FeatureTensors
from recmodels.hstu_layers import HSTUEncoder
from recmodels.item_encoder import ItemEncoder
from recmodels.transformer_recommender import TransformerRecommender

L2_EPS = 1e-6


class HSTU(TransformerRecommender):
    """Causal HSTU over item histories (left-padded with -1), scored from the last position."""

    def __init__(
        self,
        num_items: int,
        hidden: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        max_len: int = 200,
        dropout: float = 0.2,
        attention_dim: int | None = None,
        linear_dim: int | None = None,
        temperature: float = 0.05,
        l2_norm: bool = True,
        scale_embeddings: bool = True,
        max_groups: int = 3,
        item_encoder: ItemEncoder | None = None,
        item_features: FeatureTensors | None = None,
        fusion: str = "sum",
        tied_output: bool = True,
        sparse_embeddings: bool = False,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature} (the authors use 0.05)")
        attention_dim = _per_head("attention_dim", attention_dim, hidden, num_heads)
        linear_dim = _per_head("linear_dim", linear_dim, hidden, num_heads)
        encoder = HSTUEncoder(
            hidden, num_blocks, num_heads, max_len, dropout, attention_dim, linear_dim, max_groups
        )
        super().__init__(
            num_items, hidden, num_blocks, num_heads, max_len, dropout, True, item_encoder,
            scale_embeddings, 0.0, item_features, fusion,
            causal=True, ffn_mult=1, activation="relu", output_bias=False, tied_output=tied_output,
            encoder=encoder, sparse_embeddings=sparse_embeddings,
        )
        self.encoder.reset_parameters()  # the base class's generic init covered it too
        self.temperature = temperature
        self.l2_norm = l2_norm

    def forward(self, history: Tensor) -> Tensor:
        """history [B,L] -> output vectors [B,min(L,max_len),d]: normalised hidden states
        divided by the temperature (padded rows zero)."""
        return self._normalised(super().forward(history)) / self.temperature

    def item_embeddings(self, ids: Tensor) -> Tensor:
        return self._normalised(super().item_embeddings(ids))

    def item_table(self) -> Tensor:
        return self._normalised(super().item_table())

    def _normalised(self, vectors: Tensor) -> Tensor:
        return F.normalize(vectors, dim=-1, eps=L2_EPS) if self.l2_norm else vectors


def _per_head(name: str, value: int | None, hidden: int, num_heads: int) -> int:
    """A per-head size: as given, or hidden / num_heads (the authors' ML-1M settings)."""
    if value is not None:
        if value < 1:
            raise ValueError(f"{name} must be a positive size per head; got {value}")
        return value
    if num_heads < 1 or hidden % num_heads != 0:
        raise ValueError(
            f"hidden size {hidden} is not divisible by num_heads {num_heads}; "
            f"choose num_heads that divides it or set {name} explicitly"
        )
    return hidden // num_heads
