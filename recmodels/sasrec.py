"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's item history.

Position ``t`` of the output summarises items ``0..t`` and is trained to predict item
``t+1``; scoring uses the last position. Input and output item vectors are shared (one
table with an extra all-zero padding row at index ``num_items``), or come from an
:class:`~recmodels.item_encoder.ItemEncoder` when side features are used;
``tied_output=False`` scores against a separate output table instead (gSASRec's setting).
``sparse_embeddings=True`` makes the item table(s) produce row-wise (sparse) gradients for
catalogues too large to update whole every step (recmodels/item_table.py; train with a
sampled loss and ``train.training.optimizers.RowwiseAdam``).

Differences from the original code, on purpose: pre-LN blocks by default (``pre_ln``),
queries/keys/values all read the normalised input, and attention-weight dropout is a
separate ``attn_dropout`` (default 0) because on CPU any attention dropout disables the
fused attention kernel and makes attention about 2x slower.
"""
from __future__ import annotations

from recmodels.feature_tensors import FeatureTensors
from recmodels.item_encoder import ItemEncoder
from recmodels.transformer_recommender import TransformerRecommender


class SASRec(TransformerRecommender):
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
        sparse_embeddings: bool = False,
    ) -> None:
        super().__init__(
            num_items, hidden, num_blocks, num_heads, max_len, dropout, pre_ln, item_encoder,
            scale_embeddings, attn_dropout, item_features, fusion,
            causal=True, ffn_mult=1, activation="relu", output_bias=False, tied_output=tied_output,
            sparse_embeddings=sparse_embeddings,
        )
