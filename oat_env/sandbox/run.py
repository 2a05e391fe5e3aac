""":func:`run_python`: validate the arguments, launch the bootstrap (bwrap, else a plain process), and
turn its status file and output into a :class:`~oat_env.sandbox.result.SandboxResult`."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .bootstrap import _BOOTSTRAP
from .bwrap import (
    _GROUP,
    _PASSWD,
    SANDBOX_DIR,
    SANDBOX_UID,
    _bwrap_argv,
    _find_bwrap,
    _interpreter,
    _outermost,
)
from .layers import CONTAINMENT_LAYERS, FULL_CONTAINMENT, SandboxUnavailableError, _warn_degraded
from .probe import _namespace_inodes
from .process import _launch
from .result import KilledReason, SandboxResult, _read_capped

# Environment variables the child gets; everything else (tokens, API keys, proxies) is dropped.
# The thread caps keep numeric libraries from spawning one thread per core inside the tool.
_CHILD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
}


def validate_code(code: object) -> str:
    """Return ``code`` if it can be run, else raise: ``TypeError`` (not a ``str``) or
    ``ValueError`` (a NUL character, or a lone surrogate that has no UTF-8 encoding)."""
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if "\x00" in code:
        raise ValueError("code must not contain NUL characters")
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"code is not valid text: lone surrogate {code[exc.start]!r} at position {exc.start}"
        ) from None
    return code


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"{name} must be a positive {'int' if integer else 'number'}, got {type(value).__name__}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def _exit_status(rc: int, status: list[str]) -> int:
    """The code's exit status: the relay's "exit N" (its last line) when it agrees with the
    launcher's status (bwrap's PID 1 turns death by signal N into exit status 128 + N)."""
    if status and status[-1].startswith("exit "):
        try:
            code = int(status[-1].split(" ", 1)[1])
        except ValueError:
            return rc
        if code == rc or (code < 0 and rc == 128 - code):
            return code
    return rc


def run_python(
    code: str,
    *,
    timeout_s: float = 5.0,
    cpu_time_s: float | None = None,
    memory_mb: int = 256,
    max_output_chars: int = 4096,
    workdir: str | os.PathLike[str] | None = None,
    max_file_mb: float | None = None,
    max_disk_mb: float = 64.0,
    namespaces: bool = True,
    python: str | None = None,
    bwrap: str | bool | None = None,
    require: Iterable[str] = (),
    readonly_paths: Sequence[str | os.PathLike[str]] = (),
    _audit_hook: bool = True,
) -> SandboxResult:
    """Run untrusted ``code`` in a sandboxed Python subprocess (see the :mod:`oat_env.sandbox` docstring).

    Args:
        code: Python source, executed as ``__main__`` with filename ``<tool>``.
        timeout_s: wall-clock limit; at expiry everything the run started is killed.
        cpu_time_s: CPU-time limit (RLIMIT_CPU, whole seconds, rounded up); default
            ``ceil(timeout_s)``.
        memory_mb: address-space limit (RLIMIT_AS) in MiB. The interpreter alone needs ~30 MiB,
            ``import numpy`` ~100 MiB more.
        max_output_chars: characters of stdout (head) and stderr (tail) returned.
        workdir: a directory in which the per-run host temporary directory (output files; the
            code's working directory without bwrap) is created (default: the system temp dir).
            It is always fresh and always deleted.
        max_file_mb: RLIMIT_FSIZE in MiB, the largest file (stdout/stderr included) the code may
            write; default ``max(1, 8 * max_output_chars / 2**20)`` MiB.
        max_disk_mb: with bwrap, the size of the tmpfs that is the code's only writable
            directory; ``/dev/shm`` gets a separate tmpfs of an eighth of it (at least 1 MiB).
        namespaces: use namespaces (bwrap, or the bootstrap's own). ``False`` runs a plain
            subprocess with rlimits, seccomp and the audit hook only (reported as degraded).
        python: the interpreter (default ``sys.executable``, so the tool sees the same packages).
        bwrap: path of the bubblewrap binary; ``None`` looks it up on ``PATH`` (and in ``/usr/bin``,
            ``/bin``), ``False`` does without (degraded). If bwrap is missing, cannot be executed
            or fails to set the sandbox up (the code has not started then), the run falls back to
            a plain subprocess, and the result and a :class:`SandboxDegradedWarning` say so.
        require: layer names (see :data:`CONTAINMENT_LAYERS`; ``FULL_CONTAINMENT`` for all) that
            must be in force: if one is not, the code does not run and
            :class:`SandboxUnavailableError` is raised.
        readonly_paths: extra host paths made visible (read-only) inside the bwrap sandbox.
        _audit_hook: testing only (checking the OS layers alone); never turn it off otherwise.

    Returns:
        A :class:`SandboxResult`. Sandbox limits never raise; only invalid arguments and an unmet
        ``require`` do.
    """
    validate_code(code)
    _check_positive("timeout_s", timeout_s)
    if cpu_time_s is not None:
        _check_positive("cpu_time_s", cpu_time_s)
    _check_positive("memory_mb", memory_mb, integer=True)
    _check_positive("max_output_chars", max_output_chars, integer=True)
    if max_file_mb is not None:
        _check_positive("max_file_mb", max_file_mb)
    _check_positive("max_disk_mb", max_disk_mb)
    if workdir is not None and not Path(workdir).is_dir():
        raise ValueError(f"workdir {str(workdir)!r} is not an existing directory")
    if isinstance(require, str):
        raise TypeError("require must be a collection of layer names, not a str")
    required = tuple(require)
    unknown = sorted(set(required) - set(CONTAINMENT_LAYERS))
    if unknown:
        raise ValueError(f"unknown containment layers {unknown}; known: {list(CONTAINMENT_LAYERS)}")
    extra_ro = tuple(os.path.abspath(os.fspath(p)) for p in readonly_paths)
    for path in extra_ro:
        if not os.path.exists(path):
            raise ValueError(f"readonly path {path!r} does not exist")
        if path == os.sep:
            raise ValueError("readonly_paths must not contain '/' (that would expose the whole host)")
    if os.name != "posix":
        raise OSError("run_python needs a POSIX system (resource limits, process groups)")

    python = python or sys.executable
    if os.sep not in python:  # a bare name: bwrap would look it up on the sandbox's PATH
        python = shutil.which(python) or python
    cpu_s = max(1, math.ceil(cpu_time_s if cpu_time_s is not None else timeout_s))
    fsize = int((max_file_mb if max_file_mb is not None else max(1.0, 8 * max_output_chars / 2**20)) * 2**20)
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    disk_bytes = max(2**20, -(-int(max_disk_mb * 2**20) // page) * page)  # whole pages, as tmpfs has it
    shm_bytes = max(2**20, disk_bytes // 8 // page * page)
    notes: list[str] = []
    bwrap_path = None
    if namespaces and sys.platform.startswith("linux"):
        bwrap_path, why = _find_bwrap(bwrap)
        if why:
            notes.append(why)
    elif not namespaces:
        notes.append("namespaces=False: no bwrap and no namespaces")
    else:
        notes.append(f"no namespaces on {sys.platform}")
    plans = (["bwrap"] if bwrap_path else []) + ["process"]

    base = Path(tempfile.mkdtemp(prefix="oat-sandbox-", dir=workdir)).resolve()
    try:
        code_path, status_path = base / "code.py", base / "status"
        out_path, err_path = base / "stdout", base / "stderr"
        code_path.write_text(code, encoding="utf-8")
        as_root = os.geteuid() == 0
        start = time.monotonic()
        for plan in plans:
            status_path.write_bytes(b"")
            use_bwrap = plan == "bwrap"
            if use_bwrap:
                root = SANDBOX_DIR
            else:
                root = str(base / "work")
                os.makedirs(root, exist_ok=True)
            config = {
                "run": str(base),  # names the run in the process list (tests look for leftovers)
                "root": root,
                "writable_files": [os.devnull, str(out_path), str(err_path)],
                "cpu_s": cpu_s,
                "memory_bytes": int(memory_mb) * 2**20,
                "fsize_bytes": fsize,
                "nofile": 64,
                "nproc": 64,
                "unshare": bool(namespaces) and not use_bwrap and sys.platform.startswith("linux"),
                "mount_ns": use_bwrap,
                "drop_uid": SANDBOX_UID if use_bwrap and as_root else None,
                "chown": [SANDBOX_DIR, "/dev/shm"],
                "disk_bytes": disk_bytes if use_bwrap else 0,
                "shm_bytes": shm_bytes if use_bwrap else 0,
                "parent_ns": _namespace_inodes(),
                "parent_uid": os.geteuid(),
                "parent_gid": os.getegid(),
                "require": list(required),
                "audit_hook": bool(_audit_hook),
            }
            env = dict(_CHILD_ENV, HOME=root, TMPDIR=root)
            child_fds: list[int] = []
            info_r = None
            try:
                code_fd = os.open(code_path, os.O_RDONLY)
                status_fd = os.open(status_path, os.O_WRONLY | os.O_APPEND)
                child_fds += [code_fd, status_fd]
                config["code_fd"], config["status_fd"] = code_fd, status_fd
                if use_bwrap:
                    fds = {}
                    for name, data in (("passwd", _PASSWD), ("group", _GROUP)):
                        r, w = os.pipe()
                        os.write(w, data)
                        os.close(w)
                        child_fds.append(r)
                        fds[name] = r
                    info_r, info_w = os.pipe()
                    child_fds.append(info_w)
                    fds["info"] = info_w
                    executable, python_dirs = _interpreter(python)
                    binds = _outermost([*python_dirs, *extra_ro])
                    argv = _bwrap_argv(
                        bwrap_path,
                        as_root=as_root,
                        python=executable,
                        binds=binds,
                        fds=fds,
                        disk_bytes=disk_bytes,
                        shm_bytes=shm_bytes,
                    )
                    cwd = "/"
                else:
                    argv = [python]
                    cwd = root
                argv += ["-I", "-c", _BOOTSTRAP, json.dumps(config)]
                try:
                    rc, exited, cpu_used = _launch(
                        argv,
                        cwd=cwd,
                        env=env,
                        child_fds=child_fds,
                        info_fd=info_r,
                        out_path=out_path,
                        err_path=err_path,
                        timeout_s=timeout_s,
                    )
                except OSError as exc:
                    if plan == plans[-1]:
                        raise
                    notes.append(f"bwrap could not be executed ({exc})")
                    continue
            finally:
                for fd in child_fds:
                    os.close(fd)
                if info_r is not None:
                    os.close(info_r)
            status = status_path.read_text(encoding="utf-8", errors="replace").splitlines()
            if "boot" in status or not exited or plan == plans[-1]:
                break
            # The launcher failed before the bootstrap ran (bwrap could not set the sandbox up): the
            # code has not run; run it the next way, and say why.
            message = err_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            notes.append(f"bwrap failed to start ({(message or [f'exit status {rc}'])[-1][:300]})")
        duration = time.monotonic() - start

        # What the bootstrap reported before the user code started ("ready") is trustworthy.
        setup = status[: status.index("ready")] if "ready" in status else status
        containment = tuple(layer for layer in CONTAINMENT_LAYERS if f"layer {layer}" in setup)
        refused = next((line.split(" ", 1)[1] for line in setup if line.startswith("refused ")), None)
        if refused is not None:
            raise SandboxUnavailableError(
                f"required containment layers not in force: {refused.replace(',', ', ')}"
                + (f" ({'; '.join(notes)})" if notes else "")
                + "; the code was not run"
            )
        for line in setup:
            for prefix in ("seccomp-", "drop-failed", "unshare-failed", "rlimit-failed"):
                if line.startswith(prefix):
                    notes.append(line)
        blocked = next((line.split(" ", 1)[1] for line in status if line.startswith("blocked ")), None)
        reasons = {line.split(" ", 1)[1] for line in status if line.startswith("reason ")}
        stdout, out_cut = _read_capped(out_path, max_output_chars, "head")
        stderr, err_cut = _read_capped(err_path, max_output_chars, "tail")
        rc = _exit_status(rc, status) if exited else rc
        killed: KilledReason | None = None
        if not exited:
            killed = "timeout"
        elif (
            rc == -signal.SIGXCPU or "cpu" in reasons or (rc == -signal.SIGKILL and cpu_used >= cpu_s - 0.05)
        ):
            killed = "cpu"
        elif rc == -signal.SIGXFSZ or "output" in reasons:
            killed = "output"
        elif "memory" in reasons:
            killed = "memory"
        elif rc == -signal.SIGSYS:
            killed, blocked = "blocked", blocked or "seccomp"
        elif blocked is not None and rc != 0:
            killed = "blocked"
        if "boot" not in status and exited and rc != 0:
            notes.append(f"the interpreter failed to start (exit status {rc})")
        if "ready" not in status and not exited:
            notes.append("timed out before the code started")
        missing = tuple(layer for layer in FULL_CONTAINMENT if layer not in containment)
        result = SandboxResult(
            stdout=stdout,
            stderr=stderr,
            exit_code=rc,
            timed_out=not exited,
            killed_reason=killed,
            blocked_event=blocked,
            duration_s=duration,
            network_isolation="namespace" if "net-namespace" in containment else "audit-hook",
            pid_namespace="pid-namespace" in containment,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            containment=containment,
            missing_layers=missing,
            launcher=("bwrap" if as_root else "bwrap-userns") if plan == "bwrap" else "process",
            containment_notes=tuple(notes),
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if result.missing_layers and "ready" in status:  # the code ran with less than full containment
        _warn_degraded(result.missing_layers, result.containment_notes)
    return result
