"""What SASRec and BERT4Rec share: item vectors, the encoder call, scoring and growth.

Both models read a left-padded history (``-1`` = padding), look its items up in one
table (or an :class:`~recmodels.item_encoder.ItemEncoder` with side features), run a
:class:`~recmodels.transformer.TransformerEncoder` and score items by a dot product
with the output item vectors (plus an optional per-item bias). The table has
``num_special`` rows after the real items (padding first, then model-specific tokens
such as [MASK]), so real item ``i`` is row ``i`` and growing the catalogue only moves
the special rows. The model files keep what differs: attention direction, defaults and
the tokens they add.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from recmodels.base import Context, Recommender
from recmodels.feature_tensors import FeatureTensors
from recmodels.growth import (
    RowMap, check_growth, fresh_normal, grown_embedding, grown_parameter, old_row_positions, refuse_encoder,
)
from recmodels.item_encoder import ItemEncoder
from recmodels.item_table import SharedItemTable, check_sparse_embeddings
from recmodels.transformer import TransformerEncoder, embedding_scale, init_weights


class TransformerRecommender(SharedItemTable, Recommender):
    """A transformer over item histories that scores the catalogue from its last position."""

    inputs: ClassVar[frozenset[str]] = frozenset({"history"})
    num_special: ClassVar[int] = 1  # rows after the real items: padding (+ subclass tokens)

    def __init__(
        self,
        num_items: int,
        hidden: int,
        num_blocks: int,
        num_heads: int,
        max_len: int,
        dropout: float,
        pre_ln: bool,
        item_encoder: ItemEncoder | None,
        scale_embeddings: bool,
        attn_dropout: float,
        item_features: FeatureTensors | None,
        fusion: str,
        *,
        causal: bool,
        ffn_mult: int,
        activation: str,
        output_bias: bool,
        tied_output: bool,
        encoder: nn.Module | None = None,
        sparse_embeddings: bool = False,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden = hidden
        self.max_len = max_len
        self.scale = embedding_scale(hidden, scale_embeddings)
        self.sparse_embeddings = check_sparse_embeddings(sparse_embeddings, item_encoder, item_features, output_bias)
        item_encoder = _resolve_encoder(item_encoder, item_features, num_items, hidden, fusion)
        if item_encoder is not None:
            self.item_encoder: ItemEncoder | None = item_encoder
            self.item_emb = None
        else:
            self.item_encoder = None
            self.item_emb = nn.Embedding(
                num_items + self.num_special, hidden, padding_idx=num_items, sparse=sparse_embeddings
            )
        self._add_special_vectors()
        self.output_bias = nn.Parameter(torch.zeros(num_items)) if output_bias else None
        # Separate output vectors, one row per real item (no padding row to score).
        self.output_emb = None if tied_output else nn.Embedding(num_items, hidden, sparse=sparse_embeddings)
        # ``encoder``: another sequence encoder with the same call (embeddings, valid -> hidden).
        self.encoder = encoder if encoder is not None else TransformerEncoder(
            hidden, num_blocks, num_heads, max_len, dropout, attn_dropout, pre_ln,
            causal=causal, ffn_mult=ffn_mult, activation=activation,
        )
        init_weights(self)

    @property
    def pad_row(self) -> int:
        """Table row of the padding vector (all zero): right after the real items."""
        return self.num_items

    def _add_special_vectors(self) -> None:
        """Register learned input vectors of special tokens (none here); called between the
        item side and the output side so parameter order stays fixed."""

    # ----- item side -----
    def _input_embeddings(self, history: Tensor) -> Tensor:
        if self.item_encoder is not None:
            x = self._encoded_inputs(history)
        else:
            x = self.item_emb(self._table_rows(history))
        return x * self.scale if self.scale != 1.0 else x

    def _table_rows(self, history: Tensor) -> Tensor:
        """Table row of every history position (padding -> ``pad_row``)."""
        return torch.where(history >= 0, history, self.pad_row)

    def _encoded_inputs(self, history: Tensor) -> Tensor:
        """Encoder vectors of the history's items; padding positions are zero."""
        x = self.item_encoder(history.clamp_min(0))
        return x.masked_fill((history < 0)[..., None], 0.0)

    def _valid(self, history: Tensor) -> Tensor:
        """Positions the encoder attends to (real items)."""
        return history >= 0

    # ----- encoder -----
    def forward(self, history: Tensor) -> Tensor:
        """history [B,L] -> hidden [B,min(L,max_len),d] for the last max_len positions;
        padded rows are zero."""
        history = history[:, -self.max_len :]
        return self.encoder(self._input_embeddings(history), self._valid(history))

    def _scoring_history(self, history: Tensor) -> Tensor:
        """The input whose last position recommends the next item (the history itself)."""
        return history

    # ----- Recommender API -----
    def user_representation(self, context: Context) -> Tensor:
        return self(self._scoring_history(context["history"]))[:, -1]

    def score_all(self, context: Context) -> Tensor:
        scores = self.user_representation(context) @ self.item_table().T
        return scores + self.output_bias if self.output_bias is not None else scores

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        user = self.user_representation(context)
        scores = torch.einsum("bd,bcd->bc", user, self.item_embeddings(candidates))
        return scores + self.output_bias[candidates] if self.output_bias is not None else scores

    # ----- incremental updates -----
    def grow(self, num_items: int) -> RowMap:
        """Room for ``num_items`` items: real rows keep their index, special rows move to
        the new end, new rows are drawn like a fresh model's (biases 0; recmodels/growth.py)."""
        refuse_encoder(self)
        check_growth("item", self.num_items, num_items)
        rows = old_row_positions(self.num_items, num_items, num_special=self.num_special)
        self.item_emb = grown_embedding(self.item_emb, num_items + self.num_special, rows, fresh_normal)
        moved = {"item_emb.weight": rows}
        items = torch.arange(self.num_items)
        if self.output_emb is not None:
            self.output_emb = grown_embedding(self.output_emb, num_items, items, fresh_normal)
            moved["output_emb.weight"] = items
        if self.output_bias is not None:
            self.output_bias = grown_parameter(self.output_bias, num_items, items, nn.init.zeros_)
            moved["output_bias"] = items
        self.num_items = num_items
        return moved


def _resolve_encoder(
    encoder: ItemEncoder | None, features: FeatureTensors | None, num_items: int, dim: int, fusion: str
) -> ItemEncoder | None:
    """The item encoder to use: the one given, one built from side features, or none."""
    if features is not None:
        if encoder is not None:
            raise ValueError("pass item_encoder or item_features, not both")
        encoder = features.encoder(dim, fusion)
    if encoder is not None and (encoder.num_items != num_items or encoder.dim != dim):
        raise ValueError(
            f"item_encoder is built for {encoder.num_items} items of size {encoder.dim}, "
            f"but the model has num_items={num_items}, hidden={dim}; build it with the same sizes"
        )
    return encoder
