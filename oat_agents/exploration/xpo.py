"""TEMPORARY: the old path of :mod:`oat_agents.exploration.optimism`, kept only for
``oat_agents/bench/regret/linear.py`` (another engineer's file), which imports ``xpo_loss`` from here. Delete this
module once that import reads ``from oat_agents.exploration.optimism import xpo_loss``."""

from oat_agents.exploration.optimism import xpo_exploration_term, xpo_loss

__all__ = ["xpo_exploration_term", "xpo_loss"]
