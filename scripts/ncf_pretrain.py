"""NeuMF with and without pre-training on NCF's split (He et al. 2017, section 3.4.1).

Runs four trainings in sequence, each a plain ``python -m train`` call:
NeuMF from scratch, GMF, MLP, then NeuMF initialised from the GMF and MLP checkpoints;
prints one Markdown table (HR@10/NDCG@10 with the 99 given negatives, epochs, time).

    python scripts/ncf_pretrain.py --root DIR_WITH_ml-1m.train.rating --out outputs/ncf
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(name: str, out: Path, args: list[str]) -> dict:
    run_dir = out / name
    cmd = [sys.executable, "-m", "train", *args, f"hydra.run.dir={run_dir}", "logger=csv",
           "trainer.enable_progress_bar=false"]
    print(f"[{name}] python -m train {' '.join(args)}", flush=True)
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_minutes"] = (time.time() - started) / 60
    metrics["command"] = "python -m train " + " ".join(args)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder with ml-1m.train.rating/.test.rating/.test.negative")
    parser.add_argument("--out", type=Path, default=Path("outputs/ncf"))
    parser.add_argument("--skip-scratch", action="store_true", help="only the pre-trained variant")
    opts, extra = parser.parse_known_args()
    data = [f"data.root={Path(opts.root).resolve()}", *extra]
    base = ["experiment=ncf_ml1m", *data]
    results = {}
    if not opts.skip_scratch:
        results["NeuMF"] = run("neumf", opts.out, base)
    results["GMF"] = run("gmf", opts.out, [*base, "model=gmf"])
    results["MLP"] = run("mlp", opts.out, [*base, "model=mlp"])
    results["NeuMF (pre-trained)"] = run("neumf_pretrained", opts.out, [
        "experiment=ncf_ml1m_pretrained", *data,
        f"gmf_ckpt={results['GMF']['best_checkpoint']}", f"mlp_ckpt={results['MLP']['best_checkpoint']}",
    ])
    lines = ["| model | HR@10 | NDCG@10 | epochs | wall time | command |", "|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(f"| {name} | {m['test/hr@10']:.4f} | {m['test/ndcg@10']:.4f} | {m['epochs']} | "
                     f"{m['wall_minutes']:.1f} min | `{m['command']}` |")
    table = "\n".join(lines) + "\n"
    (opts.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
