"""TEMPORARY: the old path of the tiny models, now in :mod:`oat_agents.tiny`, kept only for
``oat_agents/bench/regret/arithmetic.py`` (another engineer's file), which imports ``CharTokenizer, build_tiny_llama``
from here. Delete this module once that import reads ``from oat_agents.tiny import CharTokenizer, build_tiny_llama``."""

from oat_agents.tiny import CharTokenizer, build_tiny_llama

__all__ = ["CharTokenizer", "build_tiny_llama"]
