"""The item side shared by SASRec and BERT4Rec: the item vectors that outputs score.

Output vectors are the input table (tied, the default: an id embedding whose extra rows
hold padding/[MASK], or an :class:`~recmodels.item_encoder.ItemEncoder` with side
features), or a separate ``output_emb`` table of real items when the model has one (as
gSASRec's reference code does: it converges better there). The losses and the scoring
interface read them through these three methods in every case.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from recmodels.item_encoder import ItemEncoder


class SharedItemTable:
    """Mixin for models with ``num_items``, ``item_emb``, ``item_encoder`` and
    ``output_emb`` (None when tied) attributes."""

    num_items: int
    item_emb: nn.Embedding | None
    item_encoder: ItemEncoder | None
    output_emb: nn.Embedding | None

    def item_embeddings(self, ids: Tensor) -> Tensor:
        """Output vectors of real items (ids in 0..num_items-1) [..., d]."""
        if self.output_emb is not None:
            return self.output_emb(ids)
        return self.item_encoder(ids) if self.item_encoder is not None else self.item_emb(ids)

    def item_table(self) -> Tensor:
        """Output table [num_items, d]: special rows excluded (a view without an encoder)."""
        if self.output_emb is not None:
            return self.output_emb.weight
        if self.item_encoder is not None:
            return self.item_encoder.table()
        return self.item_emb.weight[: self.num_items]

    def output_items(self) -> Tensor | Callable[[Tensor], Tensor]:
        """What the losses score against: the table itself, or a lookup with an encoder."""
        if self.item_encoder is not None and self.output_emb is None:
            return self.item_embeddings
        return self.item_table()
