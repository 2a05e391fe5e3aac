"""Run untrusted Python (model-written tool code) in a locked-down subprocess.

:func:`run_python` executes ``code`` in a fresh interpreter and returns a :class:`SandboxResult`.
The code is treated as hostile. The boundary is built from the operating system; the in-process
audit hook is only defence in depth. Layer by layer (names as in ``SandboxResult.containment``):

1. **Mount namespace** (``mount-namespace``, ``disk-quota``; needs bubblewrap, ``bwrap``). The code
   sees a new root with, read-only: ``/usr`` (and the ``/bin``, ``/lib*`` links into it), the
   interpreter's own directories (its prefix, a venv and its base installation), a few files of
   ``/etc`` (``ld.so.cache``, ``ld.so.conf*``, ``localtime``), a synthetic ``/etc/passwd`` and
   ``/etc/group``, and ``readonly_paths``; a private ``/proc`` of its own PID namespace; a minimal
   ``/dev`` (null, zero, full, random, urandom, tty, a new devpts); nothing else of the host
   (no home directories, no ``/etc/shadow``, no ``/tmp``, no ``/run``, no ``/sys``, no repo). The
   root and ``/dev`` are remounted read-only. The only writable places are two tmpfs mounts,
   capped in size: ``/sandbox`` (the working directory, ``HOME``, ``TMPDIR``; ``max_disk_mb``) and
   ``/dev/shm`` (an eighth of that, at least 1 MiB). Both vanish with the namespace. The command
   line is built by :func:`_bwrap_argv`::

       bwrap --unshare-pid --unshare-net --unshare-ipc --unshare-uts --unshare-cgroup-try \\
             --cap-drop ALL --cap-add CAP_SETUID --cap-add CAP_SETGID --cap-add CAP_CHOWN \\
             --die-with-parent --new-session --as-pid-1 --hostname sandbox --info-fd FD \\
             --dir PARENT... --ro-bind /usr /usr --symlink usr/lib /lib ... \\
             --ro-bind /etc/ld.so.cache /etc/ld.so.cache ... \\
             --ro-bind-data FD /etc/passwd --ro-bind-data FD /etc/group \\
             --ro-bind PYTHON_DIR PYTHON_DIR ... --proc /proc --dev /dev \\
             --size SHM --tmpfs /dev/shm --size DISK --perms 0700 --tmpfs /sandbox \\
             --remount-ro /dev --remount-ro / --chdir /sandbox -- PYTHON -I -c BOOTSTRAP CONFIG

   (as root; as another user ``--unshare-all --unshare-user --disable-userns --uid 65534 --gid
   65534 --cap-drop ALL`` replace the first two lines).
2. **Unprivileged uid, no capabilities** (``unprivileged-uid``, ``no-capabilities``). As root, bwrap
   keeps only CAP_CHOWN/SETGID/SETUID, with which the bootstrap gives the tmpfs mounts to uid
   65534 and then drops to uid/gid 65534 for good (no supplementary groups; the uid change clears
   every capability). As another user, bwrap maps uid 65534 of a new user namespace to that user,
   with no capabilities, and forbids further user namespaces. ``no_new_privs`` is set either way.
   From inside, the host uid is read from ``/proc/self/uid_map`` (in a user namespace made by a
   non-root parent it is the parent's uid, the only one such a namespace can map) and must not be
   0; the capabilities (effective, permitted, ambient) are read from ``/proc/self/status``.
3. **Namespaces** (``net-namespace``, ``pid-namespace``, ``ipc-namespace``, ``uts-namespace``, and
   where available ``cgroup-namespace``, ``user-namespace``). No network interface but a downed
   loopback: no connection reaches any host, the local one and the parent's loopback listeners
   included. In the PID namespace the bootstrap's relay is PID 1 (``--as-pid-1``) and the code
   PID 2: the parent's and every other host process are invisible, so ``/proc/<pid>/environ``
   of the trainer cannot even be named. When PID 1 exits or is killed, the kernel kills the rest,
   and ``--die-with-parent`` kills PID 1 when bwrap dies. Each namespace is verified from inside
   (its inode differs from the parent's).
4. **seccomp** (``seccomp``; x86_64 and aarch64). A BPF filter built and installed by the
   bootstrap itself (``prctl(PR_SET_SECCOMP)`` after ``no_new_privs``; inherited by every thread,
   not removable) just before the code runs -- in every mode, bwrap or not. (bwrap's
   ``--seccomp FD`` is not used: a filter bwrap loads is in force before bwrap execs the
   interpreter, so it could not forbid ``execve``.) It *kills* the process (SIGSYS: reported as
   ``killed_reason="blocked"``, ``blocked_event="seccomp"``, exit code -31; it cannot be caught
   and ignored) on escape primitives -- ``setns``, ``unshare``, ``mount`` and the new mount API,
   ``pivot_root``, ``chroot``, ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
   ``bpf``, ``perf_event_open``, ``userfaultfd``, ``open_by_handle_at``, keyrings, ``io_uring``,
   modules, ``kexec``, ``reboot``, swap, ``acct``, ``quotactl``, ``iopl``/``ioperm``, any other
   ABI (i386, x32) -- and on what the audit hook refuses anyway, so that only code that got past
   the hook meets it: ``fork``, ``vfork``, ``clone`` unless it makes a thread (``CLONE_THREAD``
   without a namespace flag), ``execve``, ``execveat``, ``tkill``, and ``kill``/``tgkill``/
   ``rt_*sigqueueinfo`` aimed at another process. ``clone3`` gets ENOSYS (threads then fall back
   to ``clone``). It refuses with EPERM: sockets (all of them without bwrap; only AF_UNIX with it,
   where the mount and network namespaces hide every host socket), device nodes (``mknod`` of
   S_IFCHR/S_IFBLK), SysV ``shmget``/``msgget`` (memory outside RLIMIT_AS), pidfds,
   ``TIOCSTI``/``TIOCLINUX``, and host-wide settings (clock, hostname, scheduler policy,
   ``syslog``, fanotify, ``name_to_handle_at``, ``kcmp``, ``process_madvise``).
5. **Resource limits** (``rlimits``; set by the bootstrap before any user code): ``RLIMIT_CPU``
   (SIGXCPU, then SIGKILL one second later), ``RLIMIT_AS`` (allocations fail with
   ``MemoryError``), ``RLIMIT_FSIZE`` (caps every file the code writes, the output files
   included), ``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0`` and, for the code's process,
   ``RLIMIT_NPROC``. The disk use is capped by the tmpfs sizes (layer 1).
6. **Audit hook** (``audit-hook``; :pep:`578`, installed last, before the user code; Python offers
   no way to remove it). It refuses -- raising ``SandboxViolation`` (a ``PermissionError``) in
   the user code -- sockets and name lookups, process creation and signalling, ``ctypes.*``,
   ``resource.setrlimit``/``prlimit``, ``gc.get_objects``/``get_referrers``/``get_referents``,
   ``sys.settrace``/``setprofile``, replacing a function's ``__code__``/``__defaults__``/
   ``__kwdefaults__``, sqlite extension loading and ``sqlite3.connect`` to a database outside the
   working directory, and any filesystem modification outside it (``open`` for writing,
   ``os.remove``/``rename``/``rmdir``/``mkdir``/``symlink``/``link``/``chmod``/``chown``/
   ``truncate``/``utime``/``setxattr``/``removexattr``; paths resolved with symlinks, ``dir_fd``
   through ``/proc/self/fd``; ``os.open`` of a directory refused), opening block devices,
   writing devices other than ``/dev/null``, and another process's ``/proc/<pid>``.
   ``_posixsubprocess.fork_exec`` and ``_posixshmem.shm_open`` are replaced by refusals. The
   hook's functions keep their state in default arguments (immutable values and C functions),
   use no closures and look up no global or builtin name, so the frames that a
   ``SandboxViolation`` traceback exposes give nothing to overwrite. The first refused event is
   reported as ``blocked_event``. The user code runs in a fresh ``__main__`` module; the
   bootstrap's ctypes handle is deleted before it starts.
7. **Process and parent.** A new ``python -I`` (isolated mode) runs a small bootstrap
   (:data:`_BOOTSTRAP`) that reads the user code from an inherited file descriptor. A relay
   process (no user code; not dumpable, also under seccomp) waits for the code's process and
   reports its exact exit status. The child gets a scrubbed environment (no tokens or API keys),
   stdin ``/dev/null``, and stdout/stderr go to files in a fresh host temp dir, deleted
   afterwards, so a flood cannot fill the parent's memory. A hard wall-clock timeout; when it
   expires, or as soon as the run ends, the launcher's process group gets ``SIGKILL`` and the
   sandbox's PID 1 (named by bwrap's ``--info-fd``, held through a pidfd checked to be the
   launcher's child) is killed and waited for, so nothing of the run outlives
   :func:`run_python`. The parent waits on pidfds (no signals, no SIGCHLD handler), so
   :func:`run_python` is safe to call from many threads at once.

**Degraded modes -- never silent.** Each layer is reported in ``SandboxResult.containment`` only if
it was checked to be in force from inside the sandbox before the code ran;
``SandboxResult.missing_layers`` lists the layers of :data:`FULL_CONTAINMENT` that were not, with
the reasons in ``containment_notes``, and a :class:`SandboxDegradedWarning` is issued. Pass
``require=FULL_CONTAINMENT`` (or some layers) to refuse instead: :class:`SandboxUnavailableError`
is raised and the code is not run. Without bwrap (not installed, ``bwrap=False``, or it fails to
start -- e.g. user namespaces disabled for a non-root user -- in which case the run falls back
by itself), the code runs as a plain subprocess of the parent's uid: no mount namespace (the
whole host filesystem is *readable* to the extent the parent's uid can read it; writes outside
the temp dir are refused by the audit hook only), no disk quota (only the per-file
RLIMIT_FSIZE), no sandbox uid (as root: root with all capabilities), no IPC/UTS namespaces, the
host's ``/proc`` (the parent's ``/proc/<pid>/environ`` is refused by the audit hook only); the
bootstrap still enters new network and PID namespaces when the kernel allows it (root, or a user
namespace), and seccomp (no process creation or execution, no sockets, no namespace or mount
changes), rlimits and the audit hook stay. So code that defeats the audit hook there can read and
write whatever the parent's uid can. ``namespaces=False`` gives that mode without the network and
PID namespaces.

**Not contained, even with every layer:** the code can read everything mounted read-only (the
Python installation and its site-packages, ``/usr``); it shares the host kernel (a kernel bug
reachable through the allowed syscalls is an escape; the filter is a deny-list); it can use
CPU up to the limits, memory up to RLIMIT_AS plus the tmpfs sizes, and can make threads (as
root, RLIMIT_NPROC counts the processes of host uid 65534 as a whole, other sandboxes included;
in a user namespace, those of the namespace); timing side channels; the inherited
stdout/stderr/status files (it can write its own output and status lines, so it can misreport
its own ``blocked_event``/``killed_reason``, never the layers, which are read from lines written
before it ran). There is no cgroup: memory pressure and CPU share are not isolated from other
jobs. The audit hook alone is *not* a security boundary (a thread can race a path check, and the
code can rewrite its own memory through ``/proc/self/mem``); whatever it refuses that could reach
the host is also stopped by the layers above, except in the degraded modes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KilledReason = Literal["timeout", "cpu", "memory", "output", "blocked"]

TRUNCATION_MARKER = "\n...[truncated: the first {shown} characters of {size} bytes shown]"
STDERR_TRUNCATION_MARKER = "...[truncated: the last {shown} characters of {size} bytes shown]\n"

#: Every layer the sandbox can put in place, in the order it reports them.
FULL_CONTAINMENT: tuple[str, ...] = (
    "mount-namespace",
    "disk-quota",
    "unprivileged-uid",
    "no-capabilities",
    "net-namespace",
    "pid-namespace",
    "ipc-namespace",
    "uts-namespace",
    "seccomp",
    "rlimits",
    "audit-hook",
)
#: All layer names :attr:`SandboxResult.containment` may hold (the last two are not required).
CONTAINMENT_LAYERS: tuple[str, ...] = FULL_CONTAINMENT + ("user-namespace", "cgroup-namespace")

SANDBOX_UID = 65534  # "nobody": the uid (and gid) the code runs as under bwrap
SANDBOX_DIR = "/sandbox"  # the code's working directory under bwrap (a size-capped tmpfs)
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
_PASSWD = (
    b"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    b"sandbox:x:65534:65534:sandbox:/sandbox:/usr/sbin/nologin\n"
)
_GROUP = b"root:x:0:\nsandbox:x:65534:\n"


class SandboxDegradedWarning(RuntimeWarning):
    """Some containment layer was not in force for a run (see ``SandboxResult.missing_layers``)."""


class SandboxUnavailableError(RuntimeError):
    """A layer named in ``run_python(require=...)`` could not be put in place; the code did not run."""


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

# The bootstrap the sandboxed interpreter runs (via ``-c``); argv[1] is a JSON config. It drops to
# the sandbox uid (bwrap as root), sets the limits, enters the namespaces (no-bwrap fallback), forks
# a relay, installs the seccomp filter, checks which layers are in force, installs the audit hook,
# then execs the user code in a fresh ``__main__`` module. It talks to the parent through an
# append-only status file: "boot", "layer NAME", "refused NAMES", "ready", "blocked EVENT",
# "reason memory|output|cpu", "exit CODE" (the relay, after the code's process has died).
_BOOTSTRAP_HEAD = r"""
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

# Syscall numbers (x86_64, aarch64) for the seccomp filter; None: the syscall does not exist there.
_NR = {
    "setns": (308, 268), "unshare": (272, 97), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "pidfd_getfd": (438, 438),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "bpf": (321, 280),
    "perf_event_open": (298, 241), "userfaultfd": (323, 282), "open_by_handle_at": (304, 265),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "acct": (163, 89),
    "quotactl": (179, 60), "quotactl_fd": (443, 443), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "move_mount": (429, 429), "open_tree": (428, 428),
    "mount_setattr": (442, 442), "iopl": (172, None), "ioperm": (173, None),
    "fork": (57, None), "vfork": (58, None), "execve": (59, 221), "execveat": (322, 281),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "tkill": (200, 130),
    "name_to_handle_at": (303, 264), "lookup_dcookie": (212, 18), "uselib": (134, None),
    "_sysctl": (156, None), "settimeofday": (164, 170), "clock_settime": (227, 112),
    "clock_adjtime": (305, 266), "adjtimex": (159, 171), "syslog": (103, 116), "vhangup": (153, 58),
    "sethostname": (170, 161), "setdomainname": (171, 162), "fanotify_init": (300, 262),
    "fanotify_mark": (301, 263), "process_madvise": (440, 440), "kcmp": (312, 272),
    "sched_setscheduler": (144, 119), "sched_setattr": (314, 274), "shmget": (29, 194),
    "msgget": (68, 186), "nfsservctl": (180, 42),
    "clone3": (435, 435), "clone": (56, 220), "kill": (62, 129), "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240), "socket": (41, 198),
    "mknod": (133, None), "mknodat": (259, 33), "ioctl": (16, 29),
}
# Escape primitives, and process creation/execution/signals that the audit hook would have refused
# (so only code that got past the hook gets here): the process is killed (SIGSYS), so the caller
# always sees the failure -- it cannot be caught and ignored.
_SECCOMP_KILL = (
    "fork", "vfork", "execve", "execveat", "tkill",
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
    "process_vm_writev", "pidfd_getfd", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at",
    "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "iopl", "ioperm",
)
# Refused with EPERM: host-wide settings, SysV shm/msg (memory outside RLIMIT_AS), pidfds.
_SECCOMP_EPERM = (
    "pidfd_open", "pidfd_send_signal",
    "name_to_handle_at", "lookup_dcookie", "uselib", "_sysctl", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "syslog", "vhangup", "sethostname", "setdomainname",
    "fanotify_init", "fanotify_mark", "process_madvise", "kcmp", "sched_setscheduler",
    "sched_setattr", "shmget", "msgget", "nfsservctl",
)

def _seccomp_program(own_pid, allow_unix_sockets):
    # A classic-BPF seccomp filter (struct sock_filter[]), or None on an unsupported machine.
    import struct
    machine = os.uname().machine
    if machine == "x86_64":
        arch, column = 0xC000003E, 0
    elif machine == "aarch64":
        arch, column = 0xC00000B7, 1
    else:
        return None
    nr = {name: nums[column] for name, nums in _NR.items() if nums[column] is not None}
    LD, JEQ, JSET, AND, RET = 0x20, 0x15, 0x45, 0x54, 0x06
    KILL, ALLOW = 0x80000000, 0x7FFF0000
    EPERM, ENOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    prog = []

    def ins(code, k, jt=0, jf=0):
        prog.append(struct.pack("=HBBI", code, jt, jf, k))

    def rule(name, block):  # block: instructions that end in a return on every path
        if name in nr:
            ins(JEQ, nr[name], 0, len(block))
            for op in block:
                ins(*op)

    def arg(i):  # low 32 bits of argument i (little-endian seccomp_data)
        return 16 + 8 * i

    ins(LD, 4)  # seccomp_data.arch: any other ABI (i386, x32 via a flag below) is killed
    ins(JEQ, arch, 1, 0)
    ins(RET, KILL)
    ins(LD, 0)  # seccomp_data.nr
    if column == 0:
        ins(JSET, 0x40000000, 0, 1)  # x32 syscalls
        ins(RET, KILL)
    for name in _SECCOMP_KILL:
        rule(name, [(RET, KILL)])
    for name in _SECCOMP_EPERM:
        rule(name, [(RET, EPERM)])
    rule("clone3", [(RET, ENOSYS)])  # glibc falls back to clone(), whose flags can be checked
    # clone: threads only (CLONE_THREAD, no namespace flag); anything else kills.
    rule("clone", [(LD, arg(0)), (JSET, 0x7E020080, 1, 0), (JSET, 0x00010000, 1, 0), (RET, KILL),
                   (RET, ALLOW)])
    # kill/tgkill/sigqueue: to the own process only (raise(), abort(), pthread_kill); else killed.
    rule("kill", [(LD, arg(0)), (JEQ, own_pid, 0, 1), (RET, ALLOW), (RET, KILL)])
    for name in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        rule(name, [(LD, arg(0)), (JEQ, own_pid, 0, 1), (RET, ALLOW), (RET, KILL)])
    if allow_unix_sockets:  # AF_UNIX only, and only where mount + net namespaces hide the host's
        rule("socket", [(LD, arg(0)), (JEQ, 1, 0, 1), (RET, ALLOW), (RET, EPERM)])
    else:
        rule("socket", [(RET, EPERM)])
    for name, index in (("mknod", 1), ("mknodat", 2)):  # no device nodes
        rule(name, [(LD, arg(index)), (AND, 0o170000), (JEQ, 0o020000, 1, 0), (JEQ, 0o060000, 0, 1),
                    (RET, EPERM), (RET, ALLOW)])
    rule("ioctl", [(LD, arg(1)), (JEQ, 0x5412, 1, 0), (JEQ, 0x541C, 0, 1), (RET, EPERM), (RET, ALLOW)])
    ins(RET, ALLOW)
    return b"".join(prog)

def _install_seccomp(program):
    # prctl(PR_SET_NO_NEW_PRIVS) then prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog); 0 on success.
    class _Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.addressof(buf))
    if _prctl(38, 1) != 0:  # PR_SET_NO_NEW_PRIVS
        return ctypes.get_errno()
    ulong = ctypes.c_ulong
    if _libc.prctl(22, ulong(2), ctypes.byref(fprog), ulong(0), ulong(0)) != 0:  # PR_SET_SECCOMP, FILTER
        return ctypes.get_errno()
    return 0

def _seccomp():
    program = _seccomp_program(os.getpid(), cfg["mount_ns"] and not cfg["unshare"])
    if program is None:
        _note("seccomp-unavailable %s" % os.uname().machine)
        return False
    err = _install_seccomp(program)
    if err:
        _note("seccomp-failed errno %d" % err)
    return not err

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

def _layers():
    # The layers in force, checked from inside (namespace inodes against the parent's, the uid the
    # kernel maps us to on the host, capabilities and seccomp mode from /proc/self/status).
    found = []
    parent = cfg["parent_ns"]
    fresh = {}
    for key in ("mnt", "user", "net", "pid", "ipc", "uts", "cgroup"):
        try:
            fresh[key] = key in parent and os.stat("/proc/self/ns/" + key).st_ino != parent[key]
        except OSError:
            fresh[key] = False
    try:
        ro_root = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
    except OSError:
        ro_root = False
    if cfg["mount_ns"] and fresh["mnt"] and ro_root:
        found.append("mount-namespace")
        try:
            capped = True
            for path, cap in ((cfg["root"], cfg["disk_bytes"]), ("/dev/shm", cfg["shm_bytes"])):
                st = os.statvfs(path)
                capped = capped and 0 < cap and st.f_blocks * st.f_frsize <= cap
            if capped:
                found.append("disk-quota")
        except OSError:
            pass

    def host_id(kind, own):
        # The id one user-namespace level up (the parent's namespace when it created ours).
        try:
            with open("/proc/self/%s_map" % kind) as f:
                for line in f:
                    inside, outside, count = (int(x) for x in line.split())
                    if inside <= own < inside + count:
                        return outside + own - inside
        except (OSError, ValueError):
            pass
        return None

    if fresh["user"] and cfg["parent_uid"] != 0:
        # A user namespace made without privileges can only map the creator's own ids (bwrap may
        # nest two levels, so the map alone does not show the host uid): we are the parent's uid.
        unprivileged = cfg["parent_gid"] != 0
    else:
        uid, gid = host_id("uid", os.geteuid()), host_id("gid", os.getegid())
        unprivileged = uid not in (0, None) and gid not in (0, None)
    if unprivileged:
        found.append("unprivileged-uid")
    status = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
    except OSError:
        pass
    if all(status.get(k, "x").strip("0") == "" for k in ("CapEff", "CapPrm", "CapAmb")):
        found.append("no-capabilities")
    for key, layer in (("net", "net-namespace"), ("pid", "pid-namespace"), ("ipc", "ipc-namespace"),
                       ("uts", "uts-namespace")):
        if fresh[key]:
            found.append(layer)
    if _seccomp_ok and status.get("Seccomp") == "2":
        found.append("seccomp")
    if _rlimits_ok:
        found.append("rlimits")
    for key, layer in (("user", "user-namespace"), ("cgroup", "cgroup-namespace")):
        if fresh[key]:
            found.append(layer)
    return found

_in_force = _layers()
for _layer in _in_force:
    _note("layer " + _layer)
_refused = [n for n in cfg["require"] if n not in _in_force and not (n == "audit-hook" and cfg["audit_hook"])]
if _refused:
    _note("refused " + ",".join(_refused))
    os._exit(125)
"""

# The audit hook (defence in depth; the OS layers are the boundary). Every function below takes its
# state as default arguments -- immutable values and C functions only -- and looks up no global
# or builtin name, so nothing reachable from its frames (a refused operation's traceback reaches
# the hook's frame) can change what it does: there are no closure cells to overwrite, a code or
# defaults reassignment is itself refused, and patching modules or builtins does not reach it.
# tests/test_sandbox_escapes.py checks the "no global lookups, no closures" property on the code.
_HOOK_SOURCE = r"""
def _make_hook(root, writable_files, note, also_protected=()):
    import os as _os

    class Blocked(PermissionError):
        pass

    Blocked.__name__ = Blocked.__qualname__ = "SandboxViolation"
    Blocked.__module__ = "builtins"  # tracebacks print "SandboxViolation: ..."

    own_proc = _os.readlink("/proc/self") if _os.path.isdir("/proc") else None
    write_flags = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_TRUNC | _os.O_APPEND
    deny = frozenset((
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "os.startfile",
        "resource.setrlimit", "resource.prlimit",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "sys.settrace", "sys.setprofile",
        "sqlite3.enable_load_extension", "sqlite3.load_extension",
    ))
    deny_prefix = ("socket.", "ctypes.")
    no_reimport = frozenset(("_posixsubprocess", "_ctypes", "_posixshmem"))
    frozen_attrs = frozenset(("__code__", "__defaults__", "__kwdefaults__"))
    # (event, ((path index, dir_fd index or None, follow symlinks), ...)), as a tuple: immutable
    path_events = (
        ("os.remove", ((0, 1, False),)),
        ("os.rmdir", ((0, 1, False),)),
        ("os.mkdir", ((0, 2, False),)),
        ("os.rename", ((0, 2, False), (1, 3, False))),
        ("os.link", ((0, 2, True), (1, 3, False))),
        ("os.symlink", ((1, 2, False),)),
        ("os.chmod", ((0, 2, True),)),
        ("os.chown", ((0, 3, True),)),
        ("os.utime", ((0, 3, True),)),
        ("os.truncate", ((0, None, True),)),
        ("os.setxattr", ((0, None, True),)),
        ("os.removexattr", ((0, None, True),)),
    )

    def as_text(path, _isinstance=isinstance, _str=str, _bytes=bytes, _sadd=str.__add__,
                _badd=bytes.__add__, _type=type, _TypeError=TypeError):
        # CPython converts path-like arguments before raising the event, so only str/bytes (and
        # int fds) arrive here; exact copies keep str subclasses from running code later on.
        if _isinstance(path, _str):
            return _sadd("", path)
        if _isinstance(path, _bytes):
            return _badd(b"", path).decode("utf-8", "surrogateescape")
        raise _TypeError("unsupported path type %s" % _type(path).__name__)

    def realpath(path, _lstat=_os.lstat, _readlink=_os.readlink, _OSError=OSError):
        # os.path.realpath for an absolute path, from C functions only (posixpath is patchable).
        pending = path.split("/")[::-1]
        resolved = ""
        links = 0
        while pending:
            name = pending.pop()
            if name == "" or name == ".":
                continue
            if name == "..":
                resolved = resolved.rpartition("/")[0]
                continue
            candidate = resolved + "/" + name
            try:
                mode = _lstat(candidate).st_mode
            except _OSError:
                resolved = candidate
                continue
            if mode & 0o170000 != 0o120000:
                resolved = candidate
                continue
            links += 1
            if links > 40:
                raise _OSError("too many levels of symbolic links")
            target = _readlink(candidate)
            if target.startswith("/"):
                resolved = ""
            pending += target.split("/")[::-1]
        return resolved or "/"

    def as_fd(value, _isinstance=isinstance, _int=int, _bool=bool, _iadd=int.__add__):
        if _isinstance(value, _int) and not _isinstance(value, _bool):
            return _iadd(0, value)
        return None

    def resolve(path, dir_fd, follow, _as_fd=as_fd, _as_text=as_text, _realpath=realpath,
                _readlink=_os.readlink, _getcwd=_os.getcwd):
        fd = _as_fd(path)
        if fd is not None:
            return _realpath(_readlink("/proc/self/fd/%d" % fd))
        text = _as_text(path)
        if text.startswith("/"):
            full = text
        else:
            base_fd = _as_fd(dir_fd)
            if base_fd is not None and base_fd >= 0:
                base = _readlink("/proc/self/fd/%d" % base_fd)
            else:
                base = _getcwd()
            full = base + "/" + text
        if follow:
            return _realpath(full)
        head, _, tail = full.rstrip("/").rpartition("/")
        if tail in ("", ".", ".."):
            return _realpath(full)
        parent = _realpath(head or "/")
        return (parent if parent != "/" else "") + "/" + tail

    def inside(resolved, _root=root, _prefix=root + "/", _files=writable_files):
        return resolved == _root or resolved.startswith(_prefix) or resolved in _files

    def check(event, args, _deny=deny, _deny_prefix=deny_prefix, _no_reimport=no_reimport,
              _path_events=path_events, _path_event_names=frozenset(name for name, _ in path_events),
              _write_flags=write_flags,
              _own_proc=own_proc, _resolve=resolve, _inside=inside, _as_fd=as_fd, _as_text=as_text,
              _stat=_os.stat, _fspath=_os.fspath, _isinstance=isinstance, _str=str, _bytes=bytes,
              _len=len, _OSError=OSError):
        # None if the event is allowed, else the reason it is not.
        if event in _deny or event.startswith(_deny_prefix):
            return ""
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writing = False
            if _isinstance(mode, _str):
                for c in "wax+":
                    if c in mode:
                        writing = True
            flag_bits = _as_fd(flags)
            if flag_bits is not None and flag_bits & _write_flags:
                writing = True
            if _as_fd(path) is not None:
                return None  # wrapping an fd the code already holds
            target = _resolve(path, None, True)
            if writing and not _inside(target):
                return " for writing outside the sandbox directory"
            if target.startswith("/proc/"):
                pid = target.split("/")[2]
                if pid.isdigit() and pid != _own_proc:
                    return " on another process's /proc entry"
            try:
                st_mode = _stat(target).st_mode
            except _OSError:
                return None  # does not exist (yet): a create, already checked above
            kind = st_mode & 0o170000
            if kind == 0o060000:
                return " on a block device"
            if kind == 0o020000 and writing and not _inside(target):
                return " for writing to a device"
            if mode is None and kind == 0o040000:
                # os.open(dir) would hand out a dir_fd, and the open event does not carry dir_fd.
                return " on a directory (os.open)"
            return None
        for name, spec in _path_events if event in _path_event_names else ():
            if event == name:
                for index, fd_index, follow in spec:
                    dir_fd = args[fd_index] if fd_index is not None and fd_index < _len(args) else None
                    if not _inside(_resolve(args[index], dir_fd, follow)):
                        return " outside the sandbox directory"
                if event == "os.symlink":
                    target = _as_text(args[0])
                    link = _resolve(args[1], args[2] if _len(args) > 2 else None, False)
                    link_dir = link.rpartition("/")[0] or "/"
                    full = target if target.startswith("/") else link_dir + "/" + target
                    if not _inside(_resolve(full, None, True)):
                        return " to a target outside the sandbox directory"
                return None
        if event == "sqlite3.connect":
            database = args[0]
            if not _isinstance(database, (_str, _bytes)):
                database = _fspath(database)
            text = _as_text(database)
            if text == "" or text == ":memory:":
                return None
            if text.startswith("file:"):
                location, _, query = text[5:].partition("?")
                if "mode=memory" in query or location == ":memory:":
                    return None
                if "%" in location:
                    return " (a percent-encoded database URI)"
                if location.startswith("//"):
                    slash = location.find("/", 2)
                    location = location[slash:] if slash >= 0 else ""
                text = location
            if not text or not _inside(_resolve(text, None, True)):
                return " for a database outside the sandbox directory"
            return None
        if event == "import" and args[0] in _no_reimport:
            return " for " + _as_text(args[0])
        return None

    protected = (note, as_text, realpath, as_fd, resolve, inside, check) + tuple(also_protected)

    def hook(event, args, _check=check, _note=note, _Blocked=Blocked, _Exception=Exception,
             _type=type, _len=len, _frozen_attrs=frozen_attrs, _protected=protected):
        try:
            why = _check(event, args)
            # (= None is reported as object.__delattr__)
            if why is None and _len(args) > 1 and args[1] in _frozen_attrs and (
                event == "object.__setattr__" or event == "object.__delattr__"
            ):
                for function in _protected:  # (namedtuple & co. set __defaults__ of their own functions)
                    if args[0] is function:
                        why = " (replacing the code or defaults of the sandbox's own functions)"
        except _Exception as exc:  # an unreadable argument is refused, never waved through
            why = " (unverifiable arguments: %s)" % _type(exc).__name__
        if why is not None:
            _note("blocked %s" % event)
            raise _Blocked("[sandbox] %r is not allowed%s" % (event, why))

    return hook
"""

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


@dataclass
class SandboxResult:
    """The outcome of one :func:`run_python` call.

    Attributes:
        stdout: the first ``max_output_chars`` characters of stdout (a marker is appended if cut).
        stderr: the last ``max_output_chars`` characters of stderr (a marker is prepended if cut;
            the end of stderr holds the exception).
        exit_code: the exit status; ``-N`` if the process died from signal ``N``.
        timed_out: the wall-clock timeout expired and the process group was killed.
        killed_reason: why the code did not finish normally, if a sandbox limit was the cause:
            ``"timeout"`` (wall clock), ``"cpu"`` (RLIMIT_CPU), ``"memory"`` (``MemoryError``
            under RLIMIT_AS), ``"output"`` (RLIMIT_FSIZE hit: output flood or oversized file),
            ``"blocked"`` (a refused operation made the code fail, or the seccomp filter killed
            it), else ``None``.
        blocked_event: the first audit event refused, if any (even if the code caught the error);
            ``"seccomp"`` when the seccomp filter killed the process and no event was refused.
        duration_s: wall-clock seconds from launch to reaping.
        network_isolation: ``"namespace"`` (fresh network namespace) or ``"audit-hook"``.
        pid_namespace: whether the code ran in a fresh PID namespace.
        stdout_truncated / stderr_truncated: whether output was cut.
        containment: the layers that were in force, as checked from inside the sandbox before the
            code ran (names from :data:`CONTAINMENT_LAYERS`).
        missing_layers: the layers of :data:`FULL_CONTAINMENT` that were *not* in force. Non-empty
            means degraded containment; a :class:`SandboxDegradedWarning` was issued too (if the
            code started at all: a run killed before that reports every layer as missing).
        launcher: how the code was started: ``"bwrap"`` (as root: the sandbox drops to uid
            65534), ``"bwrap-userns"`` (not root: uid 65534 in a user namespace) or
            ``"process"`` (no bwrap: a plain subprocess), ``""`` if nothing ran.
        containment_notes: why layers are missing (e.g. ``"bwrap not found"``), if known.
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    killed_reason: KilledReason | None
    blocked_event: str | None
    duration_s: float
    network_isolation: Literal["namespace", "audit-hook"]
    pid_namespace: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    containment: tuple[str, ...] = ()
    missing_layers: tuple[str, ...] = ()
    launcher: str = ""
    containment_notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The code ran to completion with exit status 0."""
        return self.exit_code == 0 and self.killed_reason is None

    @property
    def degraded(self) -> bool:
        """Some layer of :data:`FULL_CONTAINMENT` was not in force."""
        return bool(self.missing_layers)


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


def _read_capped(path: Path, max_chars: int, keep: Literal["head", "tail"]) -> tuple[str, bool]:
    """Read at most ``max_chars`` characters (from the start or the end) of a UTF-8 file."""
    size = path.stat().st_size
    max_bytes = 4 * max_chars + 4  # UTF-8 uses at most 4 bytes per character
    with path.open("rb") as f:
        if keep == "tail" and size > max_bytes:
            f.seek(size - max_bytes)
        data = f.read(max_bytes)
    text = data.decode("utf-8", errors="replace")
    whole_file = size <= max_bytes
    if whole_file and len(text) <= max_chars:
        return text, False
    if keep == "head":
        text = text[:max_chars]
        return text + TRUNCATION_MARKER.format(shown=len(text), size=size), True
    text = text[-max_chars:]
    return STDERR_TRUNCATION_MARKER.format(shown=len(text), size=size) + text, True


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


def _namespace_inodes() -> dict[str, int]:
    inodes = {}
    for key in ("mnt", "user", "net", "pid", "ipc", "uts", "cgroup"):
        try:
            inodes[key] = os.stat(f"/proc/self/ns/{key}").st_ino
        except OSError:
            pass
    return inodes


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
    """The bubblewrap command line (see the module docstring, layer 1)."""
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


def _warn_degraded(missing: tuple[str, ...], notes: tuple[str, ...]) -> None:
    why = f" ({'; '.join(notes)})" if notes else ""
    warnings.warn(
        f"oat_env.sandbox: degraded containment, these layers are NOT in force: {', '.join(missing)}{why}",
        SandboxDegradedWarning,
        stacklevel=3,
    )


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
    """Run untrusted ``code`` in a sandboxed Python subprocess (see the module docstring).

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
