"""Rebuild a trained model and everything around it from a run directory.

The network is built from the saved config through the same builder as training
(:func:`train.building.build_with_data`) once :func:`load_run_artifacts` has checked
that the config names only recflow's own classes (:mod:`train.runs.targets`), then the
checkpoint's weights are loaded with ``weights_only=True`` after their checksum. A mismatch (other model, other data) raises
:class:`~train.runs.checkpoints.CheckpointError` naming the keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from data_modules.interactions import TEST, TRAIN, VAL, Histories, InteractionData
from recmodels.base import Context, Recommender, declared_inputs
from train.runs.artifacts import load_run_artifacts
from train.building import build_with_data
from train.runs.checkpoints import CheckpointError, load_weights
from data_modules.id_index import IdIndex


@dataclass
class RunContext:
    """What inference needs next to the network: ids, histories, sizes, the config.

    ``known`` holds every user's interactions over all splits in time order: it is both
    the sequence models' input history and the set of items excluded from
    recommendations (everything the user has already seen).
    """

    run_dir: Path
    cfg: DictConfig
    data: InteractionData
    meta: dict[str, Any]
    weights: Path
    users: IdIndex
    items: IdIndex
    known: Histories
    max_history: int
    inputs: frozenset[str]  # the context keys the model reads (Recommender.inputs)
    device: torch.device

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model") or self.cfg.model.get("name", "model"))

    @property
    def uses_user(self) -> bool:
        """Whether scores depend on the user id."""
        return "user" in self.inputs

    @property
    def uses_history(self) -> bool:
        """Whether scores depend on the history."""
        return "history" in self.inputs

    @property
    def accepts_history_only(self) -> bool:
        """Whether ad-hoc histories (no known user) can be scored."""
        return not self.uses_user

    def user_context(self, users: np.ndarray) -> Context:
        """Context of known users: their id and their whole known history."""
        users = np.asarray(users, dtype=np.int64)
        context = {"user": torch.from_numpy(users).to(self.device)}
        if self.uses_history:
            context["history"] = torch.from_numpy(self.known.padded(users, self.max_history)).to(self.device)
        return context

    def history_context(self, histories: list[np.ndarray]) -> Context:
        """Context of ad-hoc histories (internal item ids, oldest first), left-padded
        to the same length as stored histories."""
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if histories else lengths
        padded = Histories(indptr, items).padded(np.arange(len(histories)), self.max_history)
        return {"history": torch.from_numpy(padded).to(self.device)}


def load_recommender(
    path: str | Path, ckpt: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[Recommender, RunContext]:
    """(model in eval mode on ``device``, its :class:`RunContext`) from a run directory.

    ``path`` is a run directory, its ``artifacts/`` folder, or a checkpoint inside it
    (a Lightning ``.ckpt`` or a consolidated DeepSpeed fp32 state dict); ``ckpt``
    overrides the weights the run recorded.
    """
    art = load_run_artifacts(path, ckpt)
    model = build_with_data(art.cfg.model.net, art.data)
    if not isinstance(model, Recommender):
        raise CheckpointError(f"{art.cfg.model.net._target_} is not a Recommender; cannot serve it")
    inputs = declared_inputs(model)
    load_weights(model, art.weights)
    device = torch.device(device)
    model.to(device).eval()
    known = art.data.histories(TRAIN, VAL, TEST)
    context = RunContext(
        run_dir=art.run_dir,
        cfg=art.cfg,
        data=art.data,
        meta=art.meta,
        weights=art.weights,
        users=IdIndex(art.data.user_ids, "user"),
        items=IdIndex(art.data.item_ids, "item"),
        known=known,
        max_history=_max_history(art.cfg, model),
        inputs=inputs,
        device=device,
    )
    return model, context


def _max_history(cfg: DictConfig, model: Recommender) -> int:
    """History length the evaluator used, capped by what the model reads."""
    length = int(cfg.get("eval", {}).get("max_history", 200))
    model_len = getattr(model, "max_len", None)
    return min(length, int(model_len)) if model_len else length
