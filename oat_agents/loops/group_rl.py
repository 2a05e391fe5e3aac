"""The online loop of group-based RL on a verifiable-reward env (GRPO, Dr.GRPO, RLOO, REINFORCE).

One round (:func:`run_online_rl`)::

    responses = agent.act(obs)                       # B prompts x G samples (contiguous groups)
    obs, rewards, term, trunc, info = env.step(responses)   # ONE batched verifier call for all B·G
    agent.observe(rewards); agent.learn()            # learn every round
    every sync_params_every rounds: agent.sync_weights()
    (LoopConfig.asynchronous: the next round's act runs in an actor thread during learn(), loops.overlap)

The env must serve every prompt ``G`` times in a row: ``gym.make_vec(id, num_envs=B*G, group_size=G)`` for any
single-turn verifiable id (``oat/Arithmetic-v0``, ``oat/GSM8K-v0``, ``oat/MATH-v0``, ``oat/Countdown-v0``,
``oat/ReasoningGym-v0``; :mod:`oat_env.envs.grouped`), or :func:`make_grouped_vec` which calls it. Every response is one oracle query, so a round spends ``B·G`` queries. Budget,
evaluation (and its dumps), logging, checkpoint/resume, ranks and progress are the
:class:`~oat_agents.loops.bookkeeping.RoundBookkeeper`'s, as for :func:`~oat_agents.loops.duel.run_online`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from oat_agents.loops.bookkeeping import LoopConfig, LoopResult, RoundBookkeeper


def make_grouped_vec(env_id: str, num_prompts: int, group_size: int, **env_kwargs: Any) -> Any:
    """``gym.make_vec(env_id, num_envs=num_prompts * group_size, group_size=group_size, **env_kwargs)``: a vector env
    serving ``num_prompts`` distinct prompts per round, each ``group_size`` times in a row (groups contiguous; the
    grouping is the env's own, :mod:`oat_env.envs.grouped`). ``env_id`` is a single-turn verifiable id."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be an int >= 1, got {num_prompts!r}")
    return gym.make_vec(env_id, num_envs=num_prompts * group_size, group_size=group_size, **env_kwargs)


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
            responses, (obs, rewards, _, _, infos), metrics = bookkeeper.act_and_step(lambda obs=obs: agent.act(obs))
            agent.observe(rewards)
            feedback = infos.get("final_info", {})
            if "correct" in feedback:
                metrics["actor/accuracy"] = float(np.mean(feedback["correct"]))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses]))
            metrics.update(bookkeeper.learn(agent.learn, act_next=lambda obs=obs: agent.act(obs)))
            bookkeeper.count_round(metrics)
            bookkeeper.report_round(metrics, bar_keys=("train/loss", "actor/reward_mean"))
        bookkeeper.finish()
    finally:
        bookkeeper.close()
    return LoopResult(evals=bookkeeper.evals, queries=bookkeeper.queries, rounds=bookkeeper.rounds, cumulative_regret=None)
