"""Bubblewrap: finding it, and building its command line (layer 1 of the :mod:`oat_env.sandbox` docstring).

:func:`_find_bwrap` locates the binary, :func:`_interpreter` finds the directories the interpreter
needs bound read-only, :func:`_bwrap_argv` builds the command line; ``SANDBOX_UID`` and
``SANDBOX_DIR`` are the uid and working directory the code gets under bwrap, ``_PASSWD`` and
``_GROUP`` the synthetic ``/etc`` files.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence

SANDBOX_UID = 65534  # "nobody": the uid (and gid) the code runs as under bwrap
SANDBOX_DIR = "/sandbox"  # the code's working directory under bwrap (a size-capped tmpfs)
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
_PASSWD = (
    b"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    b"sandbox:x:65534:65534:sandbox:/sandbox:/usr/sbin/nologin\n"
)
_GROUP = b"root:x:0:\nsandbox:x:65534:\n"


def _find_bwrap(bwrap: str | bool | None) -> tuple[str | None, str | None]:
    """(path to bwrap, None) or (None, why not)."""
    if bwrap is False:
        return None, "bwrap=False: no mount namespace, disk quota or sandbox uid"
    if bwrap is None or bwrap is True:
        search = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/bin:/bin:/usr/local/bin"]))
        found = shutil.which("bwrap", path=search)
        if found is None:
            return (
                None,
                "bwrap (bubblewrap) not found on PATH: install it (Debian: apt-get install bubblewrap)",
            )
        return found, None
    if not (os.path.isfile(bwrap) and os.access(bwrap, os.X_OK)):
        return None, f"bwrap {bwrap!r} is not an executable file"
    return bwrap, None


_PROBE = (
    "import json, sys; "
    "print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
)


@functools.lru_cache(maxsize=16)
def _interpreter(python: str) -> tuple[str, tuple[str, ...]]:
    """The interpreter's own ``sys.executable`` (not a wrapper script such as a pyenv shim) and the
    directories it needs inside the sandbox (read-only): its prefixes (a venv and its base
    installation) and the directory of the real executable. ``/usr`` is always bound."""
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        paths = [sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        try:
            out = subprocess.run(
                [python, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30, check=True
            ).stdout
            paths = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            paths = [python, os.path.dirname(os.path.dirname(os.path.abspath(python)))]
    executable = paths[0] or python
    dirs = {os.path.dirname(os.path.abspath(executable)), os.path.dirname(os.path.realpath(executable))}
    dirs.update(os.path.abspath(p) for p in paths[1:])
    dirs.update(os.path.realpath(p) for p in paths[1:])
    return executable, _outermost(d for d in dirs if d not in ("", "/") and os.path.isdir(d))


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """The paths that are not inside another one of them (nor inside ``/usr``, bound anyway)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in [*kept, "/usr"]):
            kept.append(path)
    return tuple(sorted(kept))


def _bwrap_argv(
    bwrap: str,
    *,
    as_root: bool,
    python: str,
    binds: Sequence[str],
    fds: dict[str, int],
    disk_bytes: int,
    shm_bytes: int,
) -> list[str]:
    """The bubblewrap command line (see the :mod:`oat_env.sandbox` docstring, layer 1)."""
    if as_root:
        # No user namespace: the bootstrap drops to uid 65534 itself with the three capabilities
        # kept for that, so the sandbox's uid is unprivileged on the host too.
        argv = [
            bwrap,
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--cap-add",
            "CAP_CHOWN",
        ]
    else:
        argv = [
            bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
        ]
    argv += [
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--hostname",
        "sandbox",
        "--info-fd",
        str(fds["info"]),
    ]
    etc_files = [path for path in _ETC_FILES if os.path.exists(path)]
    # The parents of every mount target as 0755 directories (bwrap 0.8 would create them 0700,
    # which the sandbox uid could not traverse).
    parents: set[str] = set()
    for target in [*binds, *etc_files, "/etc/passwd"]:
        head = os.path.dirname(target)
        while head not in ("", "/") and not head.startswith("/usr/") and head not in _TOP_LEVEL:
            parents.add(head)
            head = os.path.dirname(head)
    for path in sorted(parents):
        argv += ["--dir", path]
    argv += ["--ro-bind", "/usr", "/usr"]
    for path in _TOP_LEVEL:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in etc_files:
        argv += ["--ro-bind", path, path]
    argv += [
        "--ro-bind-data",
        str(fds["passwd"]),
        "/etc/passwd",
        "--ro-bind-data",
        str(fds["group"]),
        "/etc/group",
    ]
    for path in binds:
        argv += ["--ro-bind", path, path]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(shm_bytes),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(disk_bytes),
        "--perms",
        "0700",
        "--tmpfs",
        SANDBOX_DIR,
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        SANDBOX_DIR,
        "--",
        python,
    ]
    return argv
