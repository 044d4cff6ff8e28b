"""Wall time of the default training run (`make train`'s `python -m train`) alone and beside a
busy process, with torch's thread default and with `num_threads: auto`.

    python scripts/bench_busy_machine.py                      # 2 epochs, one spinning process
    python scripts/bench_busy_machine.py --epochs 20 --busy 2 --no-pin -- model=sasrec
    python scripts/bench_busy_machine.py --repeats 3 --settings "torch default" auto

Settings compared (each idle, then beside ``--busy`` spinning processes):

- ``torch default``: ``num_threads=null`` with OpenMP's default wait policy (threads spin
  for a while before sleeping), i.e. runs before ``num_threads: auto``. torch is imported
  before the command starts, so the command cannot ask OpenMP for passive waits.
- ``null + passive``: ``num_threads=null`` as the command runs it now (short spin, then sleep).
- ``auto``: the default, ``num_threads=auto`` (short spin, then sleep).

The spinners start a few seconds before each run (pinned to the last usable core unless
``--no-pin``). The "others" column is the cores other processes kept busy just before
each run: on a shared machine "idle" is only as idle as the machine.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train.training.threads import busy_cores  # no torch import

REPO = Path(__file__).resolve().parents[1]

# torch (and its OpenMP runtime) loads before the command sets OMP_WAIT_POLICY.
OPENMP_DEFAULT_WAIT = "import sys, torch; from train.cli.train import main; sys.argv[0] = 'train'; main()"
SETTINGS = {
    "torch default": (["-c", OPENMP_DEFAULT_WAIT], ["num_threads=null"]),
    "null + passive": (["-m", "train"], ["num_threads=null"]),
    "auto": (["-m", "train"], ["num_threads=auto"]),
}
TARGET = 1.5  # auto beside a busy core: at most this many times its idle wall time
SPIN = "while True: pass"


def start_spinners(count: int, pin: bool) -> list[subprocess.Popen]:
    """``count`` processes each spinning one core (the last usable ones when ``pin``)."""
    cores = sorted(os.sched_getaffinity(0))
    spinners = []
    for i in range(count):
        core = cores[-1 - i % len(cores)]
        pin_to = (lambda c=core: os.sched_setaffinity(0, {c})) if pin else None
        spinners.append(subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=pin_to))
    time.sleep(3)  # running before the run samples the machine
    return spinners


def stop(spinners: list[subprocess.Popen]) -> None:
    for proc in spinners:
        proc.kill()
        proc.wait()


def run_once(setting: str, epochs: int, logger: str, extra: list[str], run_dir: Path) -> tuple[float, str]:
    """Wall seconds of one training command, and the threads it reported."""
    entry, overrides = SETTINGS[setting]
    cmd = [sys.executable, *entry, f"logger={logger}", f"trainer.max_epochs={epochs}",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *overrides, *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{setting} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    chosen = re.search(r"torch threads: (\d+)", done.stdout + done.stderr)
    return seconds, chosen.group(1) if chosen else "default"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="trainer.max_epochs (make train: 20)")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes beside the busy runs")
    parser.add_argument("--no-pin", action="store_true", help="let the spinners float over all cores")
    parser.add_argument("--logger", default="none", help="logger=... (make train: wandb)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; the median is reported")
    args, extra = parser.parse_known_args()
    extra = [e for e in extra if e != "--"]
    out = Path(tempfile.mkdtemp(prefix="bench_busy_"))
    print(f"{len(os.sched_getaffinity(0))} usable cores; {args.epochs} epochs; busy = {args.busy} spinning "
          f"process(es), {'floating' if args.no_pin else 'pinned'}; overrides: {extra or 'none'}")
    print(f"{'setting':<16}{'machine':<7}{'others':>8}{'threads':>9}{'wall_s':>9}")
    runs: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for setting in args.settings:
            for machine in ("idle", "busy"):
                others = busy_cores(1.0)
                spinners = start_spinners(args.busy, not args.no_pin) if machine == "busy" else []
                try:
                    run_dir = out / f"{setting}_{machine}_{repeat}".replace(" ", "_")
                    seconds, threads = run_once(setting, args.epochs, args.logger, extra, run_dir)
                finally:
                    stop(spinners)
                runs.setdefault((setting, machine), []).append(seconds)
                print(f"{setting:<16}{machine:<7}{others:>8.1f}{threads:>9}{seconds:>9.1f}", flush=True)
    results = {cell: statistics.median(seconds) for cell, seconds in runs.items()}
    print(f"\n{'setting':<16}{'idle_s':>9}{'busy_s':>9}{'busy/idle':>11}")
    for setting in args.settings:
        idle, busy = results[setting, "idle"], results[setting, "busy"]
        print(f"{setting:<16}{idle:>9.1f}{busy:>9.1f}{busy / idle:>10.2f}x")
    if "auto" in args.settings:
        ratio = results["auto", "busy"] / results["auto", "idle"]
        print(f"\nauto beside a busy core: {ratio:.2f}x its idle time (target <= {TARGET}x): "
              f"{'met' if ratio <= TARGET else 'missed'}")


if __name__ == "__main__":
    main()
