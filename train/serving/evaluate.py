"""Score a trained run again, without Lightning: the work of ``recflow-evaluate``.

The model is rebuilt from the run's ``artifacts/`` (:func:`load_recommender`) and ranked
by the same :class:`~train.evaluation.Evaluator` as in training, so the run's best
checkpoint under its own eval config reproduces the test metrics of ``metrics.json``.
Another checkpoint (``ckpt=last``) or protocol (``eval=sampled``) is written beside it
in ``RUN/evaluations/``; ``metrics.json`` always stays what training measured.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from data_modules.paths import expand_path
from train.evaluation import Evaluator, evaluate
from train.runs.artifacts import find_run_dir
from train.runs.checkpoints import CheckpointError
from train.runs.results import flat_metrics, results_table, write_metrics
from train.serving.loading import load_recommender

SPLITS: dict[str, tuple[str, ...]] = {"val": ("val",), "test": ("test",), "both": ("val", "test")}
EVALUATIONS_DIR = "evaluations"
TRAINING_METRICS = "metrics.json"


class EvaluationError(ValueError):
    """An evaluate option cannot work; the message names the option and the fix."""


def resolve_checkpoint(run_dir: Path, ckpt: str | None) -> tuple[Path | None, str]:
    """(weights to load, ``None`` for the run's own best; label for the output file)."""
    if ckpt in (None, "", "best"):
        return None, "best"
    if ckpt == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(
                f"ckpt=last: {last} does not exist (the run kept no last checkpoint: "
                "callbacks.model_checkpoint.save_last=true keeps one); use ckpt=best or ckpt=PATH"
            )
        return last, "last"
    path = expand_path(str(ckpt))  # ~ and $VAR, as for run=
    if not path.exists():
        raise CheckpointError(
            f"ckpt={ckpt}: no such checkpoint; use best, last or the path of a checkpoint "
            f"file, e.g. one of {run_dir / 'checkpoints'}/*.ckpt"
        )
    return path, re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem)


def splits_of(split: str) -> tuple[str, ...]:
    """The splits ``split=`` names; anything else is an error naming the choices."""
    if str(split) not in SPLITS:
        raise EvaluationError(f"split={split!r}: choose one of {list(SPLITS)}")
    return SPLITS[str(split)]


def output_path(run_dir: Path, out: str | None, ckpt_label: str, protocol: str) -> Path:
    """``RUN/evaluations/<ckpt>_<protocol>.json`` unless ``out`` is given; never metrics.json."""
    path = expand_path(out) if out else run_dir / EVALUATIONS_DIR / f"{ckpt_label}_{protocol}.json"
    if path.resolve() == (run_dir / TRAINING_METRICS).resolve():
        raise EvaluationError(f"out={out}: {TRAINING_METRICS} holds what training measured; choose another file")
    return path


def evaluate_run(
    run: str | Path,
    ckpt: str | None = "best",
    eval_cfg: DictConfig | None = None,
    split: str = "test",
    device: str = "cpu",
) -> dict[str, Any]:
    """Flat metrics (``test/ndcg@10``, ...) of ``run``'s ``ckpt`` under ``eval_cfg``
    (``None``: the run's own eval config), plus what was evaluated."""
    run_dir = find_run_dir(run)
    weights, label = resolve_checkpoint(run_dir, ckpt)
    splits = splits_of(split)
    model, ctx = load_recommender(run, weights, device)
    node = eval_cfg if eval_cfg is not None else ctx.cfg.eval
    evaluator: Evaluator = hydra.utils.instantiate(node)
    results = [_as_logged(s, evaluate(model, ctx.data, s, evaluator, device)) for s in splits]
    return flat_metrics(
        *results,
        protocol=evaluator.protocol_name,
        model=ctx.model_name,
        data=ctx.data.name,
        checkpoint=str(ctx.weights),
        checkpoint_label=label,
        split=str(split),
        eval=OmegaConf.to_container(node, resolve=True),
        evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def _as_logged(split: str, values: dict[str, float]) -> dict[str, float]:
    """``split/name`` keys and float32 values, as training logs them, so the numbers
    compare exactly with metrics.json."""
    return {f"{split}/{name}": float(np.float32(value)) for name, value in values.items()}


def run_evaluate(cfg: DictConfig) -> Path:
    """``recflow-evaluate``: evaluate, write the metrics file, print the results table."""
    eval_cfg = cfg.get("eval")  # a conf/eval option chosen on the command line, else None
    metrics = evaluate_run(cfg.run, cfg.get("ckpt"), eval_cfg, cfg.get("split", "test"), cfg.get("device", "cpu"))
    out = output_path(find_run_dir(cfg.run), cfg.get("out"), metrics["checkpoint_label"], metrics["protocol"])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_metrics(out, metrics)
    print(f"\nProtocol: {metrics['protocol']}  model: {metrics['model']}  data: {metrics['data']}")
    print(f"Checkpoint: {metrics['checkpoint']}")
    print(results_table(metrics))
    print(f"\nWritten to {out}")
    return out
