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
   line is built by :func:`~oat_env.sandbox.bwrap._bwrap_argv`::

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
   (:data:`~oat_env.sandbox.bootstrap._BOOTSTRAP`) that reads the user code from an inherited file descriptor. A relay
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

**Modules.** One job each; everything is re-exported here, so ``from oat_env.sandbox import ...``
is the way in:

* :mod:`~oat_env.sandbox.run` -- :func:`run_python` (validation, the config, the bwrap-then-process
  fallback, reading the status file into the result) and :func:`validate_code`.
* :mod:`~oat_env.sandbox.result` -- :class:`SandboxResult` and the capped reading of stdout/stderr.
* :mod:`~oat_env.sandbox.layers` -- the layer names (:data:`FULL_CONTAINMENT`,
  :data:`CONTAINMENT_LAYERS`), :class:`SandboxDegradedWarning`, :class:`SandboxUnavailableError`.
* :mod:`~oat_env.sandbox.bwrap` -- finding bubblewrap and building its command line (layer 1).
* :mod:`~oat_env.sandbox.process` -- launching, the wall-clock wait, killing and reaping (layer 7).
* :mod:`~oat_env.sandbox.bootstrap` -- the code the child interpreter runs, assembled from the
  fragments below (source text, never imported into the parent):
  :mod:`~oat_env.sandbox.seccomp` (the BPF filter, layer 4), :mod:`~oat_env.sandbox.probe` (the
  in-sandbox layer checks) and :mod:`~oat_env.sandbox.hook` (the audit hook, layer 6).
"""

from __future__ import annotations

from .bootstrap import _BOOTSTRAP as _BOOTSTRAP
from .bootstrap import _BOOTSTRAP_HEAD as _BOOTSTRAP_HEAD
from .bootstrap import _BOOTSTRAP_TAIL as _BOOTSTRAP_TAIL
from .bwrap import _ETC_FILES as _ETC_FILES
from .bwrap import _GROUP as _GROUP
from .bwrap import _PASSWD as _PASSWD
from .bwrap import _PROBE as _PROBE
from .bwrap import _TOP_LEVEL as _TOP_LEVEL
from .bwrap import SANDBOX_DIR, SANDBOX_UID
from .bwrap import _bwrap_argv as _bwrap_argv
from .bwrap import _find_bwrap as _find_bwrap
from .bwrap import _interpreter as _interpreter
from .bwrap import _outermost as _outermost
from .hook import _HOOK_SOURCE as _HOOK_SOURCE
from .layers import (
    CONTAINMENT_LAYERS,
    FULL_CONTAINMENT,
    SandboxDegradedWarning,
    SandboxUnavailableError,
)
from .layers import _warn_degraded as _warn_degraded
from .probe import _namespace_inodes as _namespace_inodes
from .process import _kill_and_wait as _kill_and_wait
from .process import _kill_group as _kill_group
from .process import _launch as _launch
from .process import _relay_pidfd as _relay_pidfd
from .process import _wait_exit as _wait_exit
from .result import STDERR_TRUNCATION_MARKER, TRUNCATION_MARKER, KilledReason, SandboxResult
from .result import _read_capped as _read_capped
from .run import _CHILD_ENV as _CHILD_ENV
from .run import _check_positive as _check_positive
from .run import _exit_status as _exit_status
from .run import run_python, validate_code

__all__ = [
    "CONTAINMENT_LAYERS",
    "FULL_CONTAINMENT",
    "SANDBOX_DIR",
    "SANDBOX_UID",
    "STDERR_TRUNCATION_MARKER",
    "TRUNCATION_MARKER",
    "KilledReason",
    "SandboxDegradedWarning",
    "SandboxResult",
    "SandboxUnavailableError",
    "run_python",
    "validate_code",
]
