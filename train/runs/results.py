"""metrics.json and the results table printed at the end of a run."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def flat_metrics(*dicts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = float(value) if hasattr(value, "__float__") else value
    out.update(extra)
    return out


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def results_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one row per split, one column per metric."""
    splits: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if "/" in key and isinstance(value, float) and key.split("/")[0] in {"val", "test"}:
            split, name = key.split("/", 1)
            splits.setdefault(split, {})[name] = value
    names = sorted({n for row in splits.values() for n in row if _shown(n)}, key=_metric_order)
    lines = ["| split | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for split in ("val", "test"):
        if split in splits:
            cells = [_fmt(splits[split].get(n)) for n in names]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shown(name: str) -> bool:
    """Keep the printed table readable; metrics.json holds every metric."""
    return name.split("@")[0] in {"hr", "ndcg"} or name in {"mrr", "coverage@10"}


def _metric_order(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    return (base, int(k) if k.isdigit() else 0)


def _fmt(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"
