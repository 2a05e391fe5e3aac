"""The layer checks: which containment layers are in force, as seen from inside the sandbox.

:data:`_LAYERS_SOURCE` is a fragment of the bootstrap (:mod:`oat_env.sandbox.bootstrap`) and runs in
the child before the user code: ``_layers`` checks each layer (namespace inodes against the parent's,
the read-only root and the tmpfs sizes, the host uid through the id maps, capabilities and the
seccomp mode from ``/proc/self/status``, the rlimits), the result is written to the status file as
``layer NAME`` lines, and the child exits with status 125 (``refused NAMES``) when a required layer
is missing. :func:`_namespace_inodes` gives the parent's namespace inodes, the reference for the
``*-namespace`` checks.
"""

from __future__ import annotations

import os


def _namespace_inodes() -> dict[str, int]:
    inodes = {}
    for key in ("mnt", "user", "net", "pid", "ipc", "uts", "cgroup"):
        try:
            inodes[key] = os.stat(f"/proc/self/ns/{key}").st_ino
        except OSError:
            pass
    return inodes


_LAYERS_SOURCE = r"""
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
