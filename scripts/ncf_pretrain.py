"""NeuMF with and without pre-training on NCF's split (He et al. 2017, section 3.4.1).

Runs four trainings (the first three side by side), each a plain ``python -m train`` call:
NeuMF from scratch, GMF, MLP, then NeuMF initialised from the GMF and MLP checkpoints;
prints one Markdown table (HR@10/NDCG@10 with the 99 given negatives, epochs, time).

    python scripts/ncf_pretrain.py --root DIR_WITH_ml-1m.train.rating --out outputs/ncf

Overrides after the options go to every stage; ``--gmf-args``/``--mlp-args`` only to that
stage. GMF gets ``model.task.embedding_l2=0.0001`` unless ``--gmf-args`` says otherwise
(it scored higher on validation than the experiment's 0.001, which MLP and NeuMF keep).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start(name: str, out: Path, args: list[str]) -> tuple[subprocess.Popen, float, Path, list[str]]:
    run_dir = out / name
    cmd = [sys.executable, "-m", "train", *args, f"hydra.run.dir={run_dir}", "logger=csv",
           "trainer.enable_progress_bar=false"]
    print(f"[{name}] python -m train {' '.join(args)}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "train.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), time.time(), run_dir, args


def finish(job: tuple[subprocess.Popen, float, Path, list[str]]) -> dict:
    proc, started, run_dir, args = job
    if proc.wait() != 0:
        raise SystemExit(f"training failed, see {run_dir / 'train.log'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_minutes"] = (time.time() - started) / 60
    metrics["command"] = "python -m train " + " ".join(args)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder with ml-1m.train.rating/.test.rating/.test.negative")
    parser.add_argument("--out", type=Path, default=Path("outputs/ncf"))
    parser.add_argument("--skip-scratch", action="store_true", help="only the pre-trained variant")
    parser.add_argument(
        "--gmf-args", default="model.task.embedding_l2=0.0001",
        help="overrides for the GMF stage only (default: the L2 that scored best on validation)",
    )
    parser.add_argument("--mlp-args", default="", help="overrides for the MLP stage only")
    opts, extra = parser.parse_known_args()
    data = [f"data.root={Path(opts.root).resolve()}", *extra]
    base = ["experiment=ncf_ml1m", *data]
    # The three independent trainings run side by side (one thread each).
    jobs = {
        "GMF": start("gmf", opts.out, [*base, "model=gmf", *shlex.split(opts.gmf_args)]),
        "MLP": start("mlp", opts.out, [*base, "model=mlp", *shlex.split(opts.mlp_args)]),
    }
    if not opts.skip_scratch:
        jobs["NeuMF"] = start("neumf", opts.out, base)
    results = {name: finish(job) for name, job in jobs.items()}
    results["NeuMF (pre-trained)"] = finish(start("neumf_pretrained", opts.out, [
        "experiment=ncf_ml1m_pretrained", *data,
        f"gmf_ckpt={results['GMF']['best_checkpoint']}", f"mlp_ckpt={results['MLP']['best_checkpoint']}",
    ]))
    lines = ["| model | HR@10 | NDCG@10 | epochs | wall time | command |", "|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['test/hr@10']:.4f} | {m['test/ndcg@10']:.4f} | {m['epochs']} | "
                     f"{m['wall_minutes']:.1f} min | `{m['command']}` |")
    table = "\n".join(lines) + "\n"
    (opts.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
