"""How many CPU threads torch gets: ``num_threads: auto`` looks at the cores that are
free now and at the model's size.

Why not torch's default (one thread per core): it assumes the machine is idle. Beside
another busy process, a thread on a taken core holds up every op the other threads wait
on, and OpenMP's default waits spin, taking the cores they wait for (measurements:
README, "A busy machine", and ``scripts/bench_busy_machine.py``).
Small recommenders gain little from more than one or two threads anyway, since their
ops are too small to split.

torch is imported inside the functions: :func:`prefer_passive_wait` must run before
torch loads its OpenMP runtime.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

AUTO = "auto"
# (most parameters, most threads): ops of smaller models are too small for torch to
# split well, so more threads only add synchronisation. Larger models: no cap.
SIZE_CAPS: tuple[tuple[int, int], ...] = ((1_000_000, 2), (10_000_000, 4))
SAMPLE_SECONDS = 0.3
PROC_STAT = Path("/proc/stat")
# As exported when this module was first imported: later runs in the same process (a
# sweep) see the value set below, which is a choice, not the user's.
USER_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


# GNU OpenMP (torch's runtime on Linux) spins this many rounds (about 1 ms) before a
# waiting thread sleeps. Sleeping at once costs a wake-up per op, which small ops feel
# (SASRec's full CE: ~15% slower per epoch); spinning for long takes a busy core.
SHORT_SPIN = "100000"


def prefer_passive_wait() -> None:
    """Let idle OpenMP threads sleep soon rather than spin, unless the user set a policy.

    Spinning threads take a core from whatever else runs, including this run's own
    other threads; sleeping at once makes every small op wait for a wake-up. GNU
    OpenMP gets a short spin (``GOMP_SPINCOUNT``, which overrides the policy there);
    other runtimes read ``OMP_WAIT_POLICY=PASSIVE``. The runtime reads the variables
    once, when torch loads it, so this must run before ``import torch``.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return  # the user's choice
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = SHORT_SPIN


def check_setting(value: object) -> int | str | None:
    """``"auto"``, ``None`` (torch's default) or a positive int, else an error naming the key."""
    if value is None or value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"num_threads must be 'auto', null (torch's default) or a positive integer, got {value!r}"
        )
    return value


# -- the choice -------------------------------------------------------------------------
def size_cap(num_parameters: int) -> int | None:
    """Most threads a model of this size can use well (None: no cap)."""
    for most_parameters, most_threads in SIZE_CAPS:
        if num_parameters <= most_parameters:
            return most_threads
    return None


def choose_threads(cores: float, busy: float, num_parameters: int, processes: int = 1) -> int:
    """Threads per process: the free cores shared among this machine's ``processes``,
    at most what the model's size can use, and at least one.

    A core counts as free when at least half of it is idle: a thread on a core that
    another process mostly holds stalls every thread that waits for it.
    """
    free_per_process = max(cores - busy, 0.0) / max(processes, 1)
    threads = max(1, int(free_per_process + 0.5))
    cap = size_cap(num_parameters)
    return threads if cap is None else min(threads, cap)


# -- what the machine has ---------------------------------------------------------------
def usable_cores() -> float:
    """Cores this process may run on: its CPU affinity, lowered by a cgroup CPU quota."""
    try:
        cores: float = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(int(quota) / int(period), 1.0))
    except (OSError, ValueError):
        pass
    return cores


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) jiffies summed over ``cpus`` from /proc/stat."""
    busy = total = 0
    for line in PROC_STAT.read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores' worth of work other processes do right now (this one sleeps meanwhile).

    A short /proc/stat sample, since the load average lags a process that started in
    the last minute; the 1-minute load average where /proc is missing.
    """
    try:
        cpus = os.sched_getaffinity(0)
        busy0, total0 = _cpu_times(cpus)
        time.sleep(seconds)
        busy1, total1 = _cpu_times(cpus)
    except (AttributeError, OSError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if total1 <= total0:
        return 0.0
    return len(cpus) * (busy1 - busy0) / (total1 - total0)


def exported_threads(value: str | None) -> int | None:
    """A positive ``OMP_NUM_THREADS`` value, else None."""
    return int(value) if value and value.isdigit() and int(value) > 0 else None


# -- applying it --------------------------------------------------------------------------
def configure_threads(setting: object, num_parameters: int, processes: int = 1) -> int | None:
    """Apply ``num_threads`` and log the choice; returns the threads set (None: torch's default).

    ``auto`` keeps an ``OMP_NUM_THREADS`` the user exported. The choice is exported as
    ``OMP_NUM_THREADS`` too, so Lightning's process launcher keeps it rather than giving
    each process all cores divided by the process count.
    """
    import torch

    setting = check_setting(setting)
    if setting is None:
        return None
    if setting != AUTO:
        threads, why = int(setting), "num_threads"
    elif (exported := exported_threads(USER_OMP_NUM_THREADS)) is not None:
        threads, why = exported, "auto: OMP_NUM_THREADS is set"
    else:
        cores, busy = usable_cores(), busy_cores()
        threads = choose_threads(cores, busy, num_parameters, processes)
        why = (
            f"auto: {cores:g} cores, {busy:.1f} busy with other work, "
            f"{num_parameters:,} parameters, {processes} process(es) on this machine"
        )
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    log.info("torch threads: %d (%s; OMP_WAIT_POLICY=%s)", threads, why, os.environ.get("OMP_WAIT_POLICY", "default"))
    return threads
