"""Prompt sources (finite datasets and procedural generators) and the stream envs draw from.

A *source* says which prompts exist; a :class:`PromptStream` decides the order they are served
in. All randomness comes from the generator the environment passes in (its ``np_random``), so a
seeded reset reproduces the prompt sequence, and the stream's position can be saved and restored.

Checkpoint state: every ``load_state_dict`` of the stream, the tasks and the vector envs goes through
the ``check_state_*`` helpers of :mod:`oat_env.state`, in two phases: ``check_state_dict(state,
where)`` validates the whole state without touching the object and returns a commit function that
applies it and cannot fail. A corrupt or mismatched state therefore raises a ``TypeError`` (wrong
type) or ``ValueError`` (wrong value, missing or unknown key) naming the field (``where``, e.g.
``state['task']['queries']``) and leaves the object exactly as it was.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from oat_env.data.records import PromptRecord
from oat_env.state import (
    StateCommit,
    check_state_int,
    check_state_keys,
    check_state_permutation,
    short_repr,
    state_field,
)


class PromptDataset:
    """A finite list of training prompts, with an optional held-out list for evaluation."""

    def __init__(
        self,
        records: Sequence[PromptRecord],
        eval_records: Sequence[PromptRecord] | Callable[[], Sequence[PromptRecord]] | None = None,
        name: str = "prompts",
    ):
        """``eval_records`` may be a zero-argument callable, called on first use (e.g. a hub test split
        that should only be downloaded when someone evaluates)."""
        if len(records) == 0:
            raise ValueError(f"{name}: no training prompts")
        self.records = list(records)
        self._eval_loader = eval_records if callable(eval_records) else None
        self._eval = None if eval_records is None or callable(eval_records) else list(eval_records)
        self.name = name

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_eval_records(self) -> bool:
        """Whether a held-out list exists (decided at construction; nothing is loaded)."""
        return self._eval is not None or self._eval_loader is not None

    @property
    def num_eval_records(self) -> int:
        """Number of held-out prompts: 0 without a held-out list, else its length (a lazily loaded list
        is loaded here)."""
        if not self.has_eval_records:
            return 0
        return len(self._loaded_eval())

    def _loaded_eval(self) -> list[PromptRecord]:
        if self._eval is None and self._eval_loader is not None:
            self._eval = list(self._eval_loader())
        return self._eval if self._eval is not None else []

    def eval_records(self, n: int | None = None, seed: int = 0) -> list[PromptRecord]:
        """The first ``n`` held-out prompts (all :attr:`num_eval_records` of them if ``n`` is None);
        ``seed`` is unused (fixed order). Raises ``ValueError`` when there is no held-out list."""
        if not self.has_eval_records:
            raise ValueError(
                f"{self.name}: no held-out evaluation prompts (num_eval_prompts is 0); with a local or custom "
                "prompt_data, pass eval_prompt_data= (a local file or a list of PromptRecord) to the environment"
            )
        records = self._loaded_eval()
        return records if n is None else records[:n]


def stable_fraction(key: str) -> float:
    """A deterministic number in [0, 1) from a string (process- and platform-independent)."""
    return zlib.crc32(key.encode("utf-8")) / 2**32


class ProceduralPrompts:
    """An unbounded prompt generator with a deterministic held-out split.

    A generated problem belongs to the evaluation split when ``stable_fraction(uid) <
    eval_fraction``; training draws reject evaluation problems, so held-out accuracy measures
    generalisation, not memorisation.

    Args:
        generate: ``rng -> PromptRecord`` with a ``uid`` that identifies the problem.
        eval_fraction: fraction of the problem space held out for evaluation.
        name: shown in errors and reprs.
    """

    # Bound on rejection sampling; only reached when almost the whole space is held out.
    MAX_REJECTIONS = 1000
    # Largest problem space listed to count (and serve all of) the held-out split.
    MAX_ENUMERATED = 100_000

    def __init__(
        self, generate: Callable[[np.random.Generator], PromptRecord], eval_fraction: float = 0.1, name: str = ""
    ):
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        self.generate = generate
        self.eval_fraction = eval_fraction
        self.name = name or getattr(generate, "__name__", "procedural")
        self._held_out: list[PromptRecord] | None = None
        self._enumerated = False

    def _is_eval(self, record: PromptRecord) -> bool:
        if record.uid is None:
            raise ValueError(f"{self.name}: procedural records need a uid for the held-out split")
        return stable_fraction(record.uid) < self.eval_fraction

    def sample(self, rng: np.random.Generator) -> PromptRecord:
        """One training-split problem."""
        for _ in range(self.MAX_REJECTIONS):
            record = self.generate(rng)
            if not self._is_eval(record):
                return record
        raise RuntimeError(f"{self.name}: could not draw a training problem; eval_fraction too large?")

    def held_out_problems(self) -> list[PromptRecord] | None:
        """Every held-out problem, in the generator's enumeration order, or ``None`` when the problem
        space is unbounded or larger than :attr:`MAX_ENUMERATED` (computed once, then cached).

        Needs a generator with ``enumerate_problems(max_count) -> list[PromptRecord] | None``: every
        distinct problem it can draw (one per ``uid``), or ``None`` if there are more than
        ``max_count``; a generator without that method counts as unbounded.
        """
        if not self._enumerated:
            enumerate_problems = getattr(self.generate, "enumerate_problems", None)
            problems = enumerate_problems(self.MAX_ENUMERATED) if callable(enumerate_problems) else None
            if problems is not None:
                unique = {r.uid: r for r in problems if self._is_eval(r)}
                self._held_out = list(unique.values())
            self._enumerated = True
        return self._held_out

    @property
    def num_eval_records(self) -> int | None:
        """Number of distinct held-out problems (0 when ``eval_fraction`` is 0), or ``None`` when the
        problem space cannot be listed (see :meth:`held_out_problems`).

        A subclass that serves its own held-out list (overrides :meth:`eval_records`, e.g. the
        reasoning-gym source) is counted as ``len(eval_records(None))`` (``None`` if that raises
        ``ValueError``) unless it overrides this property too.
        """
        if type(self).eval_records is not ProceduralPrompts.eval_records:
            try:
                return len(self.eval_records(None))
            except ValueError:
                return None
        if self.eval_fraction == 0.0:
            return 0
        held_out = self.held_out_problems()
        return None if held_out is None else len(held_out)

    def eval_records(self, n: int | None = None, seed: int = 0) -> list[PromptRecord]:
        """``n`` distinct held-out problems, the same for a given ``seed`` (default 0).

        ``n=None``: every held-out problem (:meth:`held_out_problems`, ``seed`` unused) when the
        problem space can be listed; otherwise ``ValueError`` asking for ``n``. An ``n`` larger than
        :attr:`num_eval_records` (when known) raises ``ValueError`` at once.
        """
        if self.eval_fraction == 0.0:
            raise ValueError(f"{self.name}: eval_fraction is 0, there is no held-out split")
        if n is None:
            held_out = self.held_out_problems()
            if held_out is None:
                raise ValueError(
                    f"{self.name}: the problem space is too large to list every held-out problem (num_eval_prompts "
                    "is None); pass the number of eval prompts, e.g. eval_prompts(100)"
                )
            return list(held_out)
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{self.name}: the number of eval prompts must be a non-negative int, got {n!r}")
        known = self.num_eval_records
        if known is not None and n > known:
            raise ValueError(f"{self.name}: only {known} distinct held-out problems exist, asked for {n}")
        rng = np.random.default_rng(seed)
        found: dict[str, PromptRecord] = {}
        for _ in range(max(n, 1) * self.MAX_REJECTIONS):
            if len(found) >= n:
                break
            record = self.generate(rng)
            if self._is_eval(record):
                found.setdefault(record.uid, record)
        if len(found) < n:
            raise ValueError(f"{self.name}: only {len(found)} distinct held-out problems exist, asked for {n}")
        return list(found.values())


PromptSource = PromptDataset | ProceduralPrompts


class PromptStream:
    """Serves training prompts from a source: shuffled epochs for datasets, fresh draws for generators.

    For a :class:`PromptDataset`, each epoch is a permutation drawn from the caller's generator;
    every prompt is served once per epoch. The position survives :meth:`state_dict` /
    :meth:`load_state_dict`, so a resumed run continues with the very next prompt.
    """

    def __init__(self, source: PromptSource):
        self.source = source
        self.epoch = 0
        self.position = 0
        self._order: np.ndarray | None = None
        self.served = 0

    def reset(self) -> None:
        """Forget the order; the next draw starts a new first epoch."""
        self.epoch, self.position, self._order, self.served = 0, 0, None, 0

    def next(self, n: int, rng: np.random.Generator) -> list[PromptRecord]:
        """The next ``n`` training prompts."""
        self.served += n
        if isinstance(self.source, ProceduralPrompts):
            return [self.source.sample(rng) for _ in range(n)]
        out = []
        while len(out) < n:
            if self._order is None or self.position >= len(self._order):
                if self._order is not None:
                    self.epoch += 1
                self._order = rng.permutation(len(self.source))
                self.position = 0
            take = min(n - len(out), len(self._order) - self.position)
            out.extend(self.source.records[i] for i in self._order[self.position : self.position + take])
            self.position += take
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "order": None if self._order is None else self._order.tolist(),
            "served": self.served,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a state that does not fit this source raises and changes nothing."""
        self.check_state_dict(state)()

    def check_state_dict(self, state: Any, where: str = "stream") -> StateCommit:
        """Validate a :meth:`state_dict` for this source (see the module docstring); return its commit.

        A procedural source only counts draws (``order`` None, ``epoch`` and ``position`` 0). For a
        dataset, ``order`` is None before the first draw (then everything is 0), else a permutation
        of the dataset's indices with ``position <= len(order)`` and ``served == epoch * len + position``.
        """
        state = check_state_keys(state, where, ("epoch", "position", "order", "served"))
        epoch, position, served = (
            check_state_int(state[k], state_field(where, k)) for k in ("epoch", "position", "served")
        )
        where_order = state_field(where, "order")
        if isinstance(self.source, ProceduralPrompts):
            if state["order"] is not None or epoch or position:
                raise ValueError(
                    f"{where}: a procedural source ({self.source.name}) has no epochs, so {where_order} must be "
                    f"None and epoch/position 0, got order={short_repr(state['order'])}, epoch={epoch}, position={position}"
                )
            order = None
        elif state["order"] is None:
            if epoch or position or served:
                raise ValueError(
                    f"{where}: {where_order} is None (nothing drawn yet), so epoch, position and served must be 0, "
                    f"got {epoch}, {position}, {served}"
                )
            order = None
        else:
            order = check_state_permutation(state["order"], where_order, len(self.source))
            if position > len(order):
                raise ValueError(f"{state_field(where, 'position')} must be in [0, {len(order)}], got {position}")
            if served != epoch * len(order) + position:
                raise ValueError(
                    f"{state_field(where, 'served')} must be epoch * {len(order)} + position = "
                    f"{epoch * len(order) + position}, got {served}"
                )

        def commit() -> None:
            self.epoch, self.position, self.served, self._order = epoch, position, served, order

        return commit
