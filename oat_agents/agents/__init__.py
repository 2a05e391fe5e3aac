"""Agents: a policy (actor), a learner and an optional explorer acting in oat_env environments."""

from oat_agents.agents.apl import APLAgent, APLAgentConfig
from oat_agents.agents.base import Agent, AgentConfig
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig, PreferencePair
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.agents.multiturn import MultiTurnAgent, MultiTurnAgentConfig
from oat_agents.agents.policy_gradient import PGAgent, PGAgentConfig, Rollout
from oat_agents.agents.sea import SEAAgent, SEAAgentConfig
from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig

__all__ = [
    "APLAgent",
    "APLAgentConfig",
    "Agent",
    "AgentConfig",
    "DAPAgent",
    "DAPAgentConfig",
    "GroupRLAgent",
    "GroupRLAgentConfig",
    "MultiTurnAgent",
    "MultiTurnAgentConfig",
    "PGAgent",
    "PGAgentConfig",
    "PreferencePair",
    "Rollout",
    "SEAAgent",
    "SEAAgentConfig",
    "XPOAgent",
    "XPOAgentConfig",
]
