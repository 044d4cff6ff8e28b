"""``recflow-consolidate CKPT_DIR [OUT]``: a DeepSpeed checkpoint folder -> one fp32 file.

See :mod:`train.runs.consolidate`; the output loads on one CPU process for evaluation,
inference, export or ``init_from``.
"""
from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="recflow-consolidate")
    parser.add_argument("checkpoint_dir", help="DeepSpeed checkpoint directory, e.g. <run>/checkpoints/best-epoch003.ckpt")
    parser.add_argument("output", nargs="?", help="output file (default: <checkpoint_dir>.fp32.pt)")
    args = parser.parse_args(argv)

    import torch

    from train.runs.consolidate import ConsolidationError, consolidate

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    try:
        output = consolidate(args.checkpoint_dir, args.output)
    except ConsolidationError as exc:
        raise SystemExit(f"error: {exc}") from None
    state = torch.load(output, map_location="cpu", weights_only=True)["state_dict"]
    numel = sum(t.numel() for t in state.values())
    print(f"Consolidated {len(state)} tensors ({numel:,} fp32 values) into {output}")


if __name__ == "__main__":
    main()
