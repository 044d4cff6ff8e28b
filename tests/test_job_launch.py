"""The torchrun tests' launcher: one more launch after a rank's native start-up abort, and only then."""
from __future__ import annotations

import sys
from pathlib import Path

from tests.helpers import START_UP_ABORT, run_job

# Counts its launches in a file; fails with `message` on stderr while launches <= `failures`.
SCRIPT = """
import sys
from pathlib import Path
count = Path(sys.argv[1])
launches = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(launches))
if launches <= int(sys.argv[2]):
    sys.stderr.write(sys.argv[3] + "\\n")
    sys.exit(1)
"""


def launches(tmp_path: Path, failures: int, message: str) -> tuple[int, int]:
    count = tmp_path / "count"
    done = run_job([sys.executable, "-c", SCRIPT, str(count), str(failures), message], capture_output=True, text=True)
    return done.returncode, int(count.read_text())


def test_a_start_up_abort_is_launched_once_more(tmp_path: Path) -> None:
    assert launches(tmp_path, failures=1, message=START_UP_ABORT) == (0, 2)


def test_a_second_abort_is_reported(tmp_path: Path) -> None:
    assert launches(tmp_path, failures=2, message=START_UP_ABORT) == (1, 2)


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    assert launches(tmp_path, failures=1, message="ValueError: bad config") == (1, 1)
