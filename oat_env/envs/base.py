"""Single-turn bandit environments: the machinery shared by dueling and verifiable envs.

A *task* (:class:`BanditTask`) knows the prompts, the oracle and how feedback is computed for a
batch; :class:`SingleTurnEnv` and :class:`SingleTurnVectorEnv` turn a task into a Gymnasium
``Env`` and a native ``VectorEnv`` that makes one batched oracle call per ``step``.

Episode structure (both envs): ``reset`` serves a prompt; ``step(action)`` answers it and the
episode ends (``terminated=True, truncated=False``). The vector env autoresets in the same step
(``AutoresetMode.SAME_STEP``): ``step`` returns the *next* prompts as observations and the
answered ones in ``infos["final_obs"]``, with their feedback in ``infos["final_info"]``.
Scalar diagnostics of the last oracle call are in ``env.last_oracle_metrics`` (not in infos,
which hold only per-sub-env arrays).

Query budget: every answered prompt costs one oracle query. When ``max_queries`` is set, a
``step`` that needs more queries than remain raises :class:`QueryBudgetExhausted` *before*
calling the oracle, leaving the env unchanged (nothing is half-done or lost); the step that
spends the last query returns normally with ``queries_remaining == 0`` in its info.
Evaluation (:meth:`BanditTask.evaluate`) never counts as queries.

Active prompt selection (vector env): an agent that chooses *which* prompts to query (APL) asks
:meth:`SingleTurnVectorEnv.prompt_pool` for candidates (the served prompts plus fresh draws from the
training stream; free) and :meth:`SingleTurnVectorEnv.serve_prompts` to answer ``num_envs`` of them
in the next ``step``. Only answered prompts cost queries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from oat_env.data.records import PromptRecord
from oat_env.data.sources import PromptSource, PromptStream
from oat_env.spaces import TextSpace
from oat_env.state import (
    StateCommit,
    check_state_int,
    check_state_keys,
    check_state_list,
    check_state_record,
    check_state_rng,
    state_field,
)

DEFAULT_MAX_PROMPT_LENGTH = 100_000
DEFAULT_MAX_RESPONSE_LENGTH = 100_000


class QueryBudgetExhausted(RuntimeError):
    """Raised when a step would exceed the environment's ``max_queries`` oracle budget."""


class QueryBudget:
    """Counts oracle queries against an optional maximum."""

    def __init__(self, max_queries: int | None):
        if max_queries is not None and (not isinstance(max_queries, (int, np.integer)) or max_queries < 0):
            raise ValueError(f"max_queries must be a non-negative int or None, got {max_queries!r}")
        self.max_queries = None if max_queries is None else int(max_queries)
        self.used = 0

    @property
    def remaining(self) -> int | None:
        return None if self.max_queries is None else self.max_queries - self.used

    def check(self, n: int) -> None:
        """Raise :class:`QueryBudgetExhausted` if ``n`` more queries do not fit."""
        if self.max_queries is not None and self.used + n > self.max_queries:
            raise QueryBudgetExhausted(
                f"query budget exhausted: this step needs {n} oracle queries but only {self.remaining} of "
                f"max_queries={self.max_queries} remain (create the env with a larger max_queries, or stop)"
            )

    def spend(self, n: int) -> None:
        self.check(n)
        self.used += n


@dataclass
class Feedback:
    """The outcome of answering a batch of prompts.

    Attributes:
        rewards: ``(B,)`` rewards.
        info: per-item arrays of length ``B`` (Gymnasium's dict-of-arrays convention).
        metrics: scalar diagnostics of the oracle call.
    """

    rewards: np.ndarray
    info: dict[str, np.ndarray]
    metrics: dict[str, float] = field(default_factory=dict)


class BanditTask:
    """Prompts + oracle + feedback rule, shared by a single env and its vector twin.

    Subclasses define :attr:`single_action_space`, :meth:`parse_action`,
    :meth:`parse_batch_action` and :meth:`feedback`.
    """

    # Prompts served in training are remembered (bounded) so evaluate() can accept their text.
    RECORD_CACHE_SIZE = 100_000

    def __init__(
        self,
        prompts: PromptSource,
        *,
        max_queries: int | None = None,
        max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH,
        max_response_length: int = DEFAULT_MAX_RESPONSE_LENGTH,
    ):
        self.source = prompts
        self.stream = PromptStream(prompts)
        self.budget = QueryBudget(max_queries)
        self.prompt_space = TextSpace(max_prompt_length)
        self.observation_space: gym.Space = self.prompt_space
        self.response_space = TextSpace(max_response_length)
        self._records: OrderedDict[str, PromptRecord] = OrderedDict()

    # -- prompts ---------------------------------------------------------------------------
    def remember(self, records: Sequence[PromptRecord]) -> None:
        for record in records:
            if not self.prompt_space.contains(record.prompt):
                raise ValueError(
                    f"prompt {record.uid!r} has {len(record.prompt)} characters, more than "
                    f"max_prompt_length={self.prompt_space.max_length}"
                )
            self._records[record.prompt] = record
            self._records.move_to_end(record.prompt)
        while len(self._records) > self.RECORD_CACHE_SIZE:
            self._records.popitem(last=False)

    def next_prompts(self, n: int, rng: np.random.Generator) -> list[PromptRecord]:
        records = self.stream.next(n, rng)
        self.remember(records)
        return records

    def eval_records(self, n: int | None = None, seed: int = 0) -> list[PromptRecord]:
        records = self.source.eval_records(n, seed=seed)
        self.remember(records)
        return records

    def resolve(self, prompts: Sequence[str | PromptRecord]) -> list[PromptRecord]:
        """Map prompt texts (from :meth:`eval_records` or recent training) back to their records."""
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, PromptRecord):
                out.append(p)
            elif isinstance(p, str):
                try:
                    out.append(self._records[p])
                except KeyError:
                    raise KeyError(
                        f"prompt {i} is unknown to this env: evaluate prompts from env.eval_prompts() or pass "
                        f"PromptRecord objects. Prompt starts: {p[:80]!r}"
                    ) from None
            else:
                raise TypeError(f"prompt {i} must be a str or PromptRecord, got {type(p).__name__}")
        return out

    # -- actions ---------------------------------------------------------------------------
    def check_responses(self, responses: Any, n: int, what: str) -> list[str]:
        """Validate a batch of ``n`` response strings; clear errors naming ``what`` and the index."""
        if isinstance(responses, str) or not isinstance(responses, (Sequence, np.ndarray)):
            raise TypeError(f"{what} must be a sequence of {n} strings, got {type(responses).__name__}")
        if len(responses) != n:
            raise ValueError(f"{what} has {len(responses)} items, expected {n} (one per sub-environment)")
        return [self.response_space.check(r, f"{what}[{i}]") for i, r in enumerate(responses)]

    def spend_and_feedback(
        self, records: list[PromptRecord], action: Any, rng: np.random.Generator
    ) -> Feedback:
        """Validate, check the budget, make one oracle call, then count the queries."""
        self.budget.check(len(records))
        fb = self.feedback(records, action, rng)
        self.budget.spend(len(records))
        return fb

    # -- subclass API ----------------------------------------------------------------------
    single_action_space: gym.Space

    def parse_action(self, action: Any) -> Any:
        """A single env's action -> the batch-of-one form :meth:`feedback` takes."""
        raise NotImplementedError

    def parse_batch_action(self, actions: Any, n: int) -> Any:
        """A vector env's action -> the batch form :meth:`feedback` takes."""
        raise NotImplementedError

    def feedback(self, records: list[PromptRecord], action: Any, rng: np.random.Generator) -> Feedback:
        raise NotImplementedError

    def close(self) -> None:
        """Release the oracle/verifier's resources (HTTP sessions, worker pools) if it holds any."""
        for name in ("oracle", "verifier"):
            close = getattr(getattr(self, name, None), "close", None)
            if callable(close):
                close()

    # -- state (for checkpoint/resume) -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "queries": self.budget.used}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; an invalid state raises and changes nothing."""
        self.check_state_dict(state)()

    def check_state_dict(self, state: Any, where: str = "task") -> StateCommit:
        """Validate a :meth:`state_dict` (stream position, ``0 <= queries <= max_queries``) without
        changing the task; return the commit that applies it (see :mod:`oat_env.data.sources`)."""
        state = check_state_keys(state, where, ("stream", "queries"))
        stream_commit = self.stream.check_state_dict(state["stream"], state_field(where, "stream"))
        queries = check_state_int(state["queries"], state_field(where, "queries"))
        if self.budget.max_queries is not None and queries > self.budget.max_queries:
            raise ValueError(
                f"{state_field(where, 'queries')} is {queries}, more than this env's max_queries="
                f"{self.budget.max_queries}"
            )

        def commit() -> None:
            stream_commit()
            self.budget.used = queries

        return commit

    def check_state_records(
        self, value: Any, where: str, n: int | None = None, min_len: int = 0
    ) -> list[PromptRecord]:
        """Prompt records saved by an env (``n`` of them, else at least ``min_len``), each prompt
        within this task's ``max_prompt_length``."""
        items = check_state_list(value, where, n, min_len, why="one per sub-environment")
        max_length = self.prompt_space.max_length
        return [check_state_record(r, state_field(where, i), max_length) for i, r in enumerate(items)]


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class TaskEnvMixin:
    """Query accounting and held-out evaluation, shared by every env built on a :class:`BanditTask`."""

    task: BanditTask

    @property
    def num_queries(self) -> int:
        """Oracle queries spent so far (evaluation excluded)."""
        return self.task.budget.used

    @property
    def queries_remaining(self) -> int | None:
        """Queries left in the ``max_queries`` budget (``None``: unlimited)."""
        return self.task.budget.remaining

    @property
    def num_eval_prompts(self) -> int | None:
        """How many held-out prompts :meth:`eval_prompts` can serve (``eval_prompts()`` returns them all).

        A dataset: the length of its held-out list, ``0`` when there is none (a local ``prompt_data``
        without ``eval_prompt_data``; decided at construction); a hub default's held-out split is
        loaded here on first use. A procedural source: the number of distinct held-out problems when
        its problem space can be listed (e.g. single-digit arithmetic), ``0`` with
        ``eval_fraction=0``, else ``None`` (unbounded: ``eval_prompts`` needs an ``n``).
        """
        return self.task.source.num_eval_records

    def eval_prompts(self, n: int | None = None, seed: int = 0) -> list[str]:
        """Held-out prompts (greedy evaluation); the same list for the same ``n`` and ``seed``.

        ``n=None``: every held-out prompt (:attr:`num_eval_prompts` of them). Raises ``ValueError``
        when there is no held-out split (``num_eval_prompts == 0``), when ``n`` is None and the
        source is unbounded (``num_eval_prompts is None``), or when ``n`` exceeds a known count.
        """
        return [r.prompt for r in self.task.eval_records(n, seed)]

    def evaluate(self, responses: Sequence[str], prompts: Sequence[str | PromptRecord]) -> dict[str, Any]:
        """Score responses to held-out prompts without spending queries (see the task's ``evaluate``)."""
        return self.task.evaluate(responses, prompts)

    def _check_task_and_rng_state(self, state: Mapping[str, Any], where: str) -> StateCommit:
        """Validate the ``task`` and ``np_random`` entries every task env saves; return their commit."""
        task_commit = self.task.check_state_dict(state["task"], state_field(where, "task"))
        rng = self.np_random
        rng_state = check_state_rng(state["np_random"], state_field(where, "np_random"), rng.bit_generator)

        def commit() -> None:
            task_commit()
            rng.bit_generator.state = rng_state

        return commit


class SingleTurnEnv(TaskEnvMixin, gym.Env):
    """A Gymnasium env serving one prompt per episode and answering it with one oracle query.

    Observation: the prompt (``str`` in :class:`~oat_env.spaces.TextSpace`).
    Action: given by the task (a response, or a pair of responses).
    Reward, termination: after one step, ``terminated=True``, ``truncated=False``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, task: BanditTask):
        self.task = task
        self.observation_space = task.observation_space
        self.action_space = task.single_action_space
        self._record: PromptRecord | None = None
        self._done = True
        self.last_oracle_metrics: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.task.stream.reset()
        (self._record,) = self.task.next_prompts(1, self.np_random)
        self._done = False
        return self._record.prompt, {"prompt_uid": self._record.uid}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._record is None or self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        batch_action = self.task.parse_action(action)
        fb = self.task.spend_and_feedback([self._record], batch_action, self.np_random)
        self._done = True
        self.last_oracle_metrics = dict(fb.metrics)
        info = {key: _python_scalar(arr[0]) for key, arr in fb.info.items()}
        if self.task.budget.remaining is not None:
            info["queries_remaining"] = self.task.budget.remaining
        return self._record.prompt, float(fb.rewards[0]), True, False, info

    def close(self) -> None:
        self.task.close()
        super().close()


class SingleTurnVectorEnv(TaskEnvMixin, VectorEnv):
    """The native vector twin of :class:`SingleTurnEnv`: one batched oracle call per ``step``.

    Observations: a tuple of ``num_envs`` prompt strings. Actions: the batched form of the task's
    action space (see the task). Rewards ``(num_envs,)`` float64; every sub-env terminates every
    step and is reset in the same step (``AutoresetMode.SAME_STEP``): ``infos["final_obs"]`` holds
    the answered prompts and ``infos["final_info"]`` their feedback (dict of arrays with ``_key``
    masks); the top-level infos describe the new prompts.

    This is what ``gym.make_vec(id, num_envs=N)`` builds. Gymnasium's own
    ``vectorization_mode="sync"``/``"async"`` run ``N`` single envs instead and differ in autoreset
    mode, seeding, query budget, batching and API: see :mod:`oat_env.registration`.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task: BanditTask, num_envs: int):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.task = task
        self.num_envs = int(num_envs)
        self.single_observation_space = task.observation_space
        self.single_action_space = task.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._records: list[PromptRecord] | None = None
        # Candidate prompts for active prompt selection (prompt_pool / serve_prompts); None between steps.
        self._pool: list[PromptRecord] | None = None
        self.last_oracle_metrics: dict[str, float] = {}

    @property
    def current_prompts(self) -> tuple[str, ...]:
        """The prompts being served (the last observation), e.g. after :meth:`load_state_dict`."""
        if self._records is None:
            raise RuntimeError("no prompts yet: call reset() first")
        return tuple(r.prompt for r in self._records)

    def _prompt_infos(self) -> dict[str, np.ndarray]:
        uids = np.empty(self.num_envs, dtype=object)
        uids[:] = [r.uid for r in self._records]
        return {"prompt_uid": uids, "_prompt_uid": np.ones(self.num_envs, dtype=bool)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(
                f"seed must be an int or None (one generator drives all sub-envs), got {type(seed).__name__}"
            )
        super().reset(seed=seed)
        if seed is not None:
            self.task.stream.reset()
        self._records = self.task.next_prompts(self.num_envs, self.np_random)
        self._pool = None
        return tuple(r.prompt for r in self._records), self._prompt_infos()

    # -- active prompt selection -----------------------------------------------------------
    def prompt_pool(self, size: int) -> tuple[str, ...]:
        """Candidate prompts for the next :meth:`step`, for agents that choose what to query (e.g. APL).

        The pool is the ``num_envs`` prompts being served, followed by ``size - num_envs`` fresh prompts
        from the training stream (drawn with the env's generator, so reproducible from the reset seed).
        Until the next ``step`` it is fixed: calling again returns the same pool, grown if ``size`` is
        larger. Nothing here is a query; only the prompts :meth:`serve_prompts` picks and ``step`` then
        answers cost queries. Pool prompts that are not served are dropped after the step.
        """
        if self._records is None:
            raise RuntimeError("prompt_pool() called before reset()")
        if not isinstance(size, (int, np.integer)) or size < self.num_envs:
            raise ValueError(f"pool size must be an int >= num_envs ({self.num_envs}), got {size!r}")
        if self._pool is None:
            self._pool = list(self._records)
        if size > len(self._pool):
            self._pool.extend(self.task.next_prompts(int(size) - len(self._pool), self.np_random))
        return tuple(r.prompt for r in self._pool)

    def serve_prompts(self, indices: Sequence[int] | np.ndarray) -> tuple[str, ...]:
        """Answer ``pool[indices]`` (``num_envs`` distinct indices into :meth:`prompt_pool`) in the next
        ``step`` instead of the prompts being served. Returns the new observation."""
        if self._pool is None:
            raise RuntimeError("serve_prompts() needs a prompt_pool() since the last step")
        idx = np.asarray(indices)
        if idx.shape != (self.num_envs,) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be {self.num_envs} integers (one per sub-env), got {idx!r}")
        if len(set(idx.tolist())) != self.num_envs:
            raise ValueError(f"indices must be distinct, got {idx.tolist()}")
        if idx.min() < 0 or idx.max() >= len(self._pool):
            raise IndexError(f"indices must be in [0, {len(self._pool)}) (the pool size), got {idx.tolist()}")
        self._records = [self._pool[i] for i in idx.tolist()]
        return tuple(r.prompt for r in self._records)

    def step(self, actions: Any):
        if self._records is None:
            raise RuntimeError("step() called before reset()")
        batch_action = self.task.parse_batch_action(actions, self.num_envs)
        fb = self.task.spend_and_feedback(self._records, batch_action, self.np_random)
        answered = self._records
        final_obs = np.empty(self.num_envs, dtype=object)
        final_obs[:] = [r.prompt for r in answered]
        all_true = np.ones(self.num_envs, dtype=bool)
        final_info: dict[str, Any] = {}
        for key, arr in fb.info.items():
            final_info[key], final_info[f"_{key}"] = arr, all_true.copy()
        remaining = self.task.budget.remaining
        if remaining is not None:
            final_info["queries_remaining"] = np.full(self.num_envs, remaining, dtype=np.int64)
            final_info["_queries_remaining"] = all_true.copy()
        self.last_oracle_metrics = dict(fb.metrics)
        self._records = self.task.next_prompts(self.num_envs, self.np_random)
        self._pool = None
        infos = self._prompt_infos()
        infos.update(
            final_obs=final_obs,
            _final_obs=all_true.copy(),
            final_info=final_info,
            _final_info=all_true.copy(),
        )
        terminations = np.ones(self.num_envs, dtype=bool)
        truncations = np.zeros(self.num_envs, dtype=bool)
        obs = tuple(r.prompt for r in self._records)
        return obs, fb.rewards.astype(np.float64), terminations, truncations, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.task.close()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the prompt stream exactly: generator, stream position, queries."""
        return {
            "task": self.task.state_dict(),
            "np_random": self.np_random.bit_generator.state,
            "records": None if self._records is None else [asdict(r) for r in self._records],
            "pool": None if self._pool is None else [asdict(r) for r in self._pool],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` exactly. Atomic: a state that is corrupt or does not fit this env
        raises a ``TypeError``/``ValueError`` naming the field and leaves the env unchanged."""
        self.check_state_dict(state)()

    def check_state_dict(self, state: Any, where: str = "state") -> StateCommit:
        """Validate every field of a :meth:`state_dict` without changing the env; return the commit.

        ``records``: None (never reset) or ``num_envs`` prompt records; ``pool``: None, absent (checkpoints
        written before prompt pools existed) or at least ``num_envs`` records, and only with ``records``.
        """
        state = check_state_keys(state, where, ("task", "np_random", "records"), optional=("pool",))
        commit_task_and_rng = self._check_task_and_rng_state(state, where)
        records = pool = None
        if state["records"] is not None:
            records = self.task.check_state_records(state["records"], state_field(where, "records"), n=self.num_envs)
        if state.get("pool") is not None:
            if records is None:
                raise ValueError(f"{state_field(where, 'pool')} must be None when {state_field(where, 'records')} is")
            pool = self.task.check_state_records(state["pool"], state_field(where, "pool"), min_len=self.num_envs)

        def commit() -> None:
            commit_task_and_rng()
            self._records, self._pool = records, pool
            self.task.remember([*(records or ()), *(pool or ())])

        return commit
