"""Turn a DeepSpeed ZeRO checkpoint directory into one fp32 state dict file.

    python scripts/consolidate_checkpoint.py <run>/checkpoints/best-epoch003.ckpt [out.pt]

Same as ``python -m train.consolidate``; see train/consolidate.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.consolidate import main  # noqa: E402

if __name__ == "__main__":
    main()
