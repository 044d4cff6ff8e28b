"""The item side shared by SASRec and BERT4Rec: the item vectors that outputs score.

Output vectors are the input table (tied, the default: an id embedding whose extra rows
hold padding/[MASK], or an :class:`~recmodels.item_encoder.ItemEncoder` with side
features), or a separate ``output_emb`` table of real items when the model has one (as
gSASRec's reference code does: it converges better there). The losses and the scoring
interface read them through these three methods in every case.

With ``sparse_embeddings`` the id tables are ``nn.Embedding(sparse=True)`` and the losses
look rows up through the module (:meth:`SharedItemTable.output_items` returns the lookup),
so a step's table gradient holds only the rows the batch touched: a sparse tensor that
DDP all-reduces sparsely and a row-wise optimiser (``train.training.optimizers.RowwiseAdam``)
applies at the cost of those rows, not of the catalogue.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from recmodels.feature_tensors import FeatureTensors
from recmodels.item_encoder import ItemEncoder


def check_sparse_embeddings(
    sparse: bool, encoder: ItemEncoder | None, features: FeatureTensors | None, output_bias: bool
) -> bool:
    """``sparse``, once the model's other options allow row-wise table gradients."""
    if not sparse:
        return False
    if encoder is not None or features is not None:
        raise ValueError(
            "sparse_embeddings=true applies to the id table; an item encoder (side features) "
            "computes item vectors from dense layers. Set model.net.sparse_embeddings=false"
        )
    if output_bias:
        raise ValueError(
            "sparse_embeddings=true with output_bias=true: the per-item output bias is one dense "
            "vector whose gradient and Adam update touch every item each step. Set "
            "model.net.output_bias=false, or model.net.sparse_embeddings=false"
        )
    return True


class SharedItemTable:
    """Mixin for models with ``num_items``, ``item_emb``, ``item_encoder`` and
    ``output_emb`` (None when tied) attributes."""

    num_items: int
    item_emb: nn.Embedding | None
    item_encoder: ItemEncoder | None
    output_emb: nn.Embedding | None
    sparse_embeddings: bool = False

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
        """What the losses score against: the table itself, or a lookup with an encoder or
        with sparse embeddings (rows read through the module keep the gradient row-wise;
        slicing the weight would make it dense and catalogue-sized)."""
        if self.sparse_embeddings or (self.item_encoder is not None and self.output_emb is None):
            return self.item_embeddings
        return self.item_table()
