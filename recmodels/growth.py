"""Growing id-indexed tables (embeddings, per-item biases) for ids that appear later.

A model trained on yesterday's catalogue keeps every learned row when new users or items
arrive: the table is rebuilt larger, old rows are copied bit for bit to the positions
the caller names (real ids keep their index; trailing special rows such as padding or
[MASK] move to the new end), and every other row is initialised like a fresh model's.

``grow`` methods return a *row map*: parameter name -> LongTensor of the new positions
that hold old rows. Trainers use it to freeze old rows or to check them afterwards.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

RowMap = dict[str, Tensor]
Init = Callable[[Tensor], object]


def check_growth(kind: str, old: int, new: int) -> None:
    """Tables only grow: a smaller count means the id maps were not aligned."""
    if new < old:
        raise ValueError(
            f"cannot grow {kind}s from {old} to {new}: old ids must keep their rows; "
            "re-index the new data against the previous id map (data_modules.alignment)"
        )


def old_row_positions(old_real: int, new_real: int, num_special: int) -> Tensor:
    """New positions of the old rows of a table with ``num_special`` trailing rows:
    real rows stay at ``0..old_real-1``, special rows move to after ``new_real``."""
    real = torch.arange(old_real, dtype=torch.long)
    special = new_real + torch.arange(num_special, dtype=torch.long)
    return torch.cat([real, special])


@torch.no_grad()
def grown_rows(old: Tensor, num_rows: int, positions: Tensor, init: Init) -> Tensor:
    """A ``[num_rows, ...]`` tensor: ``init`` everywhere, then ``old`` at ``positions``."""
    if len(positions) != old.shape[0]:
        raise ValueError(f"{len(positions)} positions for {old.shape[0]} old rows")
    out = torch.empty((num_rows, *old.shape[1:]), dtype=old.dtype, device=old.device)
    init(out)
    out[positions.to(old.device)] = old
    return out


def grown_embedding(old: nn.Embedding, num_rows: int, positions: Tensor, init: Init) -> nn.Embedding:
    """``old`` extended to ``num_rows`` rows; its padding row (if any) is among ``positions``
    and its index becomes that row's new position."""
    padding_idx = old.padding_idx
    if padding_idx is not None:
        padding_idx = int(positions[padding_idx])
    emb = nn.Embedding(
        num_rows, old.embedding_dim, padding_idx=padding_idx,
        max_norm=old.max_norm, norm_type=old.norm_type, scale_grad_by_freq=old.scale_grad_by_freq,
        sparse=old.sparse, device=old.weight.device, dtype=old.weight.dtype,
    )
    with torch.no_grad():
        emb.weight.copy_(grown_rows(old.weight, num_rows, positions, init))
    emb.weight.requires_grad_(old.weight.requires_grad)
    return emb


def grown_parameter(old: nn.Parameter, num_rows: int, positions: Tensor, init: Init) -> nn.Parameter:
    """A per-row parameter (e.g. an output bias) extended to ``num_rows`` rows."""
    return nn.Parameter(grown_rows(old.data, num_rows, positions, init), requires_grad=old.requires_grad)


def fresh_normal(weight: Tensor) -> Tensor:
    """Item rows of the transformer models, drawn as ``init_weights`` draws them."""
    return nn.init.normal_(weight, std=0.02)


def refuse_encoder(model: nn.Module) -> None:
    """Feature-built item vectors would need the new items' features: not supported."""
    if getattr(model, "item_encoder", None) is not None:
        raise ValueError(
            f"{type(model).__name__} with an item encoder (side features) cannot grow its "
            "catalogue in place; train it from scratch on the new data"
        )


def prefixed(prefix: str, rows: RowMap) -> RowMap:
    """A sub-module's row map under its attribute name."""
    return {f"{prefix}.{name}": value for name, value in rows.items()}
