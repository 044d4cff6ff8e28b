"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained as a cloze task.

Training hides some history items behind a [MASK] token and predicts them from both
sides; recommendation appends [MASK] after the history and scores that position.

Histories use ``-1`` for padding and :data:`MASK` (``-2``) for the mask token (the
training collate writes ``-2`` at masked positions). The item table has two extra rows:
``num_items`` (padding, all zero) and ``num_items + 1`` ([MASK]); with an item encoder
[MASK] is a learned vector instead. Output scores are the dot product with the same item
vectors plus an optional per-item bias. ``sparse_embeddings=True`` (row-wise table
gradients, recmodels/item_table.py) needs ``output_bias=False``: the bias vector would be
updated whole every step.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from recmodels.feature_tensors import FeatureTensors
from recmodels.item_encoder import ItemEncoder
from recmodels.transformer_recommender import TransformerRecommender

MASK = -2  # history value meaning "[MASK] token here"


class BERT4Rec(TransformerRecommender):
    """Bidirectional transformer recommender; histories are left-padded with -1."""

    num_special: ClassVar[int] = 2  # padding, [MASK]

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        num_blocks: int = 2,
        num_heads: int = 2,
        max_len: int = 200,
        dropout: float = 0.1,
        pre_ln: bool = False,
        output_bias: bool = True,
        item_encoder: ItemEncoder | None = None,
        scale_embeddings: bool = False,
        attn_dropout: float = 0.0,
        ffn_mult: int = 4,
        item_features: FeatureTensors | None = None,
        fusion: str = "sum",
        sparse_embeddings: bool = False,
    ) -> None:
        super().__init__(
            num_items, hidden, num_blocks, num_heads, max_len, dropout, pre_ln, item_encoder,
            scale_embeddings, attn_dropout, item_features, fusion,
            causal=False, ffn_mult=ffn_mult, activation="gelu", output_bias=output_bias, tied_output=True,
            sparse_embeddings=sparse_embeddings,
        )
        if self.mask_emb is not None:
            nn.init.normal_(self.mask_emb, std=0.02)

    @property
    def mask_row(self) -> int:
        """Table row of the [MASK] vector: right after the padding row."""
        return self.num_items + 1

    def _add_special_vectors(self) -> None:
        """[MASK] is a table row without an encoder, a learned vector with one."""
        self.mask_emb = nn.Parameter(torch.zeros(self.hidden)) if self.item_encoder is not None else None

    # ----- item side -----
    def _table_rows(self, history: Tensor) -> Tensor:
        special = torch.where(history == MASK, self.mask_row, self.pad_row)
        return torch.where(history >= 0, history, special)

    def _encoded_inputs(self, history: Tensor) -> Tensor:
        x = super()._encoded_inputs(history)
        return torch.where((history == MASK)[..., None], self.mask_emb.to(x.dtype), x)

    def _valid(self, history: Tensor) -> Tensor:
        """Real items and [MASK] positions; only padding is ignored."""
        return history != -1

    def _scoring_history(self, history: Tensor) -> Tensor:
        """History + a trailing [MASK], dropping the oldest position if at max_len."""
        mask = torch.full_like(history[:, :1], MASK)
        return torch.cat([history, mask], dim=1)[:, -self.max_len :]
