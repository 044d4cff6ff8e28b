"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's item history.

Position ``t`` of the output summarises items ``0..t`` and is trained to predict item
``t+1``; scoring uses the last position. Input and output item vectors are shared (one
table with an extra all-zero padding row at index ``num_items``), or come from an
:class:`~recmodels.item_encoder.ItemEncoder` when side features are used;
``tied_output=False`` scores against a separate output table instead (gSASRec's setting).

Differences from the original code, on purpose: pre-LN blocks by default (``pre_ln``),
queries/keys/values all read the normalised input, and attention-weight dropout is a
separate ``attn_dropout`` (default 0) because on CPU any attention dropout disables the
fused attention kernel and makes attention about 2x slower.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from recmodels.base import Context, Recommender, to_embedding_index
from recmodels.feature_tensors import FeatureTensors
from recmodels.item_encoder import ItemEncoder
from recmodels.item_table import SharedItemTable
from recmodels.transformer import TransformerEncoder, embedding_scale, init_weights


class SASRec(SharedItemTable, Recommender):
    """Causal transformer recommender; histories are left-padded with -1."""

    def __init__(
        self,
        num_items: int,
        hidden: int = 50,
        num_blocks: int = 2,
        num_heads: int = 1,
        max_len: int = 200,
        dropout: float = 0.2,
        pre_ln: bool = True,
        item_encoder: ItemEncoder | None = None,
        scale_embeddings: bool = False,
        attn_dropout: float = 0.0,
        item_features: FeatureTensors | None = None,
        fusion: str = "sum",
        tied_output: bool = True,
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden = hidden
        self.max_len = max_len
        self.pad_row = num_items
        self.scale = embedding_scale(hidden, scale_embeddings)
        if item_features is not None:  # side features: item vectors from an ItemEncoder
            if item_encoder is not None:
                raise ValueError("pass item_encoder or item_features, not both")
            item_encoder = item_features.encoder(hidden, fusion)
        self.output_bias: Tensor | None = None  # tied scores, no bias (kept for the loss API)
        if item_encoder is not None:
            _check_encoder(item_encoder, num_items, hidden)
            self.item_encoder: ItemEncoder | None = item_encoder
            self.item_emb = None
        else:
            self.item_encoder = None
            self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=self.pad_row)
        # Separate output vectors, one row per real item (no padding row to score).
        self.output_emb = None if tied_output else nn.Embedding(num_items, hidden)
        self.encoder = TransformerEncoder(
            hidden, num_blocks, num_heads, max_len, dropout, attn_dropout, pre_ln, causal=True
        )
        init_weights(self)

    # ----- item side -----
    def _input_embeddings(self, history: Tensor) -> Tensor:
        if self.item_encoder is not None:
            x = self.item_encoder(history.clamp_min(0))
            x = x.masked_fill((history < 0)[..., None], 0.0)
        else:
            x = self.item_emb(to_embedding_index(history, self.pad_row))
        return x * self.scale if self.scale != 1.0 else x

    # ----- encoder -----
    def forward(self, history: Tensor) -> Tensor:
        """history [B,L] -> hidden [B,min(L,max_len),d] for the last max_len positions.

        Position t predicts the next item after history[:, t]; padded rows are zero.
        """
        history = history[:, -self.max_len :]
        return self.encoder(self._input_embeddings(history), history >= 0)

    # ----- Recommender API -----
    def user_representation(self, context: Context) -> Tensor:
        return self(context["history"])[:, -1]

    def score_all(self, context: Context) -> Tensor:
        return self.user_representation(context) @ self.item_table().T

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        user = self.user_representation(context)
        return torch.einsum("bd,bcd->bc", user, self.item_embeddings(candidates))

    # ----- incremental updates -----
    def grow(self, num_items: int) -> dict[str, Tensor]:
        """Room for ``num_items`` items: real rows keep their index, the padding row moves
        to the new end, new rows are drawn like a fresh model's (recmodels/growth.py)."""
        from recmodels.growth import check_growth, fresh_normal, grown_embedding, old_row_positions, refuse_encoder

        refuse_encoder(self)
        check_growth("item", self.num_items, num_items)
        rows = old_row_positions(self.num_items, num_items, num_special=1)
        self.item_emb = grown_embedding(self.item_emb, num_items + 1, rows, fresh_normal)
        moved = {"item_emb.weight": rows}
        if self.output_emb is not None:
            outputs = torch.arange(self.num_items)
            self.output_emb = grown_embedding(self.output_emb, num_items, outputs, fresh_normal)
            moved["output_emb.weight"] = outputs
        self.num_items, self.pad_row = num_items, num_items
        return moved


def _check_encoder(encoder: ItemEncoder, num_items: int, dim: int) -> None:
    if encoder.num_items != num_items or encoder.dim != dim:
        raise ValueError(
            f"item_encoder is built for {encoder.num_items} items of size {encoder.dim}, "
            f"but the model has num_items={num_items}, hidden={dim}; build it with the same sizes"
        )
