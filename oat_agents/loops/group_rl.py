"""The online loop of group-based RL on a verifiable-reward env (GRPO, Dr.GRPO, RLOO, REINFORCE).

One round (:func:`run_online_rl`)::

    responses = agent.act(obs)                       # B prompts x G samples (contiguous groups)
    obs, rewards, term, trunc, info = env.step(responses)   # ONE batched verifier call for all B·G
    agent.observe(rewards); agent.learn()            # learn every round
    every sync_params_every rounds: agent.sync_weights()

The env must serve every prompt ``G`` times in a row: :func:`make_grouped_vec` builds such a vector
env from any single-turn id (``oat/Arithmetic-v0``, ``oat/GSM8K-v0``, ``oat/MATH-v0``,
``oat/Countdown-v0``). Every response is one oracle query, so a round spends ``B·G`` queries. Budget,
evaluation (and its dumps), logging, checkpoint/resume, ranks and progress are the
:class:`~oat_agents.loops.bookkeeping.RoundBookkeeper`'s, as for :func:`~oat_agents.loops.duel.run_online`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from oat_agents.loops.bookkeeping import LoopConfig, LoopResult, RoundBookkeeper, act_and_step


class GroupedTask:
    """A bandit task whose prompt stream serves every prompt ``group_size`` times in a row.

    Wraps an ``oat_env`` task (e.g. ``VerifiableTask``): ``next_prompts(n)`` draws ``n / G`` prompts
    from the inner task and repeats each ``G`` times; everything else (feedback, budget, evaluation,
    state) is the inner task's. A ``SingleTurnVectorEnv`` over it with ``num_envs = B·G`` therefore
    grades all group members in one batched oracle call per ``step``.
    """

    def __init__(self, task: Any, group_size: int):
        if not isinstance(group_size, int) or group_size < 1:
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


def make_grouped_vec(env_id: str, num_prompts: int, group_size: int, **env_kwargs: Any) -> Any:
    """A vector env of ``num_prompts · group_size`` sub-envs serving ``num_prompts`` distinct prompts per
    round, each ``group_size`` times in a row (groups contiguous), for group-based RL.

    ``env_id`` is a registered single-turn id whose vector env is a ``SingleTurnVectorEnv``;
    ``env_kwargs`` go to ``gym.make_vec``.
    """
    from oat_env.envs.base import SingleTurnVectorEnv

    if not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be an int >= 1, got {num_prompts!r}")
    base = gym.make_vec(env_id, num_envs=1, **env_kwargs).unwrapped
    if not isinstance(base, SingleTurnVectorEnv):
        raise TypeError(f"{env_id} is not a single-turn env (its vector env is {type(base).__name__})")
    return SingleTurnVectorEnv(GroupedTask(base.task, group_size), num_prompts * group_size)


def run_online_rl(env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None) -> LoopResult:
    """Run group-based RL (GRPO/Dr.GRPO/RLOO/REINFORCE) against a grouped single-turn vector env until
    ``total_queries`` verifier queries are spent. Returns the evaluation history and counters.

    Under ``torchrun`` every rank answers its own ``num_envs`` prompts per round (as :func:`~oat_agents.loops.duel.run_online`:
    the budget counts all ranks, rank 0 logs, checkpoints hold every rank's state).
    """
    batch = env.num_envs
    if batch % agent.config.num_samples != 0:
        raise ValueError(f"num_envs={batch} is not a multiple of the agent's num_samples={agent.config.num_samples}")
    bookkeeper = RoundBookkeeper(env, agent, config, run_config)
    try:
        obs, _ = bookkeeper.start()
        while bookkeeper.another_round_fits():
            responses, (obs, rewards, _, _, infos), metrics = act_and_step(env, lambda obs=obs: agent.act(obs))
            agent.observe(rewards)
            feedback = infos.get("final_info", {})
            if "correct" in feedback:
                metrics["actor/accuracy"] = float(np.mean(feedback["correct"]))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses]))
            metrics.update(agent.learn())
            bookkeeper.count_round(metrics)
            bookkeeper.report_round(metrics, bar_keys=("train/loss", "actor/reward_mean"))
        bookkeeper.finish()
    finally:
        bookkeeper.close()
    return LoopResult(evals=bookkeeper.evals, queries=bookkeeper.queries, rounds=bookkeeper.rounds, cumulative_regret=None)
