"""The seccomp BPF filter (layer 4 of the :mod:`oat_env.sandbox` docstring), as source text.

:data:`_SECCOMP_SOURCE` is a fragment of the bootstrap (:mod:`oat_env.sandbox.bootstrap`) and runs
in the child, never in the parent. It defines the syscall numbers (``_NR``), what is killed
(``_SECCOMP_KILL``) or refused with EPERM (``_SECCOMP_EPERM``), ``_seccomp_program`` (the classic-BPF
program), ``_install_seccomp`` (``no_new_privs``, then ``PR_SET_SECCOMP``) and ``_seccomp`` (both, for
the calling process, reporting a failure as a status line). It uses what the bootstrap defined
before it: ``os``, ``errno``, ``ctypes``, ``cfg``, ``_note``, ``_libc`` and ``_prctl``.
"""

_SECCOMP_SOURCE = r"""
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
"""
