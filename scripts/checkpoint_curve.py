"""Validation and test metrics of every checkpoint a finished run kept.

Some papers report the test score of the epoch that is best *on test* (NCF's published
code does). This prints each kept checkpoint's validation and test metrics, so a run can
be set against such figures next to the honest one: the checkpoint chosen on validation.
Choose on the validation column only; the test column is for comparison.

    python -m train experiment=ncf_ml1m data.root=DIR callbacks.model_checkpoint.save_top_k=-1
    python scripts/checkpoint_curve.py RUN_DIR --select val/ndcg@10 --report hr@10 ndcg@10

``--average DECAY`` scores, at each epoch, the exponential moving average of the kept
checkpoints up to it instead (what ``callbacks=averaged`` with that decay would have
validated and tested, had the run been stopped at the same epoch).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import hydra
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from data_modules.interactions import VAL
from train.evaluation import evaluate
from train.runs.checkpoints import load_weights
from train.serving import load_recommender

EPOCH = re.compile(r"epoch(\d+)")


def epoch_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, file) for each checkpoint whose name carries its epoch, oldest first."""
    found = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("*.ckpt") if (m := EPOCH.search(p.stem))]
    if not found:
        raise SystemExit(
            f"no per-epoch checkpoints in {run_dir / 'checkpoints'}; train with "
            "callbacks.model_checkpoint.save_top_k=-1 to keep one per validation"
        )
    return sorted(found)


def curve(run_dir: Path, metrics: list[str], average: float | None = None) -> list[dict[str, float]]:
    """One row per checkpoint: epoch plus ``val/<m>`` and ``test/<m>`` for each metric.

    With ``average``, each row scores the EMA (that decay) of the checkpoints so far.
    """
    model, run = load_recommender(run_dir)
    if not (run.data.column("split") == VAL).any():
        raise SystemExit(
            f"{run_dir} trained on its validation rows (protocol=refit): no validation metric can "
            "choose among its checkpoints; the checkpoint it tested and its metrics are in metrics.json"
        )
    evaluator = hydra.utils.instantiate(run.cfg.eval)
    # The same torch EMA that callbacks=averaged applies while training.
    averaged = None if average is None else AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(average))
    rows = []
    for epoch, ckpt in epoch_checkpoints(run.run_dir):
        load_weights(model, ckpt)
        if averaged is not None:
            averaged.update_parameters(model)
        scored = model if averaged is None else averaged.module
        row: dict[str, float] = {"epoch": epoch}
        for split in ("val", "test"):
            scores = evaluate(scored, run.data, split, evaluator)
            row.update({f"{split}/{m}": scores[m] for m in metrics})
        rows.append(row)
    return rows


def table(rows: list[dict[str, float]], select: str) -> str:
    """Markdown table, then the validation choice and the test-chosen (optimistic) row."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:.4f}" if k != "epoch" else str(r[k]) for k in keys) + " |" for r in rows]
    chosen = max(rows, key=lambda r: r[select])
    test_key = "test/" + select.split("/", 1)[1]
    peeked = max(rows, key=lambda r: r[test_key])
    report = [k for k in keys if k.startswith("test/")]

    def scores(row: dict[str, float]) -> str:
        return ", ".join(f"{k} {row[k]:.4f}" for k in report)

    lines += ["", f"chosen on {select}: epoch {chosen['epoch']}: {scores(chosen)}",
              f"best epoch on {test_key} (optimistic, for comparison only): epoch {peeked['epoch']}: {scores(peeked)}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished `python -m train` run directory")
    parser.add_argument("--select", default="val/ndcg@10", help="validation metric that picks the checkpoint")
    parser.add_argument("--report", nargs="+", default=["hr@10", "ndcg@10"], help="metrics per split")
    parser.add_argument("--average", type=float, metavar="DECAY",
                        help="score the moving average of the checkpoints so far (e.g. 0.7)")
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    if not opts.select.startswith("val/"):
        raise SystemExit(f"--select must be a validation metric (val/...), got {opts.select}")
    if opts.average is not None and not 0.0 <= opts.average < 1.0:
        raise SystemExit(f"--average must be in [0, 1), got {opts.average}")
    torch.set_num_threads(opts.threads)
    metrics = list(dict.fromkeys([*opts.report, opts.select.split("/", 1)[1]]))
    print(table(curve(opts.run_dir, metrics, opts.average), opts.select))


if __name__ == "__main__":
    main()
