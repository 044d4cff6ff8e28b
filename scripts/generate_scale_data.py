"""Write a generated interaction set at scale (see data_modules/scale_generator.py).

    python scripts/generate_scale_data.py --preset ml20m --format parquet --out /data/ml20m.parquet
    python scripts/generate_scale_data.py --preset catalogue --interactions 1e8 --items 1e7 \\
        --users 1e6 --format sequence --out /data/catalogue.txt --seed 0

Sizes accept ``1e6``-style numbers; a size left out keeps the preset's. Prints what was
written as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from data_modules.scale_generator import CHUNK_ROWS, FORMATS, PRESETS, preset, write


def count(text: str) -> int:
    """``"1e6"`` or ``"1000000"`` -> 1000000 (a whole, positive number)."""
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole positive number")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--interactions", type=count, help="rows (default: the preset's)")
    p.add_argument("--items", type=count, help="catalogue size (default: the preset's)")
    p.add_argument("--users", type=count, help="users (default: the preset's)")
    p.add_argument("--min-length", type=count, help="shortest history (default: the preset's)")
    p.add_argument("--zipf", type=float, help="item popularity exponent (default: the preset's)")
    p.add_argument("--format", choices=FORMATS, default="parquet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-rows", type=count, default=CHUNK_ROWS, help="rows per written block")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        spec = preset(
            args.preset, num_users=args.users, num_items=args.items, num_interactions=args.interactions,
            min_length=args.min_length, zipf_exponent=args.zipf, seed=args.seed,
        )
    except ValueError as exc:
        raise SystemExit(f"generate_scale_data: {exc}") from None
    start = time.perf_counter()
    summary = write(spec, args.out, args.format, chunk_rows=args.chunk_rows)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
