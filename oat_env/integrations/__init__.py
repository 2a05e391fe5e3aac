"""Adapters that plug oat envs into other training libraries (each imports its library lazily).

* :mod:`oat_env.integrations.trl` -- prompts, per-item rewards and multi-turn tool environments for
  TRL's ``GRPOTrainer`` (and reward functions for its ``OnlineDPOTrainer``).
"""
