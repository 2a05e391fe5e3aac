"""The online loop of a dueling (preference) env: act, query the oracle, learn, sync, evaluate, log, checkpoint.

One round (DESIGN.md §4)::

    [obs = env.serve_prompts(agent.choose_prompts(env.prompt_pool(P), B))]   # agents that pick prompts (APL)
    actions = agent.act(obs)                          # sample candidates, pick the duel
    obs, r, term, trunc, info = env.step(actions)     # ONE batched oracle call
    agent.observe(labels)                             # fill the buffer
    agent.learn()                                     # DAP loss on the learner
    every sync_params_every rounds: agent.sync_weights()   (1 = online, k = iterative, 0 = never/offline)

With ``LoopConfig.asynchronous`` the next round's ``act`` runs in an actor thread during ``learn()``
(:mod:`~oat_agents.loops.overlap`).

Budget, evaluation, logging, checkpoints, ranks and progress are the :class:`~oat_agents.loops.bookkeeping.
RoundBookkeeper`'s. This loop adds the regret of the dueled pairs where the oracle has a latent utility:
``regret/step`` and ``regret/cumulative`` (all ranks' pairs, summed every round), checkpointed with the rest.
Under ``torchrun`` one round trains on ``world × num_envs`` pairs; each rank's explorer (SEA's ERM) learns
from its own rank's labels; ``oat-train`` seeds rank ``r``'s agent with ``seed + r`` so ranks sample
differently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oat_agents.loops.bookkeeping import LoopConfig, LoopResult, RoundBookkeeper
from oat_env.metrics import RegretTracker


def run_online(env: Any, agent: Any, config: LoopConfig, run_config: dict[str, Any] | None = None) -> LoopResult:
    """Run the online loop of a DAP agent against a vector dueling env until ``total_queries``.

    ``env`` is a vector env (``gym.make_vec``) whose ``step`` takes ``(responses_a, responses_b)``;
    its ``num_envs`` prompts per round are one batch of duels.
    """
    unwrapped = env.unwrapped
    tracker = RegretTracker()  # this rank's pairs
    regret_history: tuple[list[int], list[float]] = ([], [])  # all ranks': (queries, cumulative regret)
    has_regret = True
    # Agents that choose which prompts to query (APL) declare a pool size > num_envs.
    pool_size = int(getattr(agent, "prompt_pool_size", 0) or 0)
    if pool_size and not callable(getattr(unwrapped, "prompt_pool", None)):
        raise TypeError(f"{type(agent).__name__} selects prompts from a pool, but {type(unwrapped).__name__} "
                        "has no prompt_pool()/serve_prompts() (use an oat_env single-turn vector env)")
    bookkeeper = RoundBookkeeper(env, agent, config, run_config,
                           extra_state=lambda: ({"regret": tracker.state_dict()}, {"regret_history": regret_history}))
    try:
        obs, restored = bookkeeper.start()
        if restored is not None:
            tracker.load_state_dict(restored[0]["regret"])
            regret_history = tuple(list(h) for h in restored[1]["regret_history"])
        def act(obs: Any) -> tuple[list[str], list[str]]:
            if pool_size:  # APL: the agent picks which of a larger pool of prompts the round answers
                obs = unwrapped.serve_prompts(agent.choose_prompts(unwrapped.prompt_pool(pool_size), env.num_envs))
            return agent.act(obs)

        while bookkeeper.another_round_fits():
            (responses_a, responses_b), (obs, rewards, _, _, infos), metrics = bookkeeper.act_and_step(
                lambda obs=obs: act(obs))
            feedback = infos["final_info"]
            agent.observe(feedback["label"])
            step_regret = 0.0
            if has_regret:
                try:
                    step_regret = tracker.update(feedback)
                except KeyError:  # the oracle has no latent utility: regret is unknown
                    has_regret = False
            metrics["actor/label_mean"] = float(np.mean(rewards))
            metrics["actor/response_chars"] = float(np.mean([len(r) for r in responses_a + responses_b]))
            metrics.update(bookkeeper.learn(agent.learn, act_next=lambda obs=obs: act(obs)))
            (round_regret,) = bookkeeper.count_round(metrics, sums=(step_regret,))
            if has_regret:
                cumulative = (regret_history[1][-1] if regret_history[1] else 0.0) + round_regret
                regret_history[0].append(bookkeeper.queries)
                regret_history[1].append(cumulative)
                metrics["regret/step"] = round_regret
                metrics["regret/cumulative"] = cumulative
            bookkeeper.report_round(metrics, bar_keys=("train/loss", "regret/cumulative"))
        bookkeeper.finish()
    finally:
        bookkeeper.close()
    has_history = has_regret and bool(regret_history[0])
    return LoopResult(
        evals=bookkeeper.evals,
        queries=bookkeeper.queries,
        rounds=bookkeeper.rounds,
        cumulative_regret=regret_history[1][-1] if has_history else None,
        regret_history=regret_history if has_history else None,
    )
