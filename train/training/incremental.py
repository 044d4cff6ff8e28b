"""Incremental updates: continue a trained run on new interactions instead of retraining.

``python -m train init_from=RUN_DIR_OR_CKPT data=...`` does two extra steps in
:func:`train.training.run.train`, each one line:

1. :func:`align_with_previous_run` re-indexes the new data against the previous run's id
   maps (its ``artifacts/data``): old raw ids keep their internal ids, unseen users and
   items are appended (:mod:`data_modules.alignment`).
2. :func:`warm_start` rebuilds the previous model at its old size, loads its weights,
   grows its tables for the appended ids (each model's ``grow``: old rows stay bit
   identical, padding/[MASK] rows move to the new end, new rows are drawn like a fresh
   model's) and copies everything into the freshly built model. ``init.lr_scale``
   scales the optimiser's learning rate; ``init.freeze_old_rows`` adds gradient hooks
   that zero the old rows' gradients, so an optimiser without weight decay (Adam, SGD)
   never moves them and its state for them stays zero.

:class:`TimeWindowProtocol` is the evaluation used to compare an update with a full
retrain (``scripts/bench_incremental.py``): train up to ``T``, update on ``[T, T+D)``,
rank each active user's next interaction in ``[T+D, T+2D)``.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn

from data_modules.alignment import IdMapError, align_data
from data_modules.id_index import IdIndex
from data_modules.interactions import TEST, TRAIN, InteractionData
from recmodels.base import Recommender
from recmodels.growth import RowMap
from train.runs.artifacts import ArtifactError, RunArtifacts, load_run_artifacts
from train.building import build_with_data
from train.runs.checkpoints import CheckpointError, load_checkpoint, model_state
from train.runs.targets import UntrustedConfigError
from train.evaluation import Evaluator, evaluate

log = logging.getLogger(__name__)


# --- the previous run ----------------------------------------------------------------------


def previous_run(init_from: str | Path) -> RunArtifacts:
    """The artifacts of ``init_from`` (a run directory or a checkpoint inside one)."""
    try:
        return load_run_artifacts(init_from)  # refuses config targets that are not recflow's own
    except (ArtifactError, CheckpointError, UntrustedConfigError):
        raise
    except Exception as exc:  # unreadable json/yaml/parquet: say which run, not a deep trace
        raise ArtifactError(
            f"init_from={init_from}: the run's artifacts/ could not be read ({type(exc).__name__}: "
            f"{exc}); the folder is damaged or incomplete, pass another run"
        ) from exc


def align_with_previous_run(data: InteractionData, init_from: str | Path | None) -> InteractionData:
    """``data`` re-indexed so the previous run's raw ids keep their internal ids (no-op
    without ``init_from``)."""
    if not init_from:
        return data
    previous = previous_run(init_from).data
    return align_data(data, previous.user_ids, previous.item_ids)


# --- warm start ----------------------------------------------------------------------------


def warm_start(model: nn.Module, data: InteractionData, cfg: DictConfig) -> nn.Module:
    """Load ``cfg.init_from``'s weights into ``model`` (built for the aligned ``data``),
    grown for the new ids; apply ``cfg.init`` (lr scale, frozen old rows). No-op without
    ``init_from``. Scales ``cfg.model.task.optimizer.lr`` in place, so the saved config
    records the learning rate actually used."""
    init_from = cfg.get("init_from")
    if not init_from:
        return model
    options = cfg.get("init") or {}
    freeze = bool(options.get("freeze_old_rows", False))
    if freeze:
        _check_no_weight_decay(cfg)
    art = previous_run(init_from)
    _check_same_model(art, cfg, init_from)
    _check_aligned(art.data, data, init_from)
    old = build_with_data(cfg.model.net, art.data)
    load_fitting(old, model_state(load_checkpoint(art.weights)), art, cfg)
    rows = grow_model(old, data.num_users, data.num_items, need_rows=freeze)
    model.load_state_dict(old.state_dict())
    if freeze:
        freeze_rows(model, rows)
    scale_learning_rate(cfg, float(options.get("lr_scale", 1.0)))
    log.info(
        "warm start from %s: users %d -> %d, items %d -> %d, lr x%s%s",
        art.weights, art.data.num_users, data.num_users, art.data.num_items, data.num_items,
        options.get("lr_scale", 1.0), ", old rows frozen" if freeze else "",
    )
    return model


def _check_same_model(art: RunArtifacts, cfg: DictConfig, init_from: Any) -> None:
    before, now = str(art.meta.get("model_target", "")), str(cfg.model.net._target_)
    if before and before != now:
        raise CheckpointError(
            f"init_from={init_from} holds a {before} model ({art.meta.get('model')}), but this run "
            f"builds {now}; pass model={art.meta.get('model')} (and its settings) or another run"
        )


def _check_aligned(previous: InteractionData, data: InteractionData, init_from: Any) -> None:
    for kind, old, new in (("user", previous.user_ids, data.user_ids), ("item", previous.item_ids, data.item_ids)):
        if len(new) < len(old) or not np.array_equal(new[: len(old)], old):
            raise IdMapError(
                f"the {kind} ids of this run's data do not start with init_from={init_from}'s "
                "id map; align the data first (train.training.incremental.align_with_previous_run)"
            )


def load_fitting(model: nn.Module, state: dict[str, Tensor], art: RunArtifacts, cfg: DictConfig) -> None:
    """Load ``state`` into the old-size ``model``; a mismatch names its cause."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = {k: (tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)}
    if not (missing or unexpected or shapes):
        model.load_state_dict(state)
        return
    sizes = f"{art.data.num_users} users, {art.data.num_items} items"
    if not (missing or unexpected) and all(a[1:] == b[1:] for a, b in shapes.values()):
        listed = ", ".join(f"{k}: {a[0]} rows, artifacts imply {b[0]}" for k, (a, b) in shapes.items())
        raise CheckpointError(
            f"checkpoint {art.weights} does not match the id maps of its run {art.run_dir} "
            f"({sizes}): {listed}. The checkpoint belongs to another run or data; pass the "
            "run directory it was trained in"
        )
    details = [f"missing {missing[:5]}"] if missing else []
    details += [f"unexpected {unexpected[:5]}"] if unexpected else []
    details += [f"{k}: checkpoint {a} vs model {b}" for k, (a, b) in list(shapes.items())[:5]]
    raise CheckpointError(
        f"checkpoint {art.weights} does not fit this run's model.net ({'; '.join(details)}). "
        f"Settings that differ from the previous run: {config_differences(art.cfg, cfg) or 'none found'}; "
        "use the previous run's model settings"
    )


def config_differences(before: DictConfig, now: DictConfig) -> str:
    """``key: before -> now`` for each ``model.net`` setting that changed."""
    old = _plain(before.get("model", {}).get("net", {}))
    new = _plain(now.model.net)
    keys = sorted(set(old) | set(new))
    return ", ".join(f"model.net.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


def _plain(node: Any) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    except Exception:  # unresolved interpolations: compare as written
        return OmegaConf.to_container(node, resolve=False)


def grow_model(model: nn.Module, num_users: int, num_items: int, need_rows: bool = False) -> RowMap:
    """Grow ``model``'s id tables through its ``grow`` method (passing the sizes it takes);
    returns where the old rows went. A model without ``grow`` is fine while nothing grows
    and no row map is needed."""
    grow = getattr(model, "grow", None)
    if grow is None:
        same = getattr(model, "num_items", num_items) == num_items and num_users == _users_of(model, num_users)
        if same and not need_rows:
            return {}
        raise CheckpointError(
            f"{type(model).__name__} has no grow() method, so it cannot take new users/items "
            "or freeze old rows; warm starts support NeuMF/GMF/MLP, SASRec and BERT4Rec"
        )
    sizes = {"num_users": num_users, "num_items": num_items}
    params = inspect.signature(grow).parameters
    return grow(**{k: v for k, v in sizes.items() if k in params})


def _users_of(model: nn.Module, default: int) -> int:
    emb = getattr(model, "user_emb", None)
    return emb.num_embeddings if isinstance(emb, nn.Embedding) else default


def freeze_rows(model: nn.Module, rows: RowMap) -> list[torch.utils.hooks.RemovableHandle]:
    """Zero the gradient of the given rows of each named parameter (every backward)."""
    params = dict(model.named_parameters())
    unknown = sorted(set(rows) - set(params))
    if unknown:
        raise ValueError(f"cannot freeze rows of {unknown}: {type(model).__name__} has no such parameters")
    return [params[name].register_hook(partial(_zero_rows, index=index)) for name, index in rows.items()]


def _zero_rows(grad: Tensor, index: Tensor) -> Tensor:
    return grad.index_fill(0, index.to(grad.device), 0.0)


def _check_no_weight_decay(cfg: DictConfig) -> None:
    decay = float((cfg.model.task.get("optimizer") or {}).get("weight_decay", 0) or 0)
    if decay:
        raise ValueError(
            f"init.freeze_old_rows needs an optimiser without weight decay (weight decay moves "
            f"rows whose gradient is zero), got model.task.optimizer.weight_decay={decay}; set it "
            "to 0 or use init.freeze_old_rows=false"
        )


def scale_learning_rate(cfg: DictConfig, scale: float) -> None:
    """Multiply ``cfg.model.task.optimizer.lr`` by ``scale`` (in place)."""
    if scale == 1.0:
        return
    if not scale > 0:
        raise ValueError(f"init.lr_scale must be > 0, got {scale}")
    optimizer = cfg.model.task.get("optimizer")
    if optimizer is None or optimizer.get("lr") is None:
        raise ValueError("init.lr_scale needs model.task.optimizer.lr to be set in the config")
    with open_dict(cfg):
        optimizer.lr = float(optimizer.lr) * scale


# --- time-window protocol --------------------------------------------------------------------


@dataclass(frozen=True)
class TimeWindowProtocol:
    """Windows over a raw table (raw ``user``, ``item``, ``timestamp``):

    - ``base``: ``t < T`` (the model to be updated is trained on it);
    - ``update``: ``T <= t < T+D`` (what arrived since);
    - ``all``: ``t < T+D`` (what a full retrain sees);
    - ``eval``: ``T+D <= t < T+2D``: every user active there with a known history has
      their first interaction with a known item ranked against the whole catalogue,
      everything seen before ``T+D`` masked.
    """

    raw: pd.DataFrame
    start: float
    delta: float

    def __post_init__(self) -> None:
        missing = {"user", "item", "timestamp"} - set(self.raw.columns)
        if missing:
            raise ValueError(f"the raw table lacks column(s) {sorted(missing)}")
        if not self.delta > 0:
            raise ValueError(f"the window length must be positive, got {self.delta}")

    @property
    def update_end(self) -> float:
        return self.start + self.delta

    @property
    def eval_end(self) -> float:
        return self.start + 2 * self.delta

    def rows(self, lo: float, hi: float) -> pd.DataFrame:
        stamps = self.raw["timestamp"].to_numpy()
        return self.raw[(stamps >= lo) & (stamps < hi)]

    def training_rows(self, stage: str) -> pd.DataFrame:
        """``base``, ``update`` or ``all`` rows."""
        bounds = {"base": (-np.inf, self.start), "update": (self.start, self.update_end),
                  "all": (-np.inf, self.update_end)}
        if stage not in bounds:
            raise ValueError(f"unknown stage {stage!r}; use one of {sorted(bounds)}")
        return self.rows(*bounds[stage])

    def targets(self, known_until: float, window_end: float) -> tuple[pd.DataFrame, dict[str, int]]:
        """First interaction in ``[known_until, window_end)`` of each user, among rows whose
        user and item occur before ``known_until``; the report counts what was left out."""
        known = self.rows(-np.inf, known_until)
        window = self.rows(known_until, window_end)
        ok_user = window["user"].isin(known["user"]).to_numpy()
        ok_item = window["item"].isin(known["item"]).to_numpy()
        kept = window[ok_user & ok_item].sort_values(["user", "timestamp"], kind="stable")
        first = kept.drop_duplicates("user", keep="first")
        report = {
            "window_rows": len(window),
            "rows_of_new_users": int((~ok_user).sum()),
            "rows_of_new_items_known_users": int((ok_user & ~ok_item).sum()),
            "users_evaluated": len(first),
        }
        return first.reset_index(drop=True), report

    def _next_targets(self, stage: str) -> pd.DataFrame:
        known_until = self.start if stage == "base" else self.update_end
        return self.targets(known_until, known_until + self.delta)[0]

    def stage_table(self, stage: str) -> pd.DataFrame:
        """Training rows of ``stage`` plus the next window's targets, for a training run
        whose split is ``time`` with :meth:`stage_cutoffs` (validation/test = next window)."""
        return pd.concat([self.training_rows(stage), self._next_targets(stage)], ignore_index=True)

    def stage_cutoffs(self, stage: str) -> list[float]:
        """``time_cutoffs`` of a stage: the next window's targets before their median time
        validate, the rest test (first interactions cluster early, so halving the window's
        duration could leave the test split empty)."""
        begin = self.start if stage == "base" else self.update_end
        stamps = np.sort(self._next_targets(stage)["timestamp"].to_numpy())
        if len(stamps) < 2 or stamps[0] == stamps[-1]:
            raise ValueError(
                f"stage {stage!r}: the next window has {len(stamps)} target(s) at distinct times; "
                "need at least 2 to validate and test; use a later T or a longer window"
            )
        middle = stamps[len(stamps) // 2]
        return [begin, float(middle if middle > stamps[0] else stamps[stamps > stamps[0]][0])]

    def eval_data(self, user_ids: np.ndarray, item_ids: np.ndarray) -> InteractionData:
        """Everything before ``T+D`` (TRAIN, the context) and the eval targets (TEST) in a
        model's id maps; an id outside the maps is an error (the model cannot score it)."""
        history = self.training_rows("all")
        targets, report = self.targets(self.update_end, self.eval_end)
        frame = pd.concat([history.assign(split=TRAIN), targets.assign(split=TEST)], ignore_index=True)
        users = _internal(user_ids, frame["user"].to_numpy(), "user")
        items = _internal(item_ids, frame["item"].to_numpy(), "item")
        interactions = pd.DataFrame({
            "user": users, "item": items,
            "timestamp": frame["timestamp"].to_numpy(), "split": frame["split"].to_numpy(np.int8),
        })
        interactions = interactions.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
        return InteractionData(interactions, np.asarray(user_ids), np.asarray(item_ids),
                               name="time-window-eval", report={"targets": report})

    def evaluate(self, model: Recommender, user_ids: np.ndarray, item_ids: np.ndarray,
                 evaluator: Evaluator) -> dict[str, float]:
        """Metrics of ``model`` (with its id maps) on the eval window."""
        return evaluate(model, self.eval_data(user_ids, item_ids), "test", evaluator)


def _internal(id_map: np.ndarray, raw: np.ndarray, kind: str) -> np.ndarray:
    position = IdIndex(id_map, kind).lookup(raw)
    if (position < 0).any():
        raise IdMapError(
            f"{int((position < 0).sum())} evaluation row(s) have {kind} ids outside the model's "
            f"id map (e.g. {raw[position < 0][0]!r}); the model must have seen all data before T+D"
        )
    return position
