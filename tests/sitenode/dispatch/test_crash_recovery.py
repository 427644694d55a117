"""kill -9 in the middle of dispatching, restart: no command lost, none finished sent again."""

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

from sitenode.dispatch.commands import CommandState
from sitenode.journal import Journal

WORKER = Path(__file__).with_name("crash_worker.py")
N = 60


def received(folder: Path) -> list[str]:
    path = folder / "device.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_9_then_resume(tmp_path):
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), str(N), "0.02"], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(received(tmp_path)) < N // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = received(tmp_path)
    assert 0 < len(before) < N, "the kill should land mid-run"

    journal = Journal(tmp_path / "journal.db")
    at_crash = {c.id: c.state for c in journal.commands()}
    journal.close()
    assert len(at_crash) == N  # the whole plan was journalled before anything was sent
    in_flight = {i for i, s in at_crash.items() if s is CommandState.DISPATCHED}

    done = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), str(N), "0"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    after = received(tmp_path)
    counts = collections.Counter(after)
    assert set(counts) == set(at_crash)  # nothing lost
    repeats = {i for i, k in counts.items() if k > 1}
    # only what was on the wire when the process died may arrive twice, under its own id
    assert repeats <= in_flight
    completed_before = {i for i, s in at_crash.items() if s is CommandState.COMPLETED}
    assert all(counts[i] == 1 for i in completed_before)
    journal = Journal(tmp_path / "journal.db")
    assert {c.state for c in journal.commands()} == {CommandState.COMPLETED}
