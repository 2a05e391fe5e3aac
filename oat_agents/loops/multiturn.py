"""The online loop of turn-level RL on a multi-turn env (REINFORCE, PPO with a critic).

Each sub-env of a vector env (``gym.make_vec("oat/MathMultiTurn-v0")``, or a ``SyncVectorEnv`` of
:class:`~oat_env.envs.tools.PythonToolWrapper` envs with ``AutoresetMode.SAME_STEP``) runs its own episode;
episodes end at different steps. One round = one turn of every sub-env::

    responses = agent.act(obs)                                   # one response per sub-env
    obs, rewards, term, trunc, info = env.step(responses)        # ONE batched verifier call
    agent.observe(rewards, term | trunc)                         # finished episodes enter the buffer
    if agent.ready_to_learn(): agent.learn()                     # once min_turns_to_learn turns are buffered
    every sync_params_every learner updates: agent.sync_weights()

Budget, logging, evaluation and progress are the :class:`~oat_agents.loops.bookkeeping.RoundBookkeeper`'s; the
evaluation runs greedy episodes on held-out problems (:func:`evaluate_multiturn`): ``eval/success_rate`` =
solved within ``max_turns`` (plus first-attempt ``eval/accuracy``). The loop runs in one process and does not
checkpoint yet (the episodes in progress, in the env and the agent, are not saved).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from oat_agents.learners import dist
from oat_agents.loops.bookkeeping import LoopConfig, LoopResult, RoundBookkeeper, act_and_step


def find_multiturn_task(env: Any) -> Any:
    """The ``MultiTurnTask`` behind a multi-turn vector env (native, or a ``SyncVectorEnv`` of wrapped
    single envs); None if there is none."""
    unwrapped = env.unwrapped
    task = getattr(unwrapped, "task", None)
    if task is None and hasattr(unwrapped, "envs"):
        task = getattr(unwrapped.envs[0].unwrapped, "task", None)
    return task if task is not None and hasattr(task, "advance") else None


def count_queries(env: Any) -> int:
    """Verifier queries spent by a vector env (summed over sub-envs for a ``SyncVectorEnv``)."""
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "num_queries"):
        return int(unwrapped.num_queries)
    if hasattr(unwrapped, "envs"):
        return int(sum(getattr(e.unwrapped, "num_queries", 0) for e in unwrapped.envs))
    raise TypeError(f"cannot count oracle queries of {type(unwrapped).__name__}")


def evaluate_multiturn(task: Any, agent: Any, num_prompts: int | None, seed: int = 0) -> dict[str, float]:
    """Greedy multi-turn episodes on ``num_prompts`` held-out problems of a ``MultiTurnTask`` (None = all of them).

    Runs on a shallow copy of the task with its own unlimited query budget, so evaluation spends none of
    the training budget and leaves the training stream untouched. All unfinished episodes advance
    together (one batched generate and one verifier call per turn). Returns ``eval/success_rate``
    (solved within ``max_turns``), ``eval/accuracy`` (solved at the first attempt), ``eval/mean_turns`` and
    ``eval/generate_s`` (the seconds spent generating, as the single-turn evaluation reports it).
    """
    from oat_env.envs.base import QueryBudget

    if num_prompts is not None and num_prompts < 1:
        raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
    eval_task = copy.copy(task)
    eval_task.budget = QueryBudget(None)
    episodes = [eval_task.new_episode(r) for r in eval_task.eval_records(num_prompts, seed)]
    solved = np.zeros(len(episodes), dtype=bool)
    first = np.zeros(len(episodes), dtype=bool)
    turns = np.zeros(len(episodes), dtype=np.int64)
    active = list(range(len(episodes)))
    generate_s = 0.0
    while active:
        observations = [eval_task.observation(episodes[i]) for i in active]
        start = time.perf_counter()
        responses = agent.generate_greedy(observations)
        generate_s += time.perf_counter() - start
        _, terminated, info = eval_task.advance([episodes[i] for i in active], responses)
        for k, i in enumerate(active):
            turns[i] = info["turn"][k]
            if info["success"][k]:
                solved[i] = True
                first[i] = info["turn"][k] == 1
        active = [i for k, i in enumerate(active) if not terminated[k]]
    return {
        "eval/success_rate": float(solved.mean()),
        "eval/accuracy": float(first.mean()),
        "eval/mean_turns": float(turns.mean()),
        "eval/generate_s": generate_s,
    }


def run_multiturn_rl(
    env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None
) -> LoopResult:
    """Run turn-level RL on a multi-turn vector env until ``total_queries`` verifier queries are spent.

    ``config.sync_params_every`` counts learner updates (1 = sync after every ``learn()``). Evaluation
    (every ``eval_query_interval`` queries, and at the start and end) runs greedy episodes on
    ``num_eval_prompts`` held-out problems (:func:`evaluate_multiturn`) when the env exposes its
    ``MultiTurnTask`` (for a ``PythonToolWrapper`` env this is the wrapped task: evaluation runs no tools).
    Training metrics include ``actor/episode_success`` (finished training episodes solved within the turn
    limit), ``actor/episode_turns`` and ``misc/learns`` (learner updates so far).
    """
    if config.asynchronous:
        raise ValueError(
            "--loop.asynchronous is not supported by the multi-turn loop (a round steps the env once per turn, "
            "and learns only when episodes finish, so there is no round to generate ahead); run it synchronously"
        )
    if config.eval_query_interval and config.sync_params_every != 1:
        raise ValueError("run_multiturn_rl evaluates the policy as synced: use sync_params_every=1 with evaluation")
    if dist.world_size() > 1:
        raise ValueError(f"run_multiturn_rl runs in one process; it was started in {dist.world_size()} (torchrun): "
                         "launch it without a launcher, or use run_online_rl for multi-process training")
    if config.resume or config.save_every:
        raise ValueError("run_multiturn_rl does not checkpoint yet (the episodes in progress are not saved): "
                         "leave resume=False and save_every=0")
    task = find_multiturn_task(env)
    if task is None:  # nothing to run held-out episodes on
        config = dataclasses.replace(config, eval_query_interval=0)

    def evaluator(queries: int, dump_dir: Path | None) -> dict[str, float]:
        return evaluate_multiturn(task, agent, config.num_eval_prompts, config.eval_seed)

    bookkeeper = RoundBookkeeper(env, agent, config, run_config, count_queries=lambda: count_queries(env),
                                 evaluator=evaluator, checkpoints=False)
    learns = 0
    finished_success: list[float] = []
    finished_turns: list[float] = []
    try:
        obs, _ = bookkeeper.start()
        while bookkeeper.another_round_fits():
            responses, (obs, rewards, terminated, truncated, infos), metrics = act_and_step(
                env, lambda obs=obs: agent.act(obs))
            done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
            agent.observe(rewards, done)
            final = infos.get("final_info", {})
            for i in np.flatnonzero(done):
                if "success" in final:
                    finished_success.append(float(bool(final["success"][i])))
                if "turn" in final:
                    finished_turns.append(float(final["turn"][i]))
            learned = agent.ready_to_learn()
            if learned:
                metrics.update(agent.learn())
                learns += 1
                # The episode statistics of a learner update: the episodes that finished since the last one.
                if finished_success:
                    metrics["actor/episode_success"] = float(np.mean(finished_success))
                if finished_turns:
                    metrics["actor/episode_turns"] = float(np.mean(finished_turns))
                finished_success.clear()
                finished_turns.clear()
            sync_due = learned and bool(config.sync_params_every) and learns % config.sync_params_every == 0
            bookkeeper.count_round(metrics, sync_due=sync_due)
            metrics["misc/learns"] = learns
            bookkeeper.report_round(metrics, bar_keys=("train/loss", "actor/reward_mean"))
        bookkeeper.finish()
    finally:
        bookkeeper.close()
    return LoopResult(evals=bookkeeper.evals, queries=bookkeeper.queries, rounds=bookkeeper.rounds,
                      cumulative_regret=None)
