"""The wire side of ``oat-serve-env``: the OpenEnv action, observation and state types of oat envs,
the JSON-safe conversion of Gymnasium observations and infos, and :class:`OatEnvClient`.

The protocol these types carry (WebSocket messages, actions, observations, errors) is documented in
:mod:`oat_env.integrations.openenv`, the server, which re-exports every public name of this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np

try:
    from openenv.core.client_types import StepResult
    from openenv.core.env_client import EnvClient
    from openenv.core.env_server import Action, Observation, State
except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError(
        "oat_env.integrations.openenv_wire (OatEnvClient) needs openenv-core: pip install 'openenv-core>=0.3,<0.4'"
    ) from err
from pydantic import Field, StrictStr

from oat_env.spaces import TextPairSpace, TextSpace

__all__ = [
    "ACTION_TYPES",
    "ActionKind",
    "DuelAction",
    "OatEnvClient",
    "OatObservation",
    "OatState",
    "TextAction",
    "action_kind",
    "jsonable",
]

ActionKind = Literal["text", "duel"]


# ----------------------------------------------------------------------------- wire types
class TextAction(Action):
    """The action of verifiable and multi-turn envs: one response to the observed prompt."""

    response: StrictStr = Field(description="the response to the observed prompt (or conversation)")


class DuelAction(Action):
    """The action of dueling envs: the pair of responses the env's oracle compares."""

    response_a: StrictStr = Field(description="first response of the duel (reward 1.0 iff it wins)")
    response_b: StrictStr = Field(description="second response of the duel")


ACTION_TYPES: dict[ActionKind, type[Action]] = {"text": TextAction, "duel": DuelAction}


class OatObservation(Observation):
    """A Gymnasium ``(obs, reward, terminated, truncated, info)`` as an OpenEnv observation."""

    prompt: str | list[dict[str, Any]] = Field(
        default="", description="the Gymnasium observation: the prompt, or the conversation so far"
    )
    terminated: bool = Field(default=False, description="Gymnasium terminated flag")
    truncated: bool = Field(default=False, description="Gymnasium truncated flag")
    info: dict[str, Any] = Field(default_factory=dict, description="the Gymnasium info, JSON-safe")


class OatState(State):
    """The session's state: OpenEnv's ``episode_id``/``step_count`` plus the env id and ``done``."""

    env_id: str = Field(default="", description="the served oat env id")
    done: bool = Field(default=True, description="no episode is running: the next call must be a reset")


# ----------------------------------------------------------------------------- conversion
def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made Python numbers/lists, tuples made lists, mapping
    keys made ``str``, non-finite floats made ``None`` and any other object made ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def action_kind(space: gym.Space) -> ActionKind:
    """``"duel"`` for a :class:`TextPairSpace`, ``"text"`` for a :class:`TextSpace`; else ``TypeError``."""
    if isinstance(space, TextPairSpace):
        return "duel"
    if isinstance(space, TextSpace):
        return "text"
    raise TypeError(f"cannot serve an env whose action space is {space}: expected TextSpace or TextPairSpace")


# ----------------------------------------------------------------------------- client
class OatEnvClient(EnvClient[Action, OatObservation, OatState]):
    """OpenEnv's WebSocket :class:`~openenv.core.EnvClient` with typed oat observations.

    ``step`` takes a :class:`TextAction` / :class:`DuelAction` (or, for convenience, a ``str`` or a
    pair of strings); observations come back as :class:`OatObservation` with ``metadata`` rebuilt
    (``{"terminated", "truncated", "info"}``). Async like every ``EnvClient``; ``.sync()`` for the
    blocking wrapper.
    """

    def _step_payload(self, action: Any) -> dict[str, Any]:
        if isinstance(action, Action):
            return action.model_dump()
        if isinstance(action, str):
            return {"response": action}
        if isinstance(action, (tuple, list)) and len(action) == 2:
            return {"response_a": action[0], "response_b": action[1]}
        if isinstance(action, Mapping):
            return dict(action)
        raise TypeError(f"action must be a TextAction, DuelAction, str or pair of str, got {type(action).__name__}")

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[OatObservation]:
        fields = dict(payload.get("observation") or {})
        obs = OatObservation(**fields, done=payload.get("done", False), reward=payload.get("reward"))
        # Newer openenv-core sends Observation.metadata as a top-level key; 0.3 drops it.
        obs.metadata = payload.get("metadata") or {
            "terminated": obs.terminated,
            "truncated": obs.truncated,
            "info": obs.info,
        }
        return StepResult(observation=obs, reward=obs.reward, done=obs.done)

    def _parse_state(self, payload: dict[str, Any]) -> OatState:
        return OatState(**payload)
