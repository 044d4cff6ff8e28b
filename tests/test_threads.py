"""``num_threads: auto``: the choice from free cores and model size, and how it is applied."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.training import threads
from train.training.threads import check_setting, choose_threads, configure_threads, size_cap

SMALL, MEDIUM, LARGE = 67_000, 5_000_000, 50_000_000


@pytest.mark.parametrize(
    "cores, busy, parameters, processes, expected",
    [
        (2, 0.0, SMALL, 1, 2),  # idle laptop: both cores
        (2, 1.0, SMALL, 1, 1),  # one core busy elsewhere: never two threads fighting for one core
        (2, 0.6, SMALL, 1, 1),  # a core mostly taken counts as taken
        (2, 0.4, SMALL, 1, 2),  # a core mostly idle counts as free
        (2, 2.5, SMALL, 1, 1),  # overloaded: still one thread
        (16, 0.0, SMALL, 1, 2),  # a small model gains nothing from more
        (16, 0.0, MEDIUM, 1, 4),
        (16, 0.0, LARGE, 1, 16),  # large models take every free core
        (16, 4.0, LARGE, 2, 6),  # free cores are shared among this machine's processes
        (16, 0.0, LARGE, 32, 1),
        (1.5, 0.0, LARGE, 1, 2),  # a cgroup quota of 1.5 cores
    ],
)
def test_choice_from_free_cores_and_size(cores, busy, parameters, processes, expected) -> None:
    assert choose_threads(cores, busy, parameters, processes) == expected


def test_size_caps_are_inclusive_and_grow() -> None:
    assert size_cap(1_000_000) == 2 and size_cap(1_000_001) == 4
    assert size_cap(10_000_000) == 4 and size_cap(10_000_001) is None


@pytest.mark.parametrize("value", ["auto", None, 1, 8])
def test_good_settings_pass(value) -> None:
    assert check_setting(value) == value


@pytest.mark.parametrize("value", [0, -2, 2.5, "four", "", True])
def test_bad_settings_name_the_key(value) -> None:
    with pytest.raises(ValueError, match="num_threads must be 'auto', null"):
        check_setting(value)


@pytest.fixture
def restore_threads(monkeypatch):
    """configure_threads sets torch's threads and OMP_NUM_THREADS: put both back."""
    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # recorded, so the end of the test restores it
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_wins(restore_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("an explicit count samples nothing"))
    assert configure_threads(3, SMALL) == 3
    assert torch.get_num_threads() == 3
    assert threads.os.environ["OMP_NUM_THREADS"] == "3"  # Lightning's launcher keeps it


def test_null_keeps_torch_default(restore_threads) -> None:
    before = torch.get_num_threads()
    assert configure_threads(None, SMALL) is None
    assert torch.get_num_threads() == before


def test_auto_uses_the_sampled_machine(restore_threads, monkeypatch, caplog) -> None:
    monkeypatch.setattr(threads, "USER_OMP_NUM_THREADS", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1.0)
    with caplog.at_level("INFO", logger="train.training.threads"):
        assert configure_threads("auto", SMALL) == 1
    assert torch.get_num_threads() == 1
    assert [r.getMessage() for r in caplog.records if "torch threads" in r.getMessage()] == [
        "torch threads: 1 (auto: 2 cores, 1.0 busy with other work, 67,000 parameters, "
        f"1 process(es) on this machine; OMP_WAIT_POLICY={threads.os.environ.get('OMP_WAIT_POLICY', 'default')})"
    ]


def test_auto_keeps_an_exported_omp_num_threads(restore_threads, monkeypatch) -> None:
    monkeypatch.setattr(threads, "USER_OMP_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("the user's count needs no sample"))
    assert configure_threads("auto", LARGE) == 2


def test_a_later_auto_run_in_the_same_process_chooses_again(restore_threads, monkeypatch) -> None:
    """A sweep's second run must not mistake the first run's export for the user's."""
    monkeypatch.setattr(threads, "USER_OMP_NUM_THREADS", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    assert configure_threads("auto", LARGE) == 4
    monkeypatch.setattr(threads, "busy_cores", lambda: 3.0)
    assert configure_threads("auto", LARGE) == 1


def test_busy_cores_counts_only_this_process_cpus(tmp_path: Path, monkeypatch) -> None:
    stat = tmp_path / "stat"
    samples = iter([
        # cpu user nice system idle iowait irq softirq steal
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 0 0 0 200 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0\nintr 5\n",
        # 100 ticks each: cpu0 fully busy, cpu1 a quarter busy (system), cpu2 outside the affinity
        "cpu  0 0 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0\ncpu1 0 0 25 275 0 0 0 0\ncpu2 100 0 0 0 0 0 0 0\nintr 9\n",
    ])
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads.time, "sleep", lambda s: stat.write_text(next(samples)))
    stat.write_text(next(samples))
    assert threads.busy_cores() == pytest.approx(1.25)


def test_usable_cores_follow_a_cgroup_quota(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    quota.write_text("150000 100000\n")
    assert threads.usable_cores() == 1.5
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == 4
    quota.unlink()
    assert threads.usable_cores() == 4


def test_passive_wait_keeps_a_users_policy(monkeypatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    threads.prefer_passive_wait()
    assert threads.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert threads.os.environ["GOMP_SPINCOUNT"] == threads.SHORT_SPIN  # GNU OpenMP: a short spin first
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "0")):
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        monkeypatch.setenv(name, value)
        threads.prefer_passive_wait()
        assert threads.os.environ[name] == value
        other = "GOMP_SPINCOUNT" if name == "OMP_WAIT_POLICY" else "OMP_WAIT_POLICY"
        assert other not in threads.os.environ  # nothing added beside the user's choice
