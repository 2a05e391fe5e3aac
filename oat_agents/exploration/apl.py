"""TEMPORARY: the old path of :mod:`oat_agents.exploration.prompt_entropy`, kept only for
``oat_agents/bench/regret/linear.py`` (another engineer's file), which imports from here. Delete this module once
that import reads ``from oat_agents.exploration.prompt_entropy import (implicit_reward_margin_pairs,
predictive_entropy, select_high_entropy_prompts)``."""

from oat_agents.exploration.prompt_entropy import (
    implicit_reward_margin_pairs,
    predictive_entropy,
    select_high_entropy_prompts,
)

__all__ = ["implicit_reward_margin_pairs", "predictive_entropy", "select_high_entropy_prompts"]
