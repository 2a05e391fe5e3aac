"""Progress output for long runs (the online loops, the SFT warm-up) that reads well on a terminal and in a file.

On a terminal (stdout and stderr both TTYs) it is a live ``tqdm`` bar. Otherwise (``make demo > log``, ``| tee``,
CI) a carriage-return bar would write one endless line, so it prints one compact line to stdout instead:
at every evaluation, at most every ``interval_s`` seconds between them, and once at the end::

    [online] 8192/32768 queries (25%)  21s elapsed, ~63s left | loss 0.687 accuracy 0.515
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO


def is_terminal() -> bool:
    """Whether a live bar can be drawn: both output streams are terminals."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def format_postfix(postfix: dict[str, float | None]) -> dict[str, str]:
    """``{name: 3 significant digits}`` for the finite values."""
    return {k: f"{v:.3g}" for k, v in postfix.items() if v is not None and math.isfinite(v)}


class Progress:
    """Progress over a known total (queries, optimizer steps).

    Args:
        total: the count at which the run ends.
        initial: where it starts (a resumed run).
        unit: what is counted, for the line (``"queries"``, ``"steps"``).
        desc: a short name of the phase (``"online"``, ``"warm-up"``).
        interval_s: in line mode, the most seconds between two lines (evaluations always print one).
        live: a tqdm bar (True) or lines (False); default: a bar exactly when :func:`is_terminal`.
        stream: where lines go (default ``sys.stdout``).
    """

    def __init__(self, total: int, initial: int = 0, unit: str = "queries", desc: str = "", interval_s: float = 30.0,
                 live: bool | None = None, stream: TextIO | None = None):
        self.total, self.n, self.unit, self.desc, self.interval_s = total, initial, unit, desc, interval_s
        self.stream = stream
        self.start = self.last_line = time.perf_counter()
        self.last_line_n: int | None = None  # the count the last printed line showed
        self.start_n = initial
        self.postfix: dict[str, str] = {}
        self.evals_shown = 0  # evaluations already announced by update_progress
        self.bar = None
        if live if live is not None else is_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit=unit.rstrip("s") or unit, desc=desc or None,
                            dynamic_ncols=True)

    def update(self, n: int, postfix: dict[str, float | None] | None = None, force: bool = False) -> None:
        """Move to count ``n`` and show ``postfix``; in line mode print now if ``force`` or ``interval_s`` passed."""
        if postfix is not None:
            self.postfix = format_postfix(postfix)
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
            self.bar.set_postfix(self.postfix)
            self.n = n
            return
        self.n = n
        now = time.perf_counter()
        if force or now - self.last_line >= self.interval_s:
            self._line(now)

    def line(self) -> str:
        """The line that line mode prints for the current state."""
        elapsed = time.perf_counter() - self.start
        done = self.n - self.start_n
        eta = f", ~{elapsed * (self.total - self.n) / done:.0f}s left" if 0 < done and self.n < self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        tags = " ".join(f"{k} {v}" for k, v in self.postfix.items())
        head = f"[{self.desc}] " if self.desc else ""
        return f"{head}{self.n}/{self.total} {self.unit}{pct}  {elapsed:.0f}s elapsed{eta}" + (f" | {tags}" if tags else "")

    def _line(self, now: float) -> None:
        print(self.line(), file=self.stream or sys.stdout, flush=True)
        self.last_line, self.last_line_n = now, self.n

    def close(self) -> None:
        """End the bar, or print the last line (unless the last one printed already shows the final count)."""
        if self.bar is not None:
            self.bar.close()
        elif self.last_line_n != self.n:
            self._line(time.perf_counter())


def open_progress(config: Any, initial: int, desc: str = "online") -> Progress | None:
    """The progress display of a loop over oracle queries (None when ``config.progress`` is off)."""
    if not config.progress:
        return None
    return Progress(config.total_queries, initial, unit="queries", desc=desc, interval_s=config.progress_interval_s)


def update_progress(progress: Progress | None, queries: int, metrics: dict[str, float],
                    evals: list[dict[str, float]], keys: tuple[str, ...]) -> None:
    """Show this round's ``keys`` and the latest evaluation's headline metrics; an evaluation that has not been
    shown yet prints a line (in line mode)."""
    if progress is None:
        return
    latest = evals[-1] if evals else {}
    post = {k.split("/")[-1]: metrics.get(k) for k in keys}
    post.update({k.split("/")[1]: latest.get(k) for k in ("eval/win_rate", "eval/accuracy", "eval/success_rate")})
    new_eval = len(evals) != progress.evals_shown
    progress.evals_shown = len(evals)
    progress.update(queries, post, force=new_eval)
