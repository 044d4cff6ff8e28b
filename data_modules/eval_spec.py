"""Which evaluation rows and candidates to build, and the DataLoader that serves them.

Evaluation rows are data: the held-out targets of a split, the context history a model
may see for them, and for the sampled protocol each row's candidate list. This object
describes them (the ``eval`` config minus how scores become metrics) and builds the
loader for one rank's share of a split, so a data module serves validation and test
without knowing how they are scored.

- ``full``: each batch carries the (row, item) pairs of the context history to remove
  from the ranking (the row's own target excepted).
- ``sampled``: each row carries ``1 + N`` candidates, target first, drawn once per
  split by ``seed`` (``uniform``/``popularity``) or read from the data (``given``).
"""
from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader

from data_modules.eval_candidates import SAMPLERS, split_candidates
from data_modules.eval_rows import EvalRows, RangeBatches, shard_bounds
from data_modules.interactions import SPLIT_CODES, TEST, VAL, InteractionData

PROTOCOLS = ("full", "sampled")


def parse_split(split: int | str) -> int:
    """``"val"``/``"test"`` or their codes -> the code; anything else is an error."""
    code = SPLIT_CODES.get(split, split) if isinstance(split, str) else split
    if code not in (VAL, TEST):
        raise ValueError(f"can only evaluate split 'val' ({VAL}) or 'test' ({TEST}), got {split!r}")
    return int(code)


def row_index(rows: np.ndarray, num_rows: int) -> np.ndarray:
    """Row indices from indices or a boolean mask over a split's rows."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (num_rows,):
            raise ValueError(f"a boolean rows mask needs shape ({num_rows},), got {rows.shape}")
        return np.flatnonzero(rows)
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= num_rows):
        raise ValueError(f"rows must index 0..{num_rows - 1}; got {rows.min()}..{rows.max()}")
    return rows


class EvalSpec:
    """The evaluation rows of a run: protocol, candidates, batching.

    ``num_negatives`` is the number of sampled negatives; with ``sampler="given"`` the
    width of the given lists is used instead (known once the test split is built:
    :attr:`given_width`). ``max_k`` is the largest cutoff the rows are ranked at: a
    candidate list that short would make every target a hit, so it is refused.
    """

    def __init__(
        self,
        protocol: str = "full",
        num_negatives: int = 100,
        sampler: str = "uniform",
        seed: int = 0,
        batch_size: int = 512,
        max_history: int = 200,
        num_workers: int = 0,
        val_sampler: str | None = None,
        max_k: int = 1,
    ) -> None:
        if val_sampler is not None and val_sampler not in SAMPLERS:
            raise ValueError(f"unknown eval.val_sampler '{val_sampler}'; choose from {list(SAMPLERS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown eval.protocol '{protocol}'; choose from {list(PROTOCOLS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown eval.sampler '{sampler}'; choose from {list(SAMPLERS)}")
        for name, value in (("num_negatives", num_negatives), ("batch_size", batch_size),
                            ("max_history", max_history)):
            if int(value) <= 0:
                raise ValueError(f"eval.{name} must be positive, got {value}")
        if int(num_workers) < 0:
            raise ValueError(f"eval.num_workers must be >= 0, got {num_workers}")
        self.protocol, self.sampler = protocol, sampler
        # Data sets such as NCF's ship candidates for the test split only; validation
        # then draws its own (e.g. uniform) with the same list length.
        self.val_sampler = val_sampler or sampler
        self.num_negatives, self.seed = int(num_negatives), int(seed)
        self.batch_size, self.max_history = int(batch_size), int(max_history)
        self.num_workers, self.max_k = int(num_workers), int(max_k)
        if protocol == "sampled" and sampler != "given" and self.max_k > self.num_negatives:
            raise ValueError(
                f"cutoff k={self.max_k} >= list length 1+{self.num_negatives}: every target "
                "would be a hit; use smaller eval.ks or more eval.num_negatives"
            )
        self.given_width: int | None = None
        self._cache: dict[tuple[int, int], tuple[InteractionData, np.ndarray]] = {}

    def candidates(self, data: InteractionData, split: int) -> np.ndarray:
        """``[rows, 1+N]`` candidates of ``split`` (target first); computed once per split."""
        key = (id(data), split)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not data:
            sampler = self.val_sampler if split == VAL else self.sampler
            cands = split_candidates(data, split, sampler, self.num_negatives, self.seed)
            cached = self._cache[key] = (data, cands)
        cands = cached[1]
        if self.sampler == "given" and split != VAL:
            self.given_width = cands.shape[1] - 1
            if self.max_k > self.given_width:
                raise ValueError(
                    f"cutoff k={self.max_k} >= list length {cands.shape[1]} of the given "
                    "negatives: every target would be a hit; use smaller eval.ks"
                )
        return cands

    def dataset(self, data: InteractionData, split: int | str, rows: np.ndarray | None = None) -> EvalRows:
        """The evaluated rows of ``split`` (all, or the chosen ``rows`` of ``data.targets``)."""
        split = parse_split(split)
        users, targets = data.targets(split)
        context = data.histories(*data.context_splits(split))
        cands = self.candidates(data, split) if self.protocol == "sampled" else None
        if rows is not None:
            rows = row_index(rows, len(users))
            users, targets = users[rows], targets[rows]
            cands = cands[rows] if cands is not None else None
        return EvalRows(
            users, targets, context, self.max_history,
            candidates=cands, mask_known=self.protocol == "full",
        )

    def dataloader(
        self,
        data: InteractionData,
        split: int | str,
        rank: int = 0,
        world_size: int = 1,
        rows: np.ndarray | None = None,
    ) -> DataLoader:
        """Batches of this rank's contiguous share of ``split``'s rows (no padding, no drops).

        Use with ``Trainer(use_distributed_sampler=False)``: sharding is done here.
        ``rows`` (indices or a boolean mask over ``data.targets(split)``) evaluates a
        slice only, e.g. the rows whose target is a rarely seen item.
        """
        dataset = self.dataset(data, split, rows)
        lo, hi = shard_bounds(len(dataset), rank, world_size)
        return DataLoader(
            dataset,
            sampler=RangeBatches(lo, hi, self.batch_size),
            batch_size=None,  # the dataset returns whole batches
            num_workers=self.num_workers,
        )
