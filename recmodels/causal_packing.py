"""Left-padded causal batches on CPU: every row's items gathered to the front of its
length group in one index, and every output put back (zeros on padding) in one more.

A causal encoder only needs each row's real positions, in order, with padding after
them (a query never looks ahead, so it never sees the padding). The encoder used to get
there in steps: trim each length group, select its rows, roll each row (an element-wise
``gather``), run, roll back, zero the padding, pad the group back to full length,
concatenate and restore the row order; about a dozen full-size copies forward and as
many backward (``gather``'s backward is an element-wise ``scatter_add``). Here one
``index_select`` of whole d-wide rows builds each group and one builds the output, and
their backward passes are row-wise ``index_add``.

The rows are placed exactly as the roll placed them (items first, then the row's own
left padding), so every real output equals the stepwise computation's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedGroup:
    """One length group: ``source`` [rows * span] flat positions of the input to gather."""

    source: Tensor
    rows: int
    span: int


def all_left_padded(valid: Tensor) -> Tensor:
    """0-d bool tensor (no host sync): every row's real positions are one run at the end
    (empty rows allowed)."""
    length = valid.shape[1]
    real = valid.sum(dim=1)
    first = valid.to(torch.uint8).argmax(dim=1)
    return ((first == length - real) | (real == 0)).all()


def left_padded(valid: Tensor) -> bool:
    """:func:`all_left_padded` as a bool (one host sync)."""
    return bool(all_left_padded(valid))


def packing_plan(
    valid: Tensor, groups: list[tuple[Tensor | None, int]]
) -> tuple[list[PackedGroup], Tensor]:
    """(groups to gather, output index [B * L]) for left-padded ``valid`` [B, L].

    ``groups``: rows and span of each group (:func:`recmodels.transformer.length_groups`).
    In a group of span S, row b (r real items) becomes its items, then the positions
    ``L - S .. L - r - 1`` (its left padding inside the span). The output index points
    each real position at its group output row and every padded position at one extra
    row after all groups (a zero row the caller appends).
    """
    batch, length = valid.shape
    device = valid.device
    real = valid.sum(dim=1)
    output = torch.full((batch, length), -1, dtype=torch.long, device=device)
    packed, offset = [], 0
    for rows, span in groups:
        rows = torch.arange(batch, device=device) if rows is None else rows
        items = real[rows][:, None]
        j = torch.arange(span, device=device)[None, :]
        position = torch.where(j < items, length - items + j, length - span + j - items)
        packed.append(PackedGroup((rows[:, None] * length + position).reshape(-1), len(rows), span))
        keep = j < items
        packed_row = offset + torch.arange(len(rows) * span, device=device).view(len(rows), span)
        output[rows[:, None].expand(-1, span)[keep], position[keep]] = packed_row[keep]
        offset += len(rows) * span
    return packed, torch.where(output < 0, offset, output).view(-1)  # padding -> the zero row


def encode_packed(
    encode: Callable[[Tensor], Tensor], x: Tensor, groups: list[PackedGroup], output: Tensor
) -> Tensor:
    """``encode`` [n, S, d] -> [n, S, d] run on each packed group; [B, L, d] with zero padding."""
    batch, length, dim = x.shape
    flat = x.reshape(batch * length, dim)
    outputs = [
        encode(flat.index_select(0, g.source).view(g.rows, g.span, dim)).reshape(g.rows * g.span, dim)
        for g in groups
    ]
    outputs.append(x.new_zeros(1, dim))
    return torch.cat(outputs).index_select(0, output).view(batch, length, dim)
