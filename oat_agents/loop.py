"""TEMPORARY: the old path of :mod:`oat_agents.loops`, kept only for ``oat_agents/bench/regret/arithmetic.py``
(another engineer's file, edited in parallel), which imports ``LoopConfig, run_online`` from here. Delete this
module once that import reads ``from oat_agents import LoopConfig, run_online``."""

from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.duel import run_online

__all__ = ["LoopConfig", "run_online"]
