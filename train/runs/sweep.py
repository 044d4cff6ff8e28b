"""After ``recflow-train -m``: one table of every job of the sweep.

:class:`SweepSummary` is a Hydra callback (registered in conf/hydra/default.yaml) that,
once every job has ended, reads each job folder's ``.hydra/overrides.yaml``,
``.hydra/config.yaml`` (the monitored metric) and ``metrics.json``, prints the table
and writes it as ``summary.csv`` (every test metric) and ``summary.md`` into the sweep
folder. A job without ``metrics.json`` (it failed) keeps its row, marked as failed.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
HYDRA_DIR = ".hydra"


@dataclass
class JobResult:
    """One job of a sweep, as its folder tells it."""

    number: int
    directory: Path
    overrides: list[str]
    monitor: str
    metrics: dict[str, Any] | None  # None: the job wrote no metrics.json

    @property
    def status(self) -> str:
        return "ok" if self.metrics is not None else "failed"

    @property
    def monitor_value(self) -> float | None:
        value = (self.metrics or {}).get(self.monitor)
        return float(value) if isinstance(value, (int, float)) else None


def find_jobs(sweep_dir: str | Path) -> list[JobResult]:
    """Every job folder under ``sweep_dir`` (any subdir naming), in job-number order."""
    found = [path for path in Path(sweep_dir).rglob("overrides.yaml") if path.parent.name == HYDRA_DIR]
    jobs = [_read_job(path.parent.parent) for path in found]
    return sorted(jobs, key=lambda job: (job.number, str(job.directory)))


def _read_job(directory: Path) -> JobResult:
    hydra_dir = directory / HYDRA_DIR
    overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
    return JobResult(
        number=_job_number(hydra_dir),
        directory=directory,
        overrides=overrides,
        monitor=_monitor(hydra_dir),
        metrics=_read_metrics(directory / "metrics.json"),
    )


def _read_metrics(path: Path) -> dict[str, Any] | None:
    """A job's metrics.json; ``None`` when the job ended before writing it."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _job_number(hydra_dir: Path) -> int:
    try:
        return int(OmegaConf.load(hydra_dir / "hydra.yaml").hydra.job.num)
    except Exception:  # no hydra.yaml, or no number: order by folder name
        return -1


def _monitor(hydra_dir: Path) -> str:
    """The metric the job optimised: ``optimized_metric``, else ``monitor``."""
    try:
        cfg = OmegaConf.load(hydra_dir / "config.yaml")
        return str(cfg.get("optimized_metric") or cfg.get("monitor") or "val/ndcg@10")
    except Exception:
        return "val/ndcg@10"


def swept_keys(jobs: list[JobResult]) -> list[str]:
    """Override keys whose value is not the same in every job, in first-seen order."""
    per_job = [dict(_split(o) for o in job.overrides) for job in jobs]
    keys = list(dict.fromkeys(k for overrides in per_job for k in overrides))
    return [k for k in keys if len({overrides.get(k) for overrides in per_job}) > 1]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def _test_metrics(jobs: list[JobResult]) -> list[str]:
    metrics = [job.metrics or {} for job in jobs]
    names = {k for m in metrics for k, v in m.items() if k.startswith("test/") and isinstance(v, float)}
    return sorted(names, key=_metric_order)


def _metric_order(name: str) -> tuple[str, int]:
    base, _, k = name.split("/", 1)[-1].partition("@")
    return (base, int(k) if k.isdigit() else 0)


def _headline(name: str) -> bool:
    """Metrics shown in the printed table; summary.csv holds every one."""
    metric = name.split("/", 1)[-1]
    return metric.split("@")[0] in {"hr", "ndcg"} or metric in {"mrr", "coverage@10"}


def summary_rows(jobs: list[JobResult], headline: bool = False) -> list[dict[str, Any]]:
    """One dict per job: number, swept overrides, status, monitored value, test metrics."""
    keys = swept_keys(jobs)
    tests = [m for m in _test_metrics(jobs) if _headline(m) or not headline]
    rows = []
    for job in jobs:
        values = dict(_split(o) for o in job.overrides)
        row: dict[str, Any] = {"job": job.number if job.number >= 0 else job.directory.name}
        row.update({k: values.get(k, "") for k in keys})
        if not headline:
            row["overrides"] = " ".join(job.overrides)
        if headline and len({j.monitor for j in jobs}) == 1:  # one monitor: name the column by it
            row.update({"status": job.status, job.monitor: job.monitor_value})
        else:
            row.update(status=job.status, monitor=job.monitor, monitor_value=job.monitor_value)
        row.update({m: (job.metrics or {}).get(m) for m in tests})
        if not headline:
            row["dir"] = str(job.directory)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(row.get(k), digits=None) for k in columns} for row in rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of ``rows``; floats with 4 decimals, missing values empty."""
    if not rows:
        return "(no jobs)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any, digits: int | None = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and digits is not None:
        return f"{value:.{digits}f}"
    return str(value)


def best_job(jobs: list[JobResult]) -> JobResult | None:
    """The job with the highest monitored value (ranking metrics: higher is better)."""
    scored = [job for job in jobs if job.monitor_value is not None]
    return max(scored, key=lambda job: job.monitor_value) if scored else None


def summarize_sweep(sweep_dir: str | Path) -> str:
    """Write summary.csv and summary.md into ``sweep_dir``; return the printed text."""
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    table = markdown_table(summary_rows(jobs, headline=True))
    best = best_job(jobs)
    lines = [f"Sweep summary: {len(jobs)} jobs, {sum(j.metrics is None for j in jobs)} failed", "", table]
    if best is not None:
        keys = set(swept_keys(jobs))
        swept = " ".join(o for o in best.overrides if _split(o)[0] in keys)
        which = f"job {best.number}" + (f" ({swept})" if swept else "")
        lines += ["", f"Best by {best.monitor}: {which} {best.monitor_value:.4f}"]
    text = "\n".join(lines)
    if jobs:
        write_csv(sweep_dir / SUMMARY_CSV, summary_rows(jobs))
        (sweep_dir / SUMMARY_MD).write_text(text + "\n")
    return text


class SweepSummary(Callback):
    """Hydra callback: after a multirun, print and save the table of every job."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            text = summarize_sweep(sweep_dir)
        except Exception as exc:  # a summary must never turn a finished sweep into a failure
            log.warning("could not summarise the sweep in %s: %s", sweep_dir, exc)
            return
        print(f"\n{text}\n\nWritten to {sweep_dir / SUMMARY_CSV} and {SUMMARY_MD}", flush=True)
