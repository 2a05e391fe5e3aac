"""What :mod:`oat_env.integrations.trl` and :mod:`oat_env.integrations.trl_tools` share: the env an
adapter builds and wraps, and the conversions between TRL's prompts/completions (strings or lists of
``{"role", "content"}`` messages) and the env's observation and response strings.

Nothing here imports torch, TRL, ``datasets`` or ``oat_agents``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym

from oat_env.data.chat_data import decode_messages, encode_messages
from oat_env.envs.base import BanditTask
from oat_env.envs.dueling import DuelingTask
from oat_env.envs.multiturn import MultiTurnTask
from oat_env.envs.verifiable import VerifiableTask

Message = Mapping[str, Any]
Prompt = str | Sequence[Message]
Completion = str | Sequence[Message]


def _make_env(env_id: str, env_kwargs: dict[str, Any]) -> tuple[gym.Env, BanditTask | MultiTurnTask]:
    """``gym.make(env_id, **env_kwargs)`` and its task; ``TypeError`` for an env that has none."""
    env = gym.make(env_id, **env_kwargs)
    task = getattr(env.unwrapped, "task", None)
    if not isinstance(task, (VerifiableTask, DuelingTask)):
        env.close()
        raise TypeError(f"{env_id} is not an oat verifiable, multi-turn or dueling env (no task to adapt)")
    return env, task


def _json_messages(env_kwargs: Mapping[str, Any]) -> bool:
    """Whether the env's prompts are JSON message lists (``chat_format="messages"``)."""
    return env_kwargs.get("chat_format") == "messages"


def _env_is_conversational(env_kwargs: Mapping[str, Any], task: Any) -> bool:
    return _json_messages(env_kwargs) or getattr(task, "observation_format", None) == "messages"


def _to_trl_prompt(text: str, conversational: bool, json_messages: bool) -> Prompt:
    if not conversational:
        return text
    if json_messages:
        return decode_messages(text)
    return [{"role": "user", "content": text}]


def _content_text(content: Any) -> str:
    """A message's content as text: a ``str``, or the ``text`` parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, Sequence):
        return "".join(
            part.get("text", "") if isinstance(part, Mapping) else str(part)
            for part in content
            if not isinstance(part, Mapping) or part.get("type", "text") == "text"
        )
    raise TypeError(f"message content must be a str or a list of content blocks, got {type(content).__name__}")


def _is_messages(value: Any) -> bool:
    return not isinstance(value, str) and isinstance(value, Sequence) and all(isinstance(m, Mapping) for m in value)


def _completion_text(completion: Any, index: int) -> str:
    """A TRL completion's text: the string, or the content of its last assistant message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not _is_messages(completion):
        raise TypeError(
            f"completions[{index}] must be a str or a list of message dicts, got {type(completion).__name__}"
        )
    for message in reversed(completion):
        if message.get("role") == "assistant":
            return _content_text(message.get("content"))
    return ""


def _prompt_text(prompt: Any, json_messages: bool, index: int) -> str:
    """The env's observation string behind a TRL prompt (used without a ``prompt_text`` column)."""
    if isinstance(prompt, str):
        return prompt
    if not _is_messages(prompt):
        raise TypeError(f"prompts[{index}] must be a str or a list of message dicts, got {type(prompt).__name__}")
    messages = [{"role": m.get("role"), "content": _content_text(m.get("content"))} for m in prompt]
    if json_messages:
        return encode_messages(messages)
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return messages[-1]["content"] if messages else ""


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
