"""Item vectors from the item id plus side features (genres, tags, numeric attributes).

Sequence models take an optional :class:`ItemEncoder`; when given, every item vector the
model uses (history inputs and output scores) comes from here, so side features shape
both what the model reads and what it ranks. Feature values are fixed per item and are
stored as buffers (they move with the model and are saved with it):

- a single-valued categorical feature: LongTensor [num_items] (or [num_items, 1]);
- a multi-valued one: LongTensor [num_items, max_values], padded with -1, averaged with
  an ``EmbeddingBag`` (an item without values gets a zero vector);
- numeric features: FloatTensor [num_items, numeric_dim], linearly projected.

``fusion="sum"`` adds all parts (each of size ``dim``); ``"concat"`` concatenates them and
projects back to ``dim``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

FUSIONS = ("sum", "concat")


class ItemEncoder(nn.Module):
    """ids [...] (each in 0..num_items-1) -> item vectors [..., dim]."""

    def __init__(
        self,
        num_items: int,
        dim: int,
        categorical_features: dict[str, tuple[int, bool]] | None = None,
        numeric_dim: int = 0,
        fusion: str = "sum",
        *,
        categorical_values: dict[str, Tensor] | None = None,
        numeric_values: Tensor | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; valid: {list(FUSIONS)}")
        categorical_features = dict(categorical_features or {})
        categorical_values = dict(categorical_values or {})
        if set(categorical_features) != set(categorical_values):
            raise ValueError(
                "categorical_features and categorical_values must name the same features; "
                f"got {sorted(categorical_features)} vs {sorted(categorical_values)}"
            )
        self.num_items = num_items
        self.dim = dim
        self.fusion = fusion
        self.feature_names = sorted(categorical_features)
        self.id_emb = nn.Embedding(num_items, dim)
        self.embeddings = nn.ModuleDict()
        for name in self.feature_names:
            cardinality, multi_valued = categorical_features[name]
            values = self._check_values(name, categorical_values[name], cardinality, multi_valued)
            # -1 (missing / padding) maps to an all-zero row at index `cardinality`.
            values = torch.where(values >= 0, values, torch.full_like(values, cardinality))
            self.register_buffer(f"values_{name}", values)
            if multi_valued:
                self.embeddings[name] = nn.EmbeddingBag(
                    cardinality + 1, dim, mode="mean", padding_idx=cardinality
                )
            else:
                self.embeddings[name] = nn.Embedding(cardinality + 1, dim, padding_idx=cardinality)
        self.numeric_dim = numeric_dim
        if numeric_dim > 0:
            if numeric_values is None or tuple(numeric_values.shape) != (num_items, numeric_dim):
                got = None if numeric_values is None else tuple(numeric_values.shape)
                raise ValueError(
                    f"numeric_values must be a float tensor [num_items={num_items}, "
                    f"numeric_dim={numeric_dim}]; got {got}"
                )
            self.register_buffer("numeric_values", numeric_values.float())
            self.numeric = nn.Linear(numeric_dim, dim)
        num_parts = 1 + len(self.feature_names) + (numeric_dim > 0)
        self.project = nn.Linear(num_parts * dim, dim) if fusion == "concat" else None

    def _check_values(self, name: str, values: Tensor, cardinality: int, multi: bool) -> Tensor:
        values = torch.as_tensor(values, dtype=torch.long)
        if not multi and values.dim() == 2 and values.shape[1] == 1:
            values = values[:, 0]
        want = "[num_items, max_values]" if multi else "[num_items]"
        if values.shape[0] != self.num_items or values.dim() != (2 if multi else 1):
            raise ValueError(
                f"feature {name!r}: values must be a LongTensor {want} with "
                f"num_items={self.num_items}; got shape {tuple(values.shape)}"
            )
        if values.numel() and (int(values.max()) >= cardinality or int(values.min()) < -1):
            raise ValueError(
                f"feature {name!r}: values must lie in 0..{cardinality - 1} (or -1 for none); "
                f"got range {int(values.min())}..{int(values.max())}"
            )
        return values

    def table(self) -> Tensor:
        """Vectors of all items [num_items, dim]."""
        return self._encode(torch.arange(self.num_items, device=self.id_emb.weight.device))

    def forward(self, ids: Tensor) -> Tensor:
        # Large batches repeat items: encoding the catalogue once and indexing is cheaper.
        if ids.numel() > self.num_items:
            return self.table()[ids]
        return self._encode(ids.reshape(-1)).view(*ids.shape, self.dim)

    def _encode(self, flat_ids: Tensor) -> Tensor:
        parts = [self.id_emb(flat_ids)]
        for name in self.feature_names:
            values = getattr(self, f"values_{name}")[flat_ids]
            parts.append(self.embeddings[name](values))
        if self.numeric_dim > 0:
            parts.append(self.numeric(self.numeric_values[flat_ids]))
        if self.project is not None:
            return self.project(torch.cat(parts, dim=-1))
        return torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
