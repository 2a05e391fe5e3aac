"""The containment layers by name, and how a run says that some were not in force.

:data:`FULL_CONTAINMENT` and :data:`CONTAINMENT_LAYERS` name the layers (see the
:mod:`oat_env.sandbox` docstring); :class:`SandboxDegradedWarning` is issued for a run that lacked
some, :class:`SandboxUnavailableError` raised when ``run_python(require=...)`` cannot be met.
"""

from __future__ import annotations

import warnings

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


class SandboxDegradedWarning(RuntimeWarning):
    """Some containment layer was not in force for a run (see ``SandboxResult.missing_layers``)."""

    __module__ = "oat_env.sandbox"  # the public name, in tracebacks and pickles


class SandboxUnavailableError(RuntimeError):
    """A layer named in ``run_python(require=...)`` could not be put in place; the code did not run."""

    __module__ = "oat_env.sandbox"


def _warn_degraded(missing: tuple[str, ...], notes: tuple[str, ...]) -> None:
    why = f" ({'; '.join(notes)})" if notes else ""
    warnings.warn(
        f"oat_env.sandbox: degraded containment, these layers are NOT in force: {', '.join(missing)}{why}",
        SandboxDegradedWarning,
        stacklevel=3,
    )
