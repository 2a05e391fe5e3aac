"""oat_env: online LLM alignment as Gymnasium environments.

Importing this package registers every env id with Gymnasium::

    import gymnasium as gym

from oat_env import forksafe
    import oat_env  # noqa: F401  (registers the oat/* ids)

    env = gym.make("oat/Arithmetic-Duel-v0")
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=8)

Import is cheap: no torch, datasets or model code is imported until an env needs it.
"""

from __future__ import annotations

import gymnasium as gym

from oat_env import forksafe
from oat_env.data import ProceduralPrompts, PromptDataset, PromptRecord, PromptStream
from oat_env.envs import (
    DuelingEnv,
    DuelingTask,
    DuelingVectorEnv,
    QueryBudgetExhausted,
    VerifiableEnv,
    VerifiableTask,
    VerifiableVectorEnv,
)
from oat_env.metrics import RegretTracker, anytime_regret, cumulative_regret, duel_regret, win_rate
from oat_env.oracles import BradleyTerryPreference, OracleResult, PreferenceOracle, RewardOracle
from oat_env.registration import ENV_FACTORIES
from oat_env.spaces import TextPairSpace, TextSpace

__version__ = "0.1.0"


def register_envs() -> None:
    """Register every ``oat/*`` id (idempotent: re-importing or reloading is harmless)."""
    for env_id, (single, vector) in ENV_FACTORIES.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=f"oat_env.registration:{single}",
            vector_entry_point=f"oat_env.registration:{vector}",
            disable_env_checker=False,
        )


register_envs()
# A torch oracle in a child forked by Gymnasium's AsyncVectorEnv would otherwise hang (see oat_env.forksafe).
forksafe.install()

__all__ = [
    "ENV_FACTORIES",
    "BradleyTerryPreference",
    "DuelingEnv",
    "DuelingTask",
    "DuelingVectorEnv",
    "OracleResult",
    "PreferenceOracle",
    "PromptDataset",
    "PromptRecord",
    "PromptStream",
    "ProceduralPrompts",
    "QueryBudgetExhausted",
    "RegretTracker",
    "RewardOracle",
    "TextPairSpace",
    "TextSpace",
    "VerifiableEnv",
    "VerifiableTask",
    "VerifiableVectorEnv",
    "anytime_regret",
    "cumulative_regret",
    "duel_regret",
    "register_envs",
    "win_rate",
]
