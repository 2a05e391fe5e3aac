"""The code the sandboxed interpreter runs (``python -I -c BOOTSTRAP CONFIG``), as source text.

:data:`_BOOTSTRAP` is never imported into the parent; it is assembled here, in the order it runs,
from the setup below, :data:`~oat_env.sandbox.seccomp._SECCOMP_SOURCE`, the relay below,
:data:`~oat_env.sandbox.probe._LAYERS_SOURCE`, :data:`~oat_env.sandbox.hook._HOOK_SOURCE` and the
tail below (which installs the hook and runs the user code). ``_BOOTSTRAP_HEAD`` is everything
before the hook.
"""

from .hook import _HOOK_SOURCE
from .probe import _LAYERS_SOURCE
from .seccomp import _SECCOMP_SOURCE

# The bootstrap the sandboxed interpreter runs (via ``-c``); argv[1] is a JSON config. It drops to
# the sandbox uid (bwrap as root), sets the limits, enters the namespaces (no-bwrap fallback), forks
# a relay, installs the seccomp filter, checks which layers are in force, installs the audit hook,
# then execs the user code in a fresh ``__main__`` module. It talks to the parent through an
# append-only status file: "boot", "layer NAME", "refused NAMES", "ready", "blocked EVENT",
# "reason memory|output|cpu", "exit CODE" (the relay, after the code's process has died).
_BOOTSTRAP_SETUP = r"""
import json, os, sys
cfg = json.loads(sys.argv[1])
sys.argv = ["<tool>"]
_status_fd = cfg["status_fd"]

def _note(line, _write=os.write, _fd=_status_fd, _OSError=OSError):
    try:
        _write(_fd, ("%s\n" % line).encode("utf-8", "backslashreplace"))
    except _OSError:
        pass

_note("boot")  # the launcher worked: from here on, a failure is the code's (or the bootstrap's)
import errno, linecache, resource, signal, traceback, types

with os.fdopen(cfg["code_fd"], "r", encoding="utf-8") as _f:
    _source = _f.read()

_uid = cfg["drop_uid"]
if _uid is not None:
    # bwrap ran as root with only CAP_CHOWN/SETGID/SETUID: hand the writable tmpfs mounts to the
    # sandbox uid, then drop to it for good (all capabilities go with the uid change).
    try:
        for _p in cfg["chown"]:
            os.chown(_p, _uid, _uid)
        os.setgroups([])
        os.setresgid(_uid, _uid, _uid)
        os.setresuid(_uid, _uid, _uid)
    except OSError as _exc:
        _note("drop-failed %s" % _exc)

_rlimits_ok = True

def _limit(res, soft, hard=None):
    global _rlimits_ok
    try:
        resource.setrlimit(res, (soft, soft if hard is None else hard))
    except (ValueError, OSError) as exc:
        _rlimits_ok = False
        _note("rlimit-failed %s %s" % (res, exc))

_limit(resource.RLIMIT_CORE, 0)
_limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
_limit(resource.RLIMIT_AS, cfg["memory_bytes"])
_limit(resource.RLIMIT_FSIZE, cfg["fsize_bytes"])
_limit(resource.RLIMIT_NOFILE, cfg["nofile"])

# ctypes is imported here, before the hook refuses every ctypes.* event, so that later
# `import ctypes` by user code (or numpy) finds it in sys.modules instead of failing. The libc
# handle is deleted before the user code runs.
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)

def _prctl(option, arg):
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))

_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000

def _unshare(flags):
    return _libc.unshare(ctypes.c_int(flags)) == 0

if cfg["unshare"] and sys.platform.startswith("linux"):
    # No bwrap: namespaces from the bootstrap itself (net + pid; a user namespace when not root).
    # The relay forked below then stays outside the new PID namespace and the code is its PID 1.
    _user = 0 if os.geteuid() == 0 else _CLONE_NEWUSER
    if not _unshare(_user | _CLONE_NEWNET | _CLONE_NEWPID) and not _unshare(_user | _CLONE_NEWNET):
        _note("unshare-failed errno %d" % ctypes.get_errno())
"""

_BOOTSTRAP_RELAY = r"""
# The relay: it runs no user code, reports how the code's process ended ("exit CODE") and ends the
# same way. Always used, so that the exit status is exact even when bwrap's PID 1 is in between.
_relay_pid = os.getpid()
_code_pid = os.fork()
if _code_pid:
    _prctl(4, 0)  # PR_SET_DUMPABLE 0: the code cannot open the relay's /proc/1/mem
    if _uid is not None:  # a uid change clears the parent-death signal that bwrap set
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    _seccomp()
    while True:
        try:
            _, _st = os.waitpid(_code_pid, 0)
            break
        except InterruptedError:
            continue
    _rc = os.waitstatus_to_exitcode(_st)
    _note("exit %d" % _rc)
    if _rc < 0:
        if os.getpid() != 1:  # PID 1 of a namespace cannot kill itself with a default-action signal
            try:
                signal.signal(-_rc, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
            os.kill(os.getpid(), -_rc)
        os._exit(128 - _rc)
    os._exit(_rc & 0xFF)

# The code's process.
_prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: it dies with the relay
if os.getppid() not in (_relay_pid, 0):
    os._exit(1)  # the relay died before PR_SET_PDEATHSIG took effect
_limit(resource.RLIMIT_NPROC, cfg["nproc"])
if os.getpid() == 1:
    # PID 1 of a namespace ignores signals it has no handler for, SIGXCPU (soft RLIMIT_CPU)
    # included, so exit explicitly; if the code replaces this handler, the hard limit's
    # SIGKILL (which the kernel forces) ends it one second later.
    def _on_xcpu(signum, frame, _note=_note, _write=os.write, _exit=os._exit):
        _note("reason cpu")
        _write(2, b"\n[sandbox] CPU time limit exceeded\n")
        _exit(128 + 24)

    signal.signal(signal.SIGXCPU, _on_xcpu)

import _posixsubprocess

def _no_fork_exec(*args, _note=_note, _error=PermissionError, **kwargs):
    _note("blocked _posixsubprocess.fork_exec")
    raise _error("[sandbox] process creation is not allowed (_posixsubprocess.fork_exec)")

def _no_shm_open(*args, _note=_note, _error=PermissionError, **kwargs):
    _note("blocked _posixshmem.shm_open")
    raise _error("[sandbox] POSIX shared memory is not allowed (_posixshmem.shm_open)")

_posixsubprocess.fork_exec = _no_fork_exec
try:
    import _posixshmem
    _posixshmem.shm_open = _no_shm_open
except ImportError:
    pass
sys.dont_write_bytecode = True

# shutil.rmtree's fd-based walk opens directories (refused below); the path-based walk it falls back
# to is checked event by event, so tempfile.TemporaryDirectory and rmtree inside the sandbox work.
import shutil
shutil._use_fd_functions = False

_seccomp_ok = _seccomp()
"""

_BOOTSTRAP_HEAD = _BOOTSTRAP_SETUP + _SECCOMP_SOURCE + _BOOTSTRAP_RELAY + _LAYERS_SOURCE

_BOOTSTRAP_TAIL = r"""
if cfg["audit_hook"]:
    sys.addaudithook(_make_hook(cfg["root"], frozenset(cfg["writable_files"]), _note, (_no_fork_exec, _no_shm_open)))
    _note("layer audit-hook")
# Nothing of the bootstrap's that could help an escape stays reachable from the user code's frames.
del _make_hook, _libc, _prctl, _install_seccomp, _seccomp, _seccomp_program, _unshare, _layers, _limit

_FILENAME = "<tool>"
linecache.cache[_FILENAME] = (len(_source), None, _source.splitlines(True), _FILENAME)
try:
    _code = compile(_source, _FILENAME, "exec")
except SyntaxError:
    traceback.print_exc(limit=0)
    sys.stderr.flush()
    os._exit(1)

_main = types.ModuleType("__main__")
_main.__builtins__ = __builtins__
sys.modules["__main__"] = _main  # `import __main__` gets the code's own namespace
_note("ready")  # status lines after this one may come from the user code (it holds the fd)
_rc = 0
try:
    exec(_code, _main.__dict__)
except SystemExit as _exc:
    if _exc.code is None:
        _rc = 0
    elif isinstance(_exc.code, int):
        _rc = _exc.code
    else:
        print(_exc.code, file=sys.stderr)
        _rc = 1
except BaseException as _exc:
    _rc = 1
    if isinstance(_exc, MemoryError):
        _note("reason memory")
    elif isinstance(_exc, OSError) and _exc.errno == errno.EFBIG:
        _note("reason output")
    try:
        # Hide the bootstrap's own frames (filename "<string>"): the model should see its code only.
        _te = traceback.TracebackException(type(_exc), _exc, _exc.__traceback__, compact=True)
        _seen, _todo = set(), [_te]
        while _todo:
            _t = _todo.pop()
            if _t is None or id(_t) in _seen:
                continue
            _seen.add(id(_t))
            _t.stack = traceback.StackSummary.from_list([f for f in _t.stack if f.filename != "<string>"])
            _todo += [_t.__cause__, _t.__context__]
        sys.stderr.write("".join(_te.format()))
    except BaseException:
        pass
for _stream in (sys.stdout, sys.stderr):
    try:
        _stream.flush()
    except OSError as _exc:
        if _exc.errno == errno.EFBIG:
            _note("reason output")
        _rc = _rc or 1
    except BaseException:
        _rc = _rc or 1
os._exit(_rc & 0xFF)
"""

_BOOTSTRAP = _BOOTSTRAP_HEAD + _HOOK_SOURCE + _BOOTSTRAP_TAIL
