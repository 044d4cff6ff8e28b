"""Reproduce the published SASRec/BERT4Rec/gSASRec tables on a sequence file.

Runs each setting's experiment (conf/experiment/) as its own ``python -m train``
process, optionally several at once (e.g. on one GPU), then writes a Markdown table of
ours vs published with epochs, wall time and hardware.

    python scripts/reproduce_tables.py --data PATH/ml-1m.txt --out results/ml1m
    python scripts/reproduce_tables.py --data my_seq.txt --settings sasrec_ce --max-minutes 20

Any other sequence file works (published columns then read "n/a"). Extra Hydra
overrides after ``--`` go to every run, e.g. ``-- trainer.precision=bf16-mixed``.
Model selection uses validation NDCG@10 only; test metrics are reported, never tuned on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Setting:
    name: str
    experiment: str
    protocol: str
    published: dict[str, float]
    required: dict[str, float]
    source: str
    # Evaluate the same trained model under another protocol (eval config name).
    reuse_run_of: str | None = None
    eval_config: str | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)


SETTINGS = [
    Setting("sasrec_bce", "sasrec_ml1m_paper", "100 uniform negatives",
            {"hr@10": 0.8245, "ndcg@10": 0.5905}, {"hr@10": 0.80, "ndcg@10": 0.57}, "Kang & McAuley 2018"),
    Setting("sasrec_ce", "sasrec_ce_ml1m", "full ranking",
            {"hr@10": 0.3152, "ndcg@10": 0.1821}, {"ndcg@10": 0.175}, "Klenitskiy & Vasilev 2023"),
    Setting("bert4rec", "bert4rec_ml1m", "full ranking",
            {"ndcg@10": 0.1537}, {"ndcg@10": 0.15}, "Klenitskiy & Vasilev 2023 (Petrov: 0.1516)"),
    Setting("bert4rec_pop", "bert4rec_ml1m", "100 popularity negatives",
            {"hr@10": 0.6970, "ndcg@10": 0.4818}, {"hr@10": 0.67}, "Sun et al. 2019",
            reuse_run_of="bert4rec", eval_config="sampled_popularity"),
    Setting("gsasrec", "gsasrec_ml1m", "full ranking",
            {"ndcg@10": 0.1726}, {"ndcg@10": 0.165}, "Petrov & Macdonald 2023"),
]


def hardware() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def train_command(setting: Setting, data: str, run_dir: Path, max_minutes: float, extra: list[str]) -> list[str]:
    hours, minutes = divmod(int(max_minutes * 60), 3600)
    return [
        sys.executable, "-m", "train", f"experiment={setting.experiment}", f"data.path={data}",
        "logger=csv", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
        f"trainer.max_time=00:{hours:02d}:{minutes // 60:02d}:{minutes % 60:02d}",
        *setting.overrides, *extra,
    ]


def launch(setting: Setting, args: argparse.Namespace, extra: list[str]) -> tuple[subprocess.Popen, float]:
    run_dir = args.out / setting.name
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = train_command(setting, args.data, run_dir, args.max_minutes, extra)
    (run_dir / "command.txt").write_text(" ".join(cmd) + "\n")
    log = open(run_dir / "train.log", "w")
    print(f"[{setting.name}] {' '.join(cmd[1:])}", flush=True)
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), time.time()


def evaluate_other_protocol(run_dir: Path, eval_config: str) -> dict[str, float]:
    """The trained run's best checkpoint under another evaluation protocol."""
    import hydra
    import torch
    from hydra import compose, initialize_config_dir

    from train.cli.configs import CONFIG_DIR
    from train.evaluation import evaluate
    from train.serving.loading import load_recommender

    with initialize_config_dir(config_dir=str(Path(CONFIG_DIR) / "eval"), version_base="1.3"):
        evaluator = hydra.utils.instantiate(compose(config_name=eval_config))
    model, context = load_recommender(run_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = evaluate(model, context.data, "test", evaluator, device=device)
    return {f"test/{k}": v for k, v in result.items()}


def row(setting: Setting, metrics: dict | None, seconds: float | None, hw: str) -> str:
    def ours(key: str) -> str:
        value = (metrics or {}).get(f"test/{key}")
        return "failed" if value is None else f"{value:.4f}"

    def fmt(d: dict[str, float]) -> str:
        return ", ".join(f"{k.upper()} {v}" for k, v in d.items()) or "n/a"

    met = all((metrics or {}).get(f"test/{k}", -1) >= v for k, v in setting.required.items())
    epochs = (metrics or {}).get("epochs", "")
    wall = "" if seconds is None else f"{seconds / 60:.1f} min"
    return (f"| {setting.name} | {setting.protocol} | {ours('hr@10')} | {ours('ndcg@10')} | "
            f"{fmt(setting.published)} ({setting.source}) | {fmt(setting.required)} | "
            f"{'yes' if met else 'no'} | {epochs} | {wall} | {hw} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="sequence file (user item per line, or user item1 item2 ...)")
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduce"))
    parser.add_argument("--settings", default=",".join(s.name for s in SETTINGS))
    parser.add_argument("--max-minutes", type=float, default=30.0, help="training time limit per run")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (e.g. 4 on one GPU)")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    args.data = str(Path(args.data).resolve())
    chosen = [s for s in SETTINGS if s.name in args.settings.split(",")]
    hw = hardware()

    trained = [s for s in chosen if s.reuse_run_of is None]
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    seconds: dict[str, float] = {}
    queue = list(trained)
    while queue or running:
        while queue and len(running) < args.parallel:
            s = queue.pop(0)
            running[s.name] = launch(s, args, extra)
        time.sleep(2)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                seconds[name] = time.time() - start
                print(f"[{name}] exit {proc.returncode} after {seconds[name] / 60:.1f} min", flush=True)
                del running[name]

    lines = [
        f"Data: `{Path(args.data).name}`; hardware: {hw}; time limit {args.max_minutes} min per run.",
        "",
        "| setting | protocol | HR@10 | NDCG@10 | published | required | met | epochs | wall time | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in chosen:
        source = s.reuse_run_of or s.name
        path = args.out / source / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else None
        if metrics is not None and s.eval_config is not None:
            try:
                metrics = {**metrics, **evaluate_other_protocol(args.out / source, s.eval_config)}
            except Exception as exc:  # report, keep the other rows
                print(f"[{s.name}] evaluation failed: {exc}", flush=True)
                metrics = None
        lines.append(row(s, metrics, seconds.get(source), hw))
    table = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
