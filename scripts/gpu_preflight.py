"""Seconds before a GPU run spends its minutes: is a CUDA device visible, and can every
module the chosen steps of ``scripts/gpu_checks.sh`` import be found?

Prints the versions it found, then each problem with its fix, and exits 2 on any
problem, so a machine missing a package stops at once instead of failing step after
step. The checkout itself needs no install: run from its root with
``PYTHONPATH=$PWD`` (as gpu_checks.sh does), and only its dependencies must be present.

    python scripts/gpu_preflight.py --steps 1,2,3
    python scripts/gpu_preflight.py --steps 1 --cuda optional     # on a CPU machine
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys

# What every step imports (training through `python -m train`), and what one step adds.
COMMON = (
    "torch", "pytorch_lightning", "torchmetrics", "hydra", "omegaconf", "numpy", "pandas",
    "pyarrow", "tqdm", "rich", "train", "recmodels", "data_modules",
)
BY_STEP = {
    "2": ("deepspeed",),  # SASRec-XL under ZeRO-3
    "5": ("matplotlib",),  # the scaling study's plots
    "6": ("matplotlib",),  # the curriculum benchmark's plots
}
DISTRIBUTIONS = {"hydra": "hydra-core", "pytorch_lightning": "pytorch-lightning"}
CHECKOUT = ("train", "recmodels", "data_modules")


def needed_modules(steps: list[str]) -> list[str]:
    """The modules the given steps import, in a stable order, without repeats."""
    names = list(COMMON)
    for step in steps:
        names += [name for name in BY_STEP.get(step, ()) if name not in names]
    return names


def missing_modules(names: list[str]) -> list[str]:
    """Those of ``names`` that the interpreter cannot find."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def problems(steps: list[str], cuda_required: bool) -> list[str]:
    """Each problem with its fix; empty when the steps can run."""
    found = []
    missing = missing_modules(needed_modules(steps))
    checkout = [name for name in missing if name in CHECKOUT]
    packages = [DISTRIBUTIONS.get(name, name) for name in missing if name not in CHECKOUT]
    if checkout:
        found.append(f"the checkout's packages ({', '.join(checkout)}) are not importable: run from the "
                     "repository root with PYTHONPATH=$PWD, or pip install the checkout")
    if packages:
        found.append(f"missing packages: {', '.join(packages)}; install them, e.g. pip install {' '.join(packages)}")
    if cuda_required and "torch" not in missing:
        import torch

        if not torch.cuda.is_available():
            found.append("torch sees no CUDA device: run on a GPU machine, or pass --cuda optional")
    return found


def versions(names: list[str]) -> str:
    """'name version' of each installed distribution among ``names``."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(DISTRIBUTIONS.get(name, name))}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1,2,3,4,5,6", help="comma-separated steps of gpu_checks.sh")
    parser.add_argument("--cuda", choices=("required", "optional"), default="required")
    args = parser.parse_args(argv)
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    print(f"python {sys.version.split()[0]}; {versions(needed_modules(steps))}")
    found = problems(steps, args.cuda == "required")
    for problem in found:
        print(f"preflight: {problem}")
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main())
