"""The online loops (DESIGN.md §4): one per env kind, all on one bookkeeper.

* :mod:`~oat_agents.loops.bookkeeping` — :class:`LoopConfig` and :class:`RoundBookkeeper`: budget, ranks, logging,
  evaluation, checkpoints, progress (one copy for every loop).
* :mod:`~oat_agents.loops.duel` — :func:`run_online`: preference duels (DAP, SEA, APL, XPO agents).
* :mod:`~oat_agents.loops.group_rl` — :func:`run_online_rl`, :func:`make_grouped_vec`: groups of samples of a
  verifiable prompt (GRPO, Dr.GRPO, RLOO, REINFORCE).
* :mod:`~oat_agents.loops.multiturn` — :func:`run_multiturn_rl`: turn-level RL on multi-turn episodes.
"""

from oat_agents.loops.bookkeeping import (
    LoopConfig,
    LoopResult,
    MetricLogger,
    RoundBookkeeper,
    check_eval_prompts,
    evaluate,
    evaluate_learner,
)
from oat_agents.loops.duel import run_online
from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl
from oat_agents.loops.multiturn import (
    count_queries,
    evaluate_multiturn,
    find_multiturn_task,
    run_multiturn_rl,
)

__all__ = [
    "LoopConfig",
    "LoopResult",
    "MetricLogger",
    "RoundBookkeeper",
    "check_eval_prompts",
    "count_queries",
    "evaluate",
    "evaluate_learner",
    "evaluate_multiturn",
    "find_multiturn_task",
    "make_grouped_vec",
    "run_multiturn_rl",
    "run_online",
    "run_online_rl",
]
