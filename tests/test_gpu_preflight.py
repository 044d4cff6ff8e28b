"""scripts/gpu_preflight.py: the GPU script stops in seconds, naming what is missing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _preflight():
    spec = importlib.util.spec_from_file_location("gpu_preflight", REPO / "scripts" / "gpu_preflight.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deepspeed_is_needed_only_by_the_zero3_step() -> None:
    preflight = _preflight()
    assert "deepspeed" in preflight.needed_modules(["1", "2"])
    assert "deepspeed" not in preflight.needed_modules(["1", "3", "4", "5"])
    assert len(set(preflight.needed_modules(["2", "2"]))) == len(preflight.needed_modules(["2", "2"]))


def test_a_missing_package_is_named_with_its_install_command(monkeypatch) -> None:
    preflight = _preflight()
    monkeypatch.setattr(preflight, "BY_STEP", {"9": ("hydra", "no_such_module_for_preflight")})
    monkeypatch.setattr(preflight, "DISTRIBUTIONS", {"hydra": "hydra-core"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "hydra" else real(name))
    found = preflight.problems(["9"], cuda_required=False)
    assert found == ["missing packages: hydra-core, no_such_module_for_preflight; install them, "
                     "e.g. pip install hydra-core no_such_module_for_preflight"]


def test_an_uninstalled_checkout_is_told_to_set_pythonpath(monkeypatch) -> None:
    preflight = _preflight()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "train" else real(name))
    (found,) = preflight.problems(["1"], cuda_required=False)
    assert "(train)" in found and "PYTHONPATH=$PWD" in found


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_checks_stop_before_step_one_without_a_gpu(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its python3
    done = subprocess.run(["bash", "scripts/gpu_checks.sh", str(tmp_path / "data.txt"), str(results), "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "torch sees no CUDA device" in done.stdout
    assert sorted(path.name for path in results.iterdir()) == ["preflight.txt"]  # no step ran
    optional = subprocess.run([sys.executable, "scripts/gpu_preflight.py", "--steps", "1,2", "--cuda", "optional"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert optional.returncode == 0, optional.stdout
