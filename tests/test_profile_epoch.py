"""scripts/profile_epoch.py on a tiny file: phases add up and the FLOP count includes
every product of the streamed full CE (its in-place table-gradient product included)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_profile_reports_phases_and_counts_the_full_ce_products(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "seq.txt"
    # A catalogue large against the tiny encoder: the CE's products dominate the count, so
    # leaving one of its three out would show.
    data.write_text("\n".join(f"{u} {int(i)}" for u in range(1, 61) for i in rng.integers(1, 3000, size=40)) + "\n")
    out = tmp_path / "profile.md"
    hidden = 8
    cmd = [sys.executable, str(REPO / "scripts" / "profile_epoch.py"), "--data", str(data), "--threads", "1",
           "--ops", "5", "--op-batches", "1", "--epochs", "3", "--out", str(out), "--", f"model.net.hidden={hidden}",
           "model.net.max_len=8", "model.datamodule.batch_size=16"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    items = int(re.search(r"users, (\d+) items", text).group(1))
    positions = int(re.search(r"([\d,]+) target positions", text).group(1).replace(",", ""))
    flops = float(re.search(r"TFLOP = ([\d.e+]+) FLOP", text).group(1))
    wall = float(re.search(r"epoch wall time: \*\*([\d.]+) s", text).group(1))
    walls = [float(w) for w in re.search(r"median of 3 epochs: ([\d., ]+) s", text).group(1).split(", ")]
    assert walls == sorted(walls) and wall == walls[1]  # the reported epoch is the median one
    phases = [float(x) for x in re.findall(r"^\| (?:batch|encoder|loss|backward|optimizer|\(loop\)) \| ([\d.]+) \|", text, re.M)]
    assert len(phases) == 6 and sum(phases) == pytest.approx(wall, abs=0.02 * 6)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # the report names the CPU its figures belong to
        name = next(line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name"))
        assert f"- processor: {name} (" in text
    ce_products = 3 * 2 * positions * hidden * items  # scores, grad_h, grad_W
    assert ce_products > 0.8 * flops  # the premise: the CE is most of the work here
    assert flops >= ce_products


def _profile_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("profile_epoch", REPO / "scripts" / "profile_epoch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("causal", [True, False])
def test_cpu_attention_is_counted_by_the_pairs_it_needs(causal: bool) -> None:
    """torch's table has no CPU flash attention (it would count 0); the count is the six
    products attention needs (2 forward, 4 backward) over the allowed query-key pairs."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    batch, heads, length, dim = 3, 2, 7, 5
    q, k, v = (torch.randn(batch, heads, length, dim, requires_grad=True) for _ in range(3))
    pairs = sum(range(1, length + 1)) if causal else length * length  # by hand: 28 or 49
    expected = 6 * 2 * batch * heads * pairs * dim

    def count(mapping) -> int:
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward()
        return counter.get_total_flops()

    assert count(_profile_module().flop_mapping()) == expected
    assert count({}) == 0  # the gap the mapping fills


def test_processor_names_the_first_cpu_from_cpuinfo(tmp_path: Path) -> None:
    profile_epoch = _profile_module()
    cpuinfo = tmp_path / "cpuinfo"
    block = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f\n"
    cpuinfo.write_text(block.format(n=0) + "\n" + block.format(n=1).replace("AMD EPYC", "other"))
    assert profile_epoch.processor(cpuinfo) == "AMD EPYC (AuthenticAMD, family 26, model 2)"
    assert profile_epoch.processor(tmp_path / "missing") != ""  # falls back to platform's name


def test_median_epoch_is_the_middle_wall_time() -> None:
    profile_epoch = _profile_module()
    epochs = [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 5.0)]
    assert profile_epoch.median_epoch(epochs) == ("c", 2.0)  # lower middle of an even count
    assert profile_epoch.median_epoch(epochs[:3]) == ("c", 2.0)
    assert profile_epoch.median_epoch(epochs[:1]) == ("a", 3.0)
