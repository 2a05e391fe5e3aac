"""Grouped prompt streams: every prompt served ``G`` times in a row, for group-based RL (GRPO, Dr.GRPO, RLOO).

``gym.make_vec(id, num_envs=B * G, group_size=G)`` (every single-turn verifiable id) gives a vector env whose
``reset``/``step`` serve ``B`` distinct prompts per round, each to ``G`` consecutive sub-envs (groups are
contiguous: sub-envs ``g·G … g·G + G − 1`` answer the same prompt), so one batched verifier call grades every
member of every group. Each response is one query (a round spends ``B·G``). Everything else -- feedback, the
query budget, held-out evaluation, ``state_dict`` -- is the wrapped task's: the prompt stream is part of the
env, not of the agent.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GroupedTask:
    """A bandit task whose prompt stream serves every prompt ``group_size`` times in a row.

    Wraps an ``oat_env`` task (e.g. ``VerifiableTask``): ``next_prompts(n)`` draws ``n / G`` prompts
    from the inner task and repeats each ``G`` times; every other attribute is the inner task's.
    """

    def __init__(self, task: Any, group_size: int):
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
        if not callable(getattr(task, "next_prompts", None)):
            raise TypeError(f"task must have next_prompts(n, rng), got {type(task).__name__}")
        self.inner = task
        self.group_size = group_size

    def next_prompts(self, n: int, rng: np.random.Generator) -> list:
        if n % self.group_size != 0:
            raise ValueError(f"{n} prompts do not split into groups of {self.group_size}")
        records = self.inner.next_prompts(n // self.group_size, rng)
        return [r for r in records for _ in range(self.group_size)]

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not defined here: delegate to the wrapped task.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def group_prompts(env: Any, group_size: int) -> Any:
    """Make the single-turn vector ``env`` serve every prompt ``group_size`` times in a row (in place; returned).

    Raises ``ValueError`` when ``num_envs`` is not a multiple of ``group_size`` and ``TypeError`` for an env
    that is not a single-turn vector env (multi-turn episodes and duels have no groups)."""
    from oat_env.envs.base import SingleTurnVectorEnv

    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    if not isinstance(env, SingleTurnVectorEnv):
        raise TypeError(f"group_size is for single-turn vector envs, not {type(env).__name__}")
    if env.num_envs % group_size:
        raise ValueError(
            f"num_envs={env.num_envs} is not a multiple of group_size={group_size}: pass num_envs = "
            f"prompts per round × group_size (e.g. {group_size * max(env.num_envs // group_size, 1)})"
        )
    if group_size > 1:
        env.task = GroupedTask(env.task, group_size)
    return env
