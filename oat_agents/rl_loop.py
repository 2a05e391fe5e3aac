"""Online RL loops for verifiable-reward envs: single-turn groups and multi-turn episodes.

Single-turn (:func:`run_online_rl`), one round::

    responses = agent.act(obs)                       # B prompts x G samples (contiguous groups)
    obs, rewards, term, trunc, info = env.step(responses)   # ONE batched verifier call for all B·G
    agent.observe(rewards); agent.learn()            # learn every round
    every sync_params_every rounds: agent.sync_weights()

The env must serve every prompt ``G`` times in a row: :func:`make_grouped_vec` builds such a vector
env from any single-turn id (``oat/Arithmetic-v0``, ``oat/GSM8K-v0``, ``oat/MATH-v0``,
``oat/Countdown-v0``). Every response is one oracle query, so a round spends ``B·G`` queries.

Multi-turn (:func:`run_multiturn_rl`): each sub-env of a vector env (``gym.make_vec(
"oat/MathMultiTurn-v0")``, or a ``SyncVectorEnv`` of :class:`~oat_env.envs.tools.PythonToolWrapper`
envs with ``AutoresetMode.SAME_STEP``) runs its own episode; episodes end at different steps. One
loop step = one turn of every sub-env; finished episodes enter the agent's buffer and the agent
learns as soon as it holds ``min_turns_to_learn`` turns. Evaluation: greedy episodes on held-out
problems, ``eval/success_rate`` = solved within ``max_turns`` (plus first-attempt ``eval/accuracy``).

Both loops log like :func:`oat_agents.loop.run_online` (TensorBoard, ``metrics.jsonl``, x-axis =
oracle queries) and evaluate the learner's weights; the single-turn loop shares ``run_online``'s
bookkeeping (:class:`~oat_agents.loop.RoundBookkeeper`): it also dumps evaluations, checkpoints/resumes
(learner, agent buffer, env prompt stream, counters) and runs under ``torchrun``. The multi-turn loop
is single-process.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import gymnasium as gym
import numpy as np

from oat_agents.learners import dist
from oat_agents.loop import LoopConfig, LoopResult, MetricLogger, RoundBookkeeper, check_eval_prompts
from oat_agents.progress import open_progress, update_progress


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

    Under ``torchrun`` every rank answers its own ``num_envs`` prompts per round (as :func:`run_online`:
    the budget counts all ranks, rank 0 logs, checkpoints hold every rank's state).
    """
    batch = env.num_envs
    if batch % agent.config.num_samples != 0:
        raise ValueError(f"num_envs={batch} is not a multiple of the agent's num_samples={agent.config.num_samples}")
    book = RoundBookkeeper(env, agent, config, run_config)
    try:
        obs, _ = book.start()
        while book.another_round_fits():
            metrics: dict[str, float] = {}
            start = time.perf_counter()
            responses = agent.act(obs)
            metrics["actor/generate_s"] = time.perf_counter() - start
            start = time.perf_counter()
            obs, rewards, _, _, infos = env.step(responses)
            metrics["oracle/s"] = time.perf_counter() - start
            agent.observe(rewards)
            feedback = infos.get("final_info", {})
            if "correct" in feedback:
                metrics["actor/accuracy"] = float(np.mean(feedback["correct"]))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses]))
            metrics.update(agent.learn())
            book.end_round(metrics)
            book.after_round(metrics, bar_keys=("train/loss", "actor/reward_mean"))
        book.finish()
    finally:
        book.close()
    return LoopResult(evals=book.evals, queries=book.queries, rounds=book.rounds, cumulative_regret=None)


# ----------------------------------------------------------------------------------------------------
# Multi-turn
# ----------------------------------------------------------------------------------------------------


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


def evaluate_multiturn(task: Any, agent: Any, num_prompts: int, seed: int = 0) -> dict[str, float]:
    """Greedy multi-turn episodes on ``num_prompts`` held-out problems of a ``MultiTurnTask``.

    Runs on a shallow copy of the task with its own unlimited query budget, so evaluation spends none of
    the training budget and leaves the training stream untouched. All unfinished episodes advance
    together (one batched generate and one verifier call per turn). Returns ``eval/success_rate``
    (solved within ``max_turns``), ``eval/accuracy`` (solved at the first attempt) and ``eval/mean_turns``.
    """
    from oat_env.envs.base import QueryBudget

    if num_prompts < 1:
        raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
    eval_task = copy.copy(task)
    eval_task.budget = QueryBudget(None)
    episodes = [eval_task.new_episode(r) for r in eval_task.eval_records(num_prompts, seed)]
    solved = np.zeros(len(episodes), dtype=bool)
    first = np.zeros(len(episodes), dtype=bool)
    turns = np.zeros(len(episodes), dtype=np.int64)
    active = list(range(len(episodes)))
    while active:
        observations = [eval_task.observation(episodes[i]) for i in active]
        responses = agent.generate_greedy(observations)
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
    }


def run_multiturn_rl(
    env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None
) -> LoopResult:
    """Run turn-level RL on a multi-turn vector env until ``total_queries`` verifier queries are spent.

    ``config.sync_params_every`` counts learner updates (1 = sync after every ``learn()``). Evaluation
    (every ``eval_query_interval`` queries, and at the start and end) runs greedy episodes on
    ``num_eval_prompts`` held-out problems (:func:`evaluate_multiturn`) when the env exposes its
    ``MultiTurnTask`` (for a ``PythonToolWrapper`` env this is the wrapped task: evaluation runs no tools).
    Training metrics include ``actor/episode_success`` (finished training episodes
    solved within the turn limit) and ``actor/episode_turns``.
    """
    if config.eval_query_interval and config.sync_params_every != 1:
        raise ValueError("run_multiturn_rl evaluates the policy as synced: use sync_params_every=1 with evaluation")
    if dist.world_size() > 1:
        raise ValueError(f"run_multiturn_rl runs in one process; it was started in {dist.world_size()} (torchrun): "
                         "launch it without a launcher, or use run_online_rl for multi-process training")
    logger = MetricLogger(config, run_config)
    task = find_multiturn_task(env)
    evals: list[dict[str, float]] = []
    steps, learns, last_eval_at = 0, 0, -1
    finished_success: list[float] = []
    finished_turns: list[float] = []

    def run_eval(queries: int) -> None:
        nonlocal last_eval_at
        if task is None:
            return
        start = time.perf_counter()
        metrics = evaluate_multiturn(task, agent, config.num_eval_prompts, config.eval_seed)
        metrics["eval/generate_s"] = time.perf_counter() - start
        metrics["misc/queries"] = queries
        evals.append(metrics)
        logger.log(metrics, queries)
        last_eval_at = queries

    check_eval_prompts(env, config)
    obs, _ = env.reset(seed=config.seed)
    num_envs = env.num_envs
    bar = open_progress(config, 0)
    try:
        if config.eval_query_interval:
            run_eval(count_queries(env))
        while count_queries(env) + num_envs <= config.total_queries:
            metrics: dict[str, float] = {}
            start = time.perf_counter()
            responses = agent.act_turns(obs)
            metrics["actor/generate_s"] = time.perf_counter() - start
            start = time.perf_counter()
            obs, rewards, terminated, truncated, infos = env.step(responses)
            metrics["oracle/s"] = time.perf_counter() - start
            done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
            agent.observe_turns(rewards, done)
            steps += 1
            final = infos.get("final_info", {})
            for i in np.flatnonzero(done):
                if "success" in final:
                    finished_success.append(float(bool(final["success"][i])))
                if "turn" in final:
                    finished_turns.append(float(final["turn"][i]))
            if agent.ready_to_learn():
                metrics.update(agent.learn())
                learns += 1
                if config.sync_params_every and learns % config.sync_params_every == 0:
                    metrics["misc/weight_sync_s"] = agent.sync_weights()
                if finished_success:
                    metrics["actor/episode_success"] = float(np.mean(finished_success))
                if finished_turns:
                    metrics["actor/episode_turns"] = float(np.mean(finished_turns))
                finished_success.clear()
                finished_turns.clear()
            queries = count_queries(env)
            metrics.update({"misc/queries": queries, "misc/steps": steps, "misc/learns": learns})
            logger.log(metrics, queries)
            if config.eval_query_interval and queries - last_eval_at >= config.eval_query_interval:
                run_eval(queries)
            update_progress(bar, queries, metrics, evals, ("train/loss", "actor/reward_mean"))
        if config.eval_query_interval and last_eval_at != count_queries(env):
            run_eval(count_queries(env))
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    return LoopResult(evals=evals, queries=count_queries(env), rounds=steps, cumulative_regret=None)
