"""The launcher's process: start it, wait for it (wall clock, pidfds), kill and reap all it started.

:func:`_launch` is the whole life of one launch; the helpers kill the process group
(:func:`_kill_group`) and the sandbox's PID 1 named by bwrap's ``--info-fd`` (:func:`_relay_pidfd`,
:func:`_kill_and_wait`), so nothing of a run outlives :func:`~oat_env.sandbox.run_python`.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import subprocess
import time
from pathlib import Path


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits *without reaping it*; ``False`` on timeout.

    Not reaping keeps the zombie's PID -- and hence the process-group id -- reserved, so the
    ``killpg`` that follows cannot hit an unrelated group that reused the number.
    """
    deadline = time.monotonic() + timeout
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if poller.poll(max(1, math.ceil(remaining * 1000))):
                    return True
        delay = 0.001
        while True:  # portable fallback: poll with WNOWAIT
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.02)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _relay_pidfd(info_fd: int, launcher_pid: int) -> int | None:
    """A pidfd for the sandbox's PID 1 (bwrap's --info-fd names it), checked to still be the
    launcher's child -- so the number cannot have been reused -- else ``None``."""
    try:
        os.set_blocking(info_fd, False)
        info = json.loads(os.read(info_fd, 65536) or b"null")
        pid = int(info["child-pid"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = -1
    if ppid != launcher_pid:
        os.close(pidfd)
        return None
    return pidfd


def _kill_and_wait(pidfd: int, timeout: float) -> None:
    """SIGKILL the sandbox's PID 1 and wait until it is gone: the kernel kills every other process
    of its PID namespace first, so nothing of the run survives ``run_python``."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(max(1, int(timeout * 1000)))
    finally:
        os.close(pidfd)


def _launch(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    child_fds: list[int],
    info_fd: int | None,
    out_path: Path,
    err_path: Path,
    timeout_s: float,
) -> tuple[int, bool, float]:
    """Start ``argv`` (handing it ``child_fds``, closed here once it has them), wait (wall clock),
    kill everything it started, reap it; (exit status, exited, CPU seconds)."""
    try:
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_f,
                stderr=err_f,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(child_fds),
            )
    finally:
        while child_fds:
            os.close(child_fds.pop())
    try:
        exited = _wait_exit(proc.pid, float(timeout_s))
    finally:
        # The relay (bwrap's PID 1) first, while the launcher still holds it as its child.
        relay = _relay_pidfd(info_fd, proc.pid) if info_fd is not None else None
        # Kill the group whether or not the leader exited: background processes die too.
        _kill_group(proc.pid)
        if relay is not None:
            _kill_and_wait(relay, 5.0)
        cpu_used = 0.0
        try:
            _, wait_status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            cpu_used = rusage.ru_utime + rusage.ru_stime  # includes reaped descendants
        except ChildProcessError:  # reaped elsewhere (e.g. a SIGCHLD=SIG_IGN host): status unknown
            proc.returncode = -signal.SIGKILL
    return proc.returncode, exited, cpu_used
