"""No POSIX semaphores left in /dev/shm by grading timeouts (killed pool workers) or by a killed
oracle server (issue 16). Other processes may create entries meanwhile, so only the entries that
appeared during the run AND are still there count, and each test attributes them as far as it can."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from oat_env.grading import GradingPool

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm")


def _sems() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("sem.")}


def test_grading_timeouts_leave_no_semaphores() -> None:
    before = _sems()
    # preload=(): workers start in ~50 ms, and the task's own sympy import runs into the timeout.
    with GradingPool(num_workers=2, memory_limit=2 * 1024**3, preload=()) as pool:
        outs = pool.run(
            "oat_env.grading.equivalence:symbolic_equal", [("9^{9^{9^{9}}}", "3")] * 22, 0.3, chunk_size=1
        )
        assert [o.status for o in outs].count("timeout") >= 20
        assert pool.restarts >= 20
        during = _sems() - before
    after = _sems() - before
    assert not (during & after), f"pool left semaphores: {sorted(during & after)}"
    # The pool uses pipes only: it never creates a named semaphore, even while running.
    assert not [n for n in during if n in _sems()]


def test_killed_oracle_server_leaves_no_semaphores(tmp_path: Path) -> None:
    pytest.importorskip("mosec")
    pytest.importorskip("aiohttp")
    psutil = pytest.importorskip("psutil")
    from test_oracle_remote import Served

    before = _sems()
    served = Served(tmp_path, workers=1, max_batch_size=4)
    try:
        (main,) = [c for c in psutil.Process(served.proc.pid).children() if "--no-supervise" in c.cmdline()]
        # The names this server created, as it reported them to the supervisor (TMPDIR=tmp_path).
        (sem_file,) = tmp_path.glob("oat-serve-sems-*")
        mine = {"sem." + n.lstrip("/") for n in sem_file.read_text().split()}
        assert len(mine) == 10 and mine <= _sems() - before  # 2 spawn-context Events x 5
        os.kill(main.pid, signal.SIGKILL)  # its resource tracker cannot clean up for it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "server exited" not in served.tail():
            time.sleep(0.1)
        assert "server exited" in served.tail()
        time.sleep(1.0)  # the supervisor reaps the group, then unlinks
        assert not (mine & _sems()), f"killed server left {sorted(mine & _sems())}"
        served.wait_ready(1, timeout=45)  # restarted
    finally:
        served.stop()
