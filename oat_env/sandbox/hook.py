"""The audit hook (layer 6 of the :mod:`oat_env.sandbox` docstring), as source text.

:data:`_HOOK_SOURCE` defines ``_make_hook``; it is never imported into the parent: the bootstrap
(:mod:`oat_env.sandbox.bootstrap`) carries it into the child, which installs the hook with
``sys.addaudithook`` just before the user code runs.
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
