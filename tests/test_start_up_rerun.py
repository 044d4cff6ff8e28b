"""The suite's rerun rule (pyproject.toml): a gloo start-up abort runs once more, nothing else does.

Each case runs pytest, with the project's configuration, on a test that fails with a
given message for its first ``failures`` runs and counts its runs in a file.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAKY = """
from pathlib import Path

def test_flaky():
    count = Path({count!r})
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
    if runs <= {failures}:
        raise {error}
"""


def run_pytest(tmp_path: Path, failures: int, error: str) -> tuple[int, int]:
    """(pytest's exit code, times the test ran)."""
    count = tmp_path / "count"
    test = tmp_path / "test_flaky.py"
    test.write_text(FLAKY.format(count=str(count), failures=failures, error=error))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(test)],
        capture_output=True, text=True, timeout=120,
    )
    return done.returncode, int(count.read_text())


@pytest.mark.parametrize(
    "error",
    [
        'AssertionError("[rank: 1] Initializing distributed\\nterminate called without an active exception")',
        'RuntimeError("process 0 terminated with signal SIGABRT")',
    ],
)
def test_a_start_up_abort_runs_once_more(tmp_path: Path, error: str) -> None:
    assert run_pytest(tmp_path, failures=1, error=error) == (0, 2)


def test_a_second_abort_fails(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, failures=2, error='RuntimeError("process 1 terminated with signal SIGABRT")') == (1, 2)


def test_other_failures_are_not_rerun(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, failures=1, error='ValueError("bad config")') == (1, 1)
