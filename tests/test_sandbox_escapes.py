"""Escape attempts against oat_env.sandbox: every one must fail, and the caller must hear about it.

Each attack runs twice where it makes sense: with the audit hook (the normal setup) and with the hook
switched off (``_audit_hook=False``), which is what an attacker who defeats the hook has -- the
operating-system layers (bwrap's mount/PID/network namespaces, the sandbox uid, the tmpfs quota,
seccomp) must hold on their own. The tests that need bwrap skip, with the reason, when it is not
installed; ``test_degraded_containment_is_reported_loudly`` then checks that the sandbox says so.
"""

from __future__ import annotations

import dis
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from conftest import sandbox_processes

import oat_env  # noqa: F401  (registers the oat/* ids)
from oat_env import sandbox
from oat_env.envs.tools import PythonToolWrapper
from oat_env.sandbox import (
    FULL_CONTAINMENT,
    SandboxDegradedWarning,
    SandboxResult,
    SandboxUnavailableError,
    run_python,
)

BWRAP = shutil.which("bwrap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin:/bin"]))


def _why_no_bwrap_sandbox() -> str | None:
    """Why the bwrap tests cannot run here, or None. Only a missing bwrap, or a kernel that refuses
    it namespaces (e.g. a container's seccomp profile), skips them; any other failure fails them."""
    if BWRAP is None:
        return (
            "bubblewrap (bwrap) is not installed, so the OS containment layers cannot be tested "
            "(Debian: apt-get install bubblewrap); test_degraded_containment_is_reported_loudly covers this case"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)
        probe = run_python("pass")
    refused = ("namespace", "uid map", "Operation not permitted", "Permission denied")
    if not probe.launcher.startswith("bwrap") and any(
        s in n for n in probe.containment_notes for s in refused
    ):
        return f"bwrap is installed but the kernel refuses it here: {'; '.join(probe.containment_notes)}"
    return None


NO_BWRAP_SANDBOX = _why_no_bwrap_sandbox() if sys.platform.startswith("linux") else "not Linux"

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox targets Linux"),
]
needs_bwrap = pytest.mark.skipif(NO_BWRAP_SANDBOX is not None, reason=str(NO_BWRAP_SANDBOX))
hook_on_off = pytest.mark.parametrize("audit_hook", [True, False], ids=["hook", "no-hook"])

# The reported attack on the hook: a SandboxViolation's traceback reaches the hook's frames; overwrite
# every closure cell, code object and default reachable from them, and patch what the old hook called.
TAMPER_WITH_HOOK = """
import os, posixpath, sys
def _frames():
    try:
        open("/nonexistent-dir/probe", "w")
    except PermissionError as exc:
        tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    f = frames[-1].f_back
    while f is not None:
        frames.append(f)
        f = f.f_back
    return frames
def _neuter(fn):
    n = 0
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            c = cell.cell_contents
            if isinstance(c, type):
                continue  # (the exception class)
            cell.cell_contents = frozenset() if isinstance(c, frozenset) else "/" if isinstance(c, str) else (lambda *a, **k: True)
            n += 1
        except Exception:
            pass
    for attr, value in (("__code__", (lambda *a, **k: None).__code__), ("__defaults__", None), ("__kwdefaults__", None)):
        try:
            setattr(fn, attr, value)
            n += 1
        except Exception:
            pass
    return n
tampered = []
for frame in _frames():
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        for fn in [value] + list(getattr(value, "__defaults__", None) or ()):
            try:
                if callable(fn) and hasattr(fn, "__code__") and fn is not _neuter and fn is not _frames and _neuter(fn):
                    tampered.append(fn.__name__)
            except Exception as exc:
                print("tamper error", type(exc).__name__, exc)
posixpath.realpath = os.path.realpath = lambda path, **kw: "/sandbox/inside"
try:
    open("/nonexistent-dir/probe2", "w")
    print("HOOK_DISABLED")
except PermissionError as exc:
    print("HOOK_ALIVE" if type(exc).__name__ == "SandboxViolation" else "HOOK_DISABLED")
except OSError:
    print("HOOK_DISABLED")
print("tampered", tampered)
"""


def contained(code: str, *, audit_hook: bool = True, **kwargs) -> SandboxResult:
    """Run under bwrap and check that every layer was in force (the hook aside, if switched off)."""
    kwargs.setdefault("timeout_s", 10)
    kwargs.setdefault("max_output_chars", 20_000)
    if audit_hook:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SandboxDegradedWarning)
            result = run_python(code, **kwargs)
        assert result.missing_layers == (), result.containment_notes
    else:
        with pytest.warns(SandboxDegradedWarning, match="audit-hook"):
            result = run_python(code, _audit_hook=False, **kwargs)
        assert result.missing_layers == ("audit-hook",), result.containment_notes
    assert result.launcher.startswith("bwrap")
    return result


def site_packages() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)))


# --- the hook: defence in depth ------------------------------------------------------------------


def test_hook_functions_have_no_closures_or_global_lookups():
    """The property that makes the frame/closure attack useless, checked on the hook's code."""
    namespace: dict = {}
    exec(compile(sandbox._HOOK_SOURCE, "<hook>", "exec"), namespace)  # defines _make_hook only
    outer = namespace["_make_hook"].__code__
    inner = [c for c in outer.co_consts if isinstance(c, type(outer)) and c.co_name != "Blocked"]
    assert {c.co_name for c in inner} >= {
        "as_text",
        "realpath",
        "as_fd",
        "resolve",
        "inside",
        "check",
        "hook",
    }
    for code in inner:
        assert code.co_freevars == () and code.co_cellvars == (), code.co_name
        ops = {ins.opname for ins in dis.get_instructions(code)}
        assert not ops & {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLOSURE", "STORE_GLOBAL"}, (
            code.co_name
        )
        nested = [c for c in code.co_consts if isinstance(c, type(code))]
        assert nested == [], f"{code.co_name} defines nested code (a closure or comprehension)"


@needs_bwrap
def test_hook_survives_traceback_frame_and_closure_tampering_then_write_outside_fails(tmp_path):
    target = tmp_path / "evil.txt"
    victim = site_packages() / f"oat_escape_{uuid.uuid4().hex}.py"
    code = TAMPER_WITH_HOOK + textwrap.dedent(f"""
        for path in ({str(target)!r}, {str(victim)!r}, "/etc/oat_escape", "/usr/oat_escape"):
            try:
                with open(path, "w") as f:
                    f.write("pwned")
                print("WROTE", path)
            except OSError as exc:
                print("refused", path, type(exc).__name__)
    """)
    try:
        result = contained(code, readonly_paths=[tmp_path])
        assert "HOOK_ALIVE" in result.stdout and "HOOK_DISABLED" not in result.stdout, (
            result.stdout + result.stderr
        )
        tampered = result.stdout.split("tampered ", 1)[1].splitlines()[0]
        for name in (
            "hook",
            "check",
            "resolve",
            "inside",
            "realpath",
            "as_text",
            "as_fd",
            "_note",
            "_no_fork_exec",
        ):
            assert f"'{name}'" not in tampered, tampered  # the hook's own functions could not be changed
        assert "WROTE" not in result.stdout
        assert not target.exists() and not victim.exists()
        assert result.blocked_event is not None
    finally:
        victim.unlink(missing_ok=True)


@needs_bwrap
def test_write_outside_fails_at_the_kernel_without_the_hook(tmp_path):
    target = tmp_path / "evil.txt"
    victim = site_packages() / f"oat_escape_{uuid.uuid4().hex}.py"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    code = textwrap.dedent(f"""
        import os
        for path in ({str(target)!r}, {str(victim)!r}, {str(hidden / "x")!r}, "/etc/passwd", "/x", "/dev/x"):
            try:
                with open(path, "w") as f:
                    f.write("pwned")
                print("WROTE", path)
            except OSError as exc:
                print("refused", path, exc.strerror)
        for op in (lambda: os.chmod("/dev/null", 0), lambda: os.rename({str(victim.parent)!r}, "/sandbox/sp"),
                   lambda: os.symlink("/sandbox", {str(tmp_path / "link")!r})):
            try:
                op()
                print("CHANGED")
            except OSError as exc:
                print("refused", exc.strerror)
    """)
    try:
        result = contained(code, audit_hook=False, readonly_paths=[tmp_path])
        assert "WROTE" not in result.stdout and "CHANGED" not in result.stdout, result.stdout
        assert "Read-only file system" in result.stdout  # the read-only binds, not the hook
        assert not target.exists() and not victim.exists() and not (tmp_path / "link").exists()
        assert list(hidden.iterdir()) == []
        assert os.stat("/dev/null").st_mode & 0o777 == 0o666
    finally:
        victim.unlink(missing_ok=True)


# --- secrets of the parent ----------------------------------------------------------------------


@needs_bwrap
@hook_on_off
def test_parent_environ_canary_is_unreadable(monkeypatch, audit_hook):
    canary = f"oat-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("OAT_ESCAPE_CANARY", canary)
    code = textwrap.dedent(f"""
        import os
        print("ENV", dict(os.environ))
        try:
            print("PARENT", open("/proc/{os.getpid()}/environ", "rb").read())
        except OSError as exc:
            print("parent environ:", type(exc).__name__)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                for name in ("environ", "cmdline"):
                    try:
                        data = open(f"/proc/{{pid}}/{{name}}", "rb").read()
                        print("PROC", pid, name, "HIT" if b"OAT_ESCAPE_CANARY" in data else "clean", data[:200])
                    except OSError as exc:
                        print("PROC", pid, name, type(exc).__name__)
        print("PIDS", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """)
    result = contained(code, audit_hook=audit_hook)
    assert canary not in result.stdout + result.stderr
    assert "OAT_ESCAPE_CANARY" not in result.stdout
    assert "PARENT b" not in result.stdout and "HIT" not in result.stdout
    pids = eval(result.stdout.split("PIDS ", 1)[1].splitlines()[0])  # noqa: S307 -- a list of ints we printed
    assert pids == [1, 2]  # the relay and the code: no host process is even visible


# --- process creation ---------------------------------------------------------------------------


@needs_bwrap
@hook_on_off
def test_os_system_and_other_process_creation_fail(tmp_path, audit_hook):
    marker = tmp_path / "ran"
    code = textwrap.dedent(f"""
        import os, subprocess
        attempts = {{
            "os.system": lambda: os.system("echo pwned > /sandbox/ran; touch {marker}"),
            "subprocess": lambda: subprocess.run(["/bin/sh", "-c", "echo pwned > /sandbox/ran"]),
            "fork": lambda: os.fork() or os._exit(0),
            "posix_spawn": lambda: os.posix_spawn("/bin/sh", ["sh", "-c", "echo pwned > /sandbox/ran"], {{}}),
            "execv": lambda: os.execv("/bin/sh", ["sh", "-c", "echo pwned > /sandbox/ran"]),
        }}
        for name, attempt in attempts.items():
            try:
                status = attempt()
                print(name, "returned", status, flush=True)
            except Exception as exc:
                print(name, "refused", type(exc).__name__, flush=True)
        print("RAN" if os.path.exists("/sandbox/ran") else "nothing ran")
    """)
    result = contained(code, audit_hook=audit_hook, workdir=tmp_path)
    assert "RAN" not in result.stdout and not marker.exists()
    assert "returned" not in result.stdout, result.stdout + result.stderr
    if audit_hook:
        assert result.blocked_event == "os.system"
    else:  # seccomp kills the process at its first fork/clone/execve: SIGSYS, not catchable
        assert (
            result.exit_code == -31
            and result.killed_reason == "blocked"
            and result.blocked_event == "seccomp"
        )
        assert result.stdout.strip() == "", result.stdout  # os.system never returned
    assert sandbox_processes(str(tmp_path)) == []


# --- network ------------------------------------------------------------------------------------


@needs_bwrap
@hook_on_off
def test_setns_into_the_parents_network_namespace_fails(audit_hook):
    parent_net = os.stat("/proc/self/ns/net").st_ino
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code = textwrap.dedent(f"""
            import ctypes, os, socket, sys
            CLONE_NEWNET = 0x40000000
            candidates = ["/proc/{os.getpid()}/ns/net", "/proc/1/ns/net", "/proc/self/ns/net"]
            candidates += ["/proc/%s/ns/net" % p for p in os.listdir("/proc") if p.isdigit()]
            fds = []
            for path in candidates:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError as exc:
                    print("no", path, type(exc).__name__)
                    continue
                if os.fstat(fd).st_ino == {parent_net}:
                    print("PARENT_NS_FOUND", path)
                fds.append(fd)
            print("setns next", flush=True)
            libc = ctypes.CDLL(None, use_errno=True)
            for fd in fds:  # the sandbox's own namespace: still an escape primitive, killed
                print("setns", libc.setns(fd, CLONE_NEWNET), ctypes.get_errno(), flush=True)
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("CONNECTED")
        """)
        result = contained(code, audit_hook=audit_hook)
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert "PARENT_NS_FOUND" not in result.stdout and "CONNECTED" not in result.stdout
    # The parent's PID does not exist in the sandbox's PID namespace (with the hook: refused first).
    refusal = "SandboxViolation" if audit_hook else "FileNotFoundError"
    assert f"no /proc/{os.getpid()}/ns/net {refusal}" in result.stdout, result.stdout
    assert not result.ok and result.killed_reason == "blocked"
    if audit_hook:
        assert result.blocked_event == "open" and "'ctypes.dlopen' is not allowed" in result.stderr
    else:  # the seccomp filter kills the process at setns(): SIGSYS, no way to catch it
        assert result.exit_code == -31 and result.blocked_event == "seccomp", result
        assert "setns next" in result.stdout and "setns -1" not in result.stdout


@needs_bwrap
def test_plain_socket_without_the_hook_reaches_nothing():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')"
        result = contained(code, audit_hook=False)
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):
            listener.accept()
    assert "CONNECTED" not in result.stdout and not result.ok
    assert "PermissionError" in result.stderr  # seccomp refuses AF_INET sockets


# --- files the kernel must keep in the sandbox ---------------------------------------------------


@needs_bwrap
@hook_on_off
def test_sqlite_database_outside_is_not_created(tmp_path, audit_hook):
    visible, hidden = tmp_path / "ro", tmp_path / "hidden"
    visible.mkdir()
    hidden.mkdir()
    code = textwrap.dedent(f"""
        import sqlite3
        for path in ({str(visible / "x.db")!r}, {str(hidden / "x.db")!r}, "/outside/x.db", "file:/etc/x.db?mode=rwc"):
            try:
                con = sqlite3.connect(path, uri=path.startswith("file:"))
                con.execute("create table t (x)")
                con.commit()
                print("CREATED", path)
            except Exception as exc:
                print("refused", path, type(exc).__name__)
        sqlite3.connect(":memory:").execute("select 1")
        sqlite3.connect("inside.db").execute("create table t (x)")
        print("inside ok")
    """)
    result = contained(code, audit_hook=audit_hook, readonly_paths=[visible])
    assert "CREATED" not in result.stdout, result.stdout
    assert "inside ok" in result.stdout, result.stderr
    assert list(visible.iterdir()) == [] and list(hidden.iterdir()) == []
    assert not Path("/outside/x.db").exists()
    if audit_hook:
        assert result.blocked_event == "sqlite3.connect"


@needs_bwrap
@hook_on_off
def test_dev_shm_leaves_nothing_behind(audit_hook):
    name = f"oat_escape_{uuid.uuid4().hex}"
    code = textwrap.dedent(f"""
        import ctypes, os
        try:
            import _posixshmem
            fd = _posixshmem.shm_open("/{name}", os.O_CREAT | os.O_RDWR, 0o600)
            os.write(fd, b"x" * 500_000)
            print("shm_open wrote")
        except Exception as exc:
            print("shm_open refused", type(exc).__name__)
        try:
            with open("/dev/shm/{name}", "wb") as f:
                f.write(b"x" * 500_000)
            print("WROTE /dev/shm")
        except Exception as exc:
            print("open refused", type(exc).__name__)
    """)
    try:
        result = contained(code, audit_hook=audit_hook)
        assert "shm_open refused PermissionError" in result.stdout  # replaced by the bootstrap
        if not audit_hook:
            assert "WROTE /dev/shm" in result.stdout  # ... into the sandbox's private /dev/shm
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")


@needs_bwrap
@hook_on_off
def test_bootstrap_ctypes_handle_is_not_reachable_from_main(audit_hook):
    code = textwrap.dedent("""
        import sys, ctypes
        import __main__
        found = [k for k, v in vars(__main__).items() if isinstance(v, ctypes.CDLL)]
        frame = sys._getframe()
        while frame is not None:
            for scope in (frame.f_globals, frame.f_locals):
                found += [k for k, v in scope.items() if isinstance(v, ctypes.CDLL)]
            frame = frame.f_back
        print("HANDLES", found, "main is ours:", vars(__main__) is globals(), flush=True)
        libc = ctypes.CDLL(None, use_errno=True)  # the code's own handle: refused, or useless
        print("unshare", libc.unshare(0x10000000 | 0x00020000), flush=True)
        print("STILL RUNNING")
    """)
    result = contained(code, audit_hook=audit_hook)
    assert "HANDLES [] main is ours: True" in result.stdout, result.stdout + result.stderr
    assert "STILL RUNNING" not in result.stdout and not result.ok
    assert result.killed_reason == "blocked"
    assert result.blocked_event == ("ctypes.dlopen" if audit_hook else "seccomp")


@needs_bwrap
@hook_on_off
def test_disk_writes_beyond_the_cap_fail(audit_hook):
    code = textwrap.dedent("""
        import errno, os
        chunk = b"x" * 2**20
        written = {"/sandbox": 0, "/dev/shm": 0}
        for base in written:
            try:
                for i in range(100):
                    with open(f"{base}/f{i}", "wb") as f:
                        f.write(chunk)
                    written[base] += len(chunk)
            except OSError as exc:
                print(base, "stopped:", errno.errorcode.get(exc.errno), type(exc).__name__)
        print("WRITTEN", written)
    """)
    start = time.monotonic()
    result = contained(code, audit_hook=audit_hook, max_disk_mb=8, max_file_mb=2)
    assert time.monotonic() - start < 20
    assert "/sandbox stopped: ENOSPC" in result.stdout, result.stdout + result.stderr
    written = eval(result.stdout.split("WRITTEN ", 1)[1].splitlines()[0])  # noqa: S307 -- a dict we printed
    assert written["/sandbox"] <= 8 * 2**20
    assert written["/dev/shm"] <= 2**20  # an eighth of the cap, at least 1 MiB
    if not audit_hook:
        assert "/dev/shm stopped: ENOSPC" in result.stdout


@needs_bwrap
def test_nothing_survives_a_timeout(tmp_path):
    code = "import threading, time\nfor _ in range(4):\n    threading.Thread(target=time.sleep, args=(60,)).start()\ntime.sleep(60)"
    result = contained(code, workdir=tmp_path, timeout_s=2.0)
    assert result.timed_out and result.killed_reason == "timeout"
    assert sandbox_processes(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []


# --- through the env wrapper: the caller hears about it ------------------------------------------


def tool_env(**sandbox_kwargs) -> PythonToolWrapper:
    env = PythonToolWrapper(gym.make("oat/Arithmetic-v0"), max_tool_calls=8, sandbox_kwargs=sandbox_kwargs)
    env.reset(seed=0)
    return env


@pytest.mark.parametrize(
    "bad", ["print(1)\x00", "print('\ud800')", "\udcff"], ids=["nul", "surrogate", "lone"]
)
def test_wrapper_turns_unrunnable_code_into_a_tool_error(bad):
    env = tool_env()
    obs, reward, terminated, truncated, info = env.step(f"```python\n{bad}\n```")
    assert info["tool_errors"] == 1 and info["tool_calls"] == 1 and info["tool_exit_code"] == 1
    assert "the code was not run" in info["tool_output"]
    assert ("NUL" in info["tool_output"]) == ("\x00" in bad)
    assert (reward, terminated, truncated) == (0.0, False, False)
    _, _, _, _, info = env.step("```python\nprint(6 * 7)\n```")  # the env is still usable
    assert info["tool_output"] == "42" and info["tool_errors"] == 1


@needs_bwrap
@pytest.mark.parametrize(
    "attack",
    [
        "import ctypes\nctypes.CDLL(None).setns(0, 0x40000000)",
        "open('/usr/oat_escape', 'w').write('x')",
        "import os\nos.system('id')",
    ],
    ids=["setns", "write-outside", "os.system"],
)
@hook_on_off
def test_wrapper_reports_blocked_attacks_as_tool_errors(attack, audit_hook):
    kwargs = {} if audit_hook else {"_audit_hook": False}
    env = tool_env(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)  # the no-hook runs say so, checked below
        _, _, _, _, info = env.step(f"```python\n{attack}\n```")
    assert info["tool_errors"] == 1 and info["tool_exit_code"] != 0, info
    assert info["tool_killed_reason"] == "blocked" or "Error" in info["tool_output"]
    assert info["tool_missing_layers"] == (() if audit_hook else ("audit-hook",))
    assert set(FULL_CONTAINMENT) - {"audit-hook"} <= set(info["tool_containment"])
    assert not Path("/usr/oat_escape").exists()
    if audit_hook:
        assert info["tool_blocked"] == 1


# --- degraded containment: loud, flagged, refusable -----------------------------------------------


def test_degraded_containment_is_reported_loudly():
    with pytest.warns(SandboxDegradedWarning, match="mount-namespace") as caught:
        result = run_python("print('ran')", bwrap=False)
    assert result.stdout == "ran\n" and result.launcher == "process"
    assert result.degraded
    for layer in ("mount-namespace", "disk-quota", "ipc-namespace", "uts-namespace"):
        assert layer in result.missing_layers and layer not in result.containment
    assert {"seccomp", "rlimits", "audit-hook"} <= set(result.containment)  # what still holds
    assert any("bwrap=False" in note for note in result.containment_notes)
    assert "bwrap=False" in str(caught[0].message)

    env = PythonToolWrapper(gym.make("oat/Arithmetic-v0"), sandbox_kwargs={"bwrap": False})
    env.reset(seed=0)
    with pytest.warns(SandboxDegradedWarning):
        _, _, _, _, info = env.step("```python\nprint(1)\n```")
    assert "mount-namespace" in info["tool_missing_layers"] and info["tool_output"] == "1"

    if BWRAP is None:  # the default setup on this machine: the same, because bwrap is missing
        with pytest.warns(SandboxDegradedWarning, match="not found"):
            result = run_python("print('ran')")
        assert "mount-namespace" in result.missing_layers
        assert any("not found" in note for note in result.containment_notes)


def test_required_layers_refuse_to_run_degraded():
    start = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match="mount-namespace"):
        run_python("import time\ntime.sleep(5)", bwrap=False, require=FULL_CONTAINMENT)
    assert time.monotonic() - start < 4  # the code was not run
    with pytest.raises(ValueError, match="unknown containment layers"):
        run_python("1", require=["moat"])


@needs_bwrap
def test_full_containment_can_be_required():
    result = run_python("print('ok')", require=FULL_CONTAINMENT)
    assert (
        result.ok
        and result.missing_layers == ()
        and result.containment[: len(FULL_CONTAINMENT)] == FULL_CONTAINMENT
    )


@needs_bwrap
@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK), reason="needs root and /usr/bin/python3"
)
def test_unprivileged_caller_gets_the_user_namespace_sandbox():
    """As a non-root caller (here: 'nobody' running Debian's python3 on a copy of this package), bwrap
    maps uid 65534 of a user namespace onto that user; the same attacks fail."""
    shared = Path(tempfile.mkdtemp(prefix="oat-unpriv-", dir="/tmp"))  # readable by nobody
    try:
        shared.chmod(0o755)
        package = shared / "sandbox_copy"
        package.mkdir()
        package.chmod(0o755)
        for source in Path(sandbox.__file__).parent.glob("*.py"):
            shutil.copy(source, package / source.name)
            (package / source.name).chmod(0o644)
        script = textwrap.dedent(f"""
            import importlib.util, json, sys
            spec = importlib.util.spec_from_file_location(
                "sb", {str(package / "__init__.py")!r}, submodule_search_locations=[{str(package)!r}])
            sb = sys.modules["sb"] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sb)
            r = sb.run_python(
                "import os, ctypes\\n"
                "try:\\n    open('/usr/x', 'w')\\nexcept OSError as e:\\n    print(e.strerror)\\n"
                "print(os.getuid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), flush=True)\\n"
                "ctypes.CDLL(None).unshare(0x10000000)\\n", _audit_hook=False)
            print(json.dumps([r.launcher, r.missing_layers, r.containment_notes, r.stdout, r.exit_code,
                              r.blocked_event]))
        """)
        out = subprocess.run(
            ["/usr/bin/python3", "-I", "-W", "ignore", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            user=65534,
            group=65534,
            extra_groups=[],
            cwd="/",
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    launcher, missing, notes, stdout, exit_code, blocked = json.loads(out.stdout.strip().splitlines()[-1])
    if launcher != "bwrap-userns":
        pytest.skip(f"bwrap could not create a user namespace for an unprivileged user here: {notes}")
    assert missing == ["audit-hook"], notes
    assert stdout.splitlines()[:2] == ["Read-only file system", "65534 [1, 2]"]
    assert exit_code == -31 and blocked == "seccomp"
