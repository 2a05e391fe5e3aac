"""oat_agents: agents that learn online from oat_env environments.

An agent bundles a policy (actor: transformers or vLLM generation), a learner (DeepSpeed engine +
loss from ``oat_agents.algorithms``) and an optional explorer (DESIGN.md §4). The public API is one import::

    from oat_agents import (DAPAgent, DAPAgentConfig, HFPolicy, LearnerConfig, LearnerEngine, LoopConfig,
                            run_online)

Every name in ``__all__`` is resolved on first use (module ``__getattr__``), so ``import oat_agents`` stays cheap:
it imports neither torch nor DeepSpeed nor vLLM until a name that needs them is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it. One table, so a moved module is one edit here.
_LOCATIONS: dict[str, str] = {
    # agents and their configs
    "DAPAgent": "oat_agents.agents.dap",
    "DAPAgentConfig": "oat_agents.agents.dap",
    "SEAAgent": "oat_agents.agents.sea",
    "SEAAgentConfig": "oat_agents.agents.sea",
    "APLAgent": "oat_agents.agents.apl",
    "APLAgentConfig": "oat_agents.agents.apl",
    "XPOAgent": "oat_agents.agents.xpo",
    "XPOAgentConfig": "oat_agents.agents.xpo",
    "GroupRLAgent": "oat_agents.agents.group_rl",
    "GroupRLAgentConfig": "oat_agents.agents.group_rl",
    "MultiTurnAgent": "oat_agents.agents.multiturn",
    "MultiTurnAgentConfig": "oat_agents.agents.multiturn",
    "Agent": "oat_agents.agents.base",
    "AgentConfig": "oat_agents.agents.base",
    # objectives
    "DAPConfig": "oat_agents.algorithms.dap",
    "PGConfig": "oat_agents.algorithms.pg",
    # exploration
    "Explorer": "oat_agents.exploration.explorer",
    "ExplorerConfig": "oat_agents.exploration.explorer",
    # learners
    "LearnerEngine": "oat_agents.learners.engine",
    "LearnerConfig": "oat_agents.learners.engine",
    "Critic": "oat_agents.learners.critic",
    "CriticConfig": "oat_agents.learners.critic",
    "CriticTrainer": "oat_agents.learners.critic",
    "init_distributed": "oat_agents.learners.dist",
    # policies (vllm.py imports vllm only inside VLLMPolicy)
    "HFPolicy": "oat_agents.policies.hf",
    "VLLMPolicy": "oat_agents.policies.vllm",
    "SamplingParams": "oat_agents.policies.base",
    "Generations": "oat_agents.policies.base",
    # the online loops
    "LoopConfig": "oat_agents.loops",
    "LoopResult": "oat_agents.loops",
    "run_online": "oat_agents.loops",
    "run_online_rl": "oat_agents.loops",
    "run_multiturn_rl": "oat_agents.loops",
    "make_grouped_vec": "oat_agents.loops",
    # oat-train (its module lives under cli/, so the name ``train`` here is the function) and the CPU recipes
    "train": "oat_agents.cli.train",
    "TrainConfig": "oat_agents.cli.train",
    "TrainSummary": "oat_agents.cli.train",
    "run_recipe": "oat_agents.recipes",
    "RecipeResult": "oat_agents.recipes",
    # the tiny CPU model
    "CharTokenizer": "oat_agents.tiny",
    "build_tiny_llama": "oat_agents.tiny",
    "WarmupConfig": "oat_agents.tiny",
    "sft_warmup": "oat_agents.tiny",
}

__all__ = sorted(_LOCATIONS)


def __getattr__(name: str) -> Any:
    """Import the public ``name`` from its module on first use and cache it on the package."""
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'oat_agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
