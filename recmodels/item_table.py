"""The item side shared by SASRec and BERT4Rec: one table for inputs and outputs.

Item vectors come from an id embedding (whose extra rows hold padding/[MASK]) or, with
side features, from an :class:`~recmodels.item_encoder.ItemEncoder`; the losses and the
scoring interface read them through these three methods either way.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from recmodels.item_encoder import ItemEncoder


class SharedItemTable:
    """Mixin for models with ``num_items``, ``item_emb`` and ``item_encoder`` attributes."""

    num_items: int
    item_emb: nn.Embedding | None
    item_encoder: ItemEncoder | None

    def item_embeddings(self, ids: Tensor) -> Tensor:
        """Vectors of real items (ids in 0..num_items-1) [..., d]."""
        return self.item_encoder(ids) if self.item_encoder is not None else self.item_emb(ids)

    def item_table(self) -> Tensor:
        """Output table [num_items, d]: special rows excluded (a view without an encoder)."""
        if self.item_encoder is not None:
            return self.item_encoder.table()
        return self.item_emb.weight[: self.num_items]

    def output_items(self) -> Tensor | Callable[[Tensor], Tensor]:
        """What the losses score against: the table itself, or a lookup with an encoder."""
        return self.item_embeddings if self.item_encoder is not None else self.item_table()
