"""What a run returns: :class:`SandboxResult`, and the capped reading of the output files into it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KilledReason = Literal["timeout", "cpu", "memory", "output", "blocked"]

TRUNCATION_MARKER = "\n...[truncated: the first {shown} characters of {size} bytes shown]"
STDERR_TRUNCATION_MARKER = "...[truncated: the last {shown} characters of {size} bytes shown]\n"


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
