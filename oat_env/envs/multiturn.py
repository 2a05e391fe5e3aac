"""Multi-turn math with verifier feedback (DESIGN.md §2.3).

An episode is one problem and up to ``max_turns`` attempts. After a wrong attempt the env replies
with textual feedback and the agent tries again; a correct attempt or the last allowed attempt ends
the episode.

* Observation: the conversation so far. ``observation_format="text"`` (default): one string, the
  prompt followed by each earlier attempt and the env's feedback (``prompt + response + "\\n\\n" +
  feedback + "\\n\\n"``), so a base model simply continues it. ``"messages"``: a tuple of
  ``{"role", "content"}`` dicts (user prompt, then assistant/user pairs) for chat templates.
* Action: the next response, a ``str`` (a sequence of ``num_envs`` strings for the vector env).
* Reward: on a correct attempt at turn ``t`` (1-based), ``success_reward - turn_penalty * (t - 1)``;
  on the final wrong attempt, ``failure_reward``; on an intermediate wrong attempt,
  ``per_turn_reward`` (optional shaping, default 0).
* Termination: ``terminated=True`` on success or after ``max_turns`` attempts (the turn limit is part
  of the task: no reward exists beyond it, so there is nothing to bootstrap); ``truncated`` is
  always False.
* Info: ``correct``, ``formatted``, ``extracted_answer``, ``score``, ``turn`` (attempts so far) and
  ``success`` (correct on this step). Each attempt is one verifier query (``max_queries`` budget).

The vector env steps sub-envs whose episodes have different lengths: every attempt of every
sub-env is graded in one batched verifier call, and finished sub-envs are reset in the same step
(``AutoresetMode.SAME_STEP``), their last observation and info in ``final_obs``/``final_info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from oat_env.data.records import PromptRecord
from oat_env.data.sources import PromptSource
from oat_env.envs.base import DEFAULT_MAX_PROMPT_LENGTH, DEFAULT_MAX_RESPONSE_LENGTH, TaskEnvMixin
from oat_env.envs.verifiable import VerifiableTask
from oat_env.oracles.base import RewardOracle
from oat_env.spaces import ConversationSpace, TextSpace
from oat_env.state import (
    StateCommit,
    check_state_int,
    check_state_keys,
    check_state_list,
    check_state_record,
    state_field,
)

# Headroom per turn for the feedback text in the observation-length bound.
_FEEDBACK_HEADROOM = 2_000


@dataclass
class Episode:
    """One sub-env's problem and conversation so far."""

    record: PromptRecord
    turn: int = 0
    text: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)


class MultiTurnTask(VerifiableTask):
    """Episodes of attempts and feedback on top of a verifier.

    Args:
        prompts: the prompt source (records need an ``answer``).
        verifier: a :class:`RewardOracle` reporting ``correct`` (and ``formatted``,
            ``extracted_answer``) per response, given gold answers as ``references``.
        max_turns: attempts per problem (>= 1).
        success_reward / failure_reward / turn_penalty / per_turn_reward: see the module docstring.
        feedback_wrong: feedback after a wrong but formatted attempt; ``{answer}`` is replaced by
            the extracted answer.
        feedback_unformatted: feedback when no answer could be extracted.
        observation_format: ``"text"`` or ``"messages"``.
    """

    def __init__(
        self,
        prompts: PromptSource,
        verifier: RewardOracle,
        *,
        max_turns: int = 3,
        success_reward: float = 1.0,
        failure_reward: float = 0.0,
        turn_penalty: float = 0.0,
        per_turn_reward: float = 0.0,
        feedback_wrong: str = "Your answer {answer} is incorrect. Please reconsider and try again.",
        feedback_unformatted: str = "I could not find a final answer in your response. Please try again and "
        "state your final answer clearly.",
        observation_format: Literal["text", "messages"] = "text",
        max_queries: int | None = None,
        max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH,
        max_response_length: int = DEFAULT_MAX_RESPONSE_LENGTH,
    ):
        super().__init__(
            prompts,
            verifier,
            correct_reward=success_reward,
            incorrect_reward=failure_reward,
            max_queries=max_queries,
            max_prompt_length=max_prompt_length,
            max_response_length=max_response_length,
        )
        if not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
        if observation_format not in ("text", "messages"):
            raise ValueError(f"observation_format must be 'text' or 'messages', got {observation_format!r}")
        self.max_turns = int(max_turns)
        self.success_reward = float(success_reward)
        self.failure_reward = float(failure_reward)
        self.turn_penalty = float(turn_penalty)
        self.per_turn_reward = float(per_turn_reward)
        self.feedback_wrong = feedback_wrong
        self.feedback_unformatted = feedback_unformatted
        self.observation_format = observation_format
        self.last_metrics: dict[str, float] = {}
        max_obs = max_prompt_length + self.max_turns * (max_response_length + _FEEDBACK_HEADROOM)
        if observation_format == "text":
            self.observation_space = TextSpace(max_obs)
        else:
            self.observation_space = ConversationSpace(max(max_prompt_length, max_response_length, _FEEDBACK_HEADROOM),
                                                       max_messages=2 * self.max_turns + 1)

    # -- episodes --------------------------------------------------------------------------
    def new_episode(self, record: PromptRecord) -> Episode:
        return Episode(record=record, text=record.prompt, messages=[{"role": "user", "content": record.prompt}])

    def observation(self, episode: Episode) -> str | tuple:
        if self.observation_format == "text":
            return episode.text
        return tuple(dict(m) for m in episode.messages)

    def check_state_episodes(self, value: Any, where: str, n: int) -> list[Episode]:
        """Episodes saved by a vector env: ``n`` of them, each as :meth:`advance` leaves it (see
        :meth:`_check_state_episode`)."""
        items = check_state_list(value, where, n, why="one per sub-environment")
        return [self._check_state_episode(ep, state_field(where, i)) for i, ep in enumerate(items)]

    def _check_state_episode(self, value: Any, where: str) -> Episode:
        """One saved episode: mid-conversation (``turn < max_turns``), ``2 * turn + 1`` messages alternating
        user/assistant and starting with the prompt, ``text`` the same conversation, fitting the observation space."""
        state = check_state_keys(value, where, ("record", "turn", "text", "messages"))
        record = check_state_record(state["record"], state_field(where, "record"), self.prompt_space.max_length)
        turn = check_state_int(state["turn"], state_field(where, "turn"), maximum=self.max_turns - 1)
        where_messages = state_field(where, "messages")
        items = check_state_list(state["messages"], where_messages, 2 * turn + 1, why=f"2 * turn + 1, turn is {turn}")
        messages = [self._check_state_message(m, state_field(where_messages, i), i) for i, m in enumerate(items)]
        if messages[0]["content"] != record.prompt:
            raise ValueError(f"{where_messages} must start with the episode's prompt")
        pairs = zip(messages[1::2], messages[2::2])  # (attempt, feedback)
        text = record.prompt + "".join(f"{a['content']}\n\n{f['content']}\n\n" for a, f in pairs)
        if not isinstance(state["text"], str):
            raise TypeError(f"{state_field(where, 'text')} must be a str, got {type(state['text']).__name__}")
        if state["text"] != text:
            raise ValueError(
                f"{state_field(where, 'text')} must be the prompt followed by each attempt and feedback in its messages"
            )
        episode = Episode(record=record, turn=turn, text=text, messages=messages)
        if not self.observation_space.contains(self.observation(episode)):
            raise ValueError(f"{where} does not fit this env's observation space {self.observation_space}")
        return episode

    @staticmethod
    def _check_state_message(value: Any, where: str, index: int) -> dict[str, str]:
        """Message ``index`` of a saved conversation: user (prompt, feedback) on even, assistant on odd indices."""
        message = check_state_keys(value, where, ("role", "content"))
        role = "user" if index % 2 == 0 else "assistant"
        if message["role"] != role:
            raise ValueError(f"{state_field(where, 'role')} must be {role!r}, got {message['role']!r}")
        if not isinstance(message["content"], str):
            raise TypeError(f"{state_field(where, 'content')} must be a str, got {type(message['content']).__name__}")
        return {"role": role, "content": message["content"]}

    def feedback_text(self, formatted: bool, answer: Any) -> str:
        if not formatted:
            return self.feedback_unformatted
        return self.feedback_wrong.replace("{answer}", str(answer))

    def advance(self, episodes: list[Episode], responses: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
        """Grade one attempt per episode in ONE verifier call; update the conversations.

        Returns ``(rewards, terminated, info)``; info holds per-episode arrays.
        """
        self.budget.check(len(episodes))
        result = self._verify([ep.record for ep in episodes], responses)
        self.budget.spend(len(episodes))
        n = len(episodes)
        correct = np.asarray(result.info.get("correct", result.scores > 0), dtype=bool)
        formatted = np.asarray(result.info.get("formatted", np.ones(n, dtype=bool)), dtype=bool)
        extracted = np.asarray(result.info.get("extracted_answer", np.full(n, None, dtype=object)), dtype=object)
        rewards = np.empty(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        turns = np.empty(n, dtype=np.int64)
        for i, (ep, response) in enumerate(zip(episodes, responses)):
            ep.turn += 1
            turns[i] = ep.turn
            if correct[i]:
                rewards[i], terminated[i] = self.success_reward - self.turn_penalty * (ep.turn - 1), True
            elif ep.turn >= self.max_turns:
                rewards[i], terminated[i] = self.failure_reward, True
            else:
                rewards[i] = self.per_turn_reward
            if not terminated[i]:
                feedback = self.feedback_text(bool(formatted[i]), extracted[i])
                ep.text = f"{ep.text}{response}\n\n{feedback}\n\n"
                ep.messages += [{"role": "assistant", "content": response}, {"role": "user", "content": feedback}]
        info = {
            "correct": correct,
            "formatted": formatted,
            "extracted_answer": extracted,
            "score": result.scores,
            "turn": turns,
            "success": correct.copy(),
        }
        self.last_metrics = result.metrics
        return rewards, terminated, info


class MultiTurnMathEnv(TaskEnvMixin, gym.Env):
    """Single multi-turn math env; arguments as :class:`MultiTurnTask`. ``evaluate`` scores first attempts."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, prompts: PromptSource, verifier: RewardOracle, **kwargs: Any):
        self.task = MultiTurnTask(prompts, verifier, **kwargs)
        self.observation_space = self.task.observation_space
        self.action_space = self.task.response_space
        self._episode: Episode | None = None
        self._done = True
        self.last_oracle_metrics: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.task.stream.reset()
        (record,) = self.task.next_prompts(1, self.np_random)
        self._episode, self._done = self.task.new_episode(record), False
        return self.task.observation(self._episode), {"prompt_uid": record.uid, "turn": 0}

    def step(self, action: Any):
        if self._episode is None or self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        responses = self.task.parse_action(action)
        rewards, terminated, info = self.task.advance([self._episode], responses)
        self.last_oracle_metrics = dict(self.task.last_metrics)
        self._done = bool(terminated[0])
        step_info = {k: (v[0].item() if isinstance(v[0], np.generic) else v[0]) for k, v in info.items()}
        return self.task.observation(self._episode), float(rewards[0]), self._done, False, step_info


class MultiTurnMathVectorEnv(TaskEnvMixin, VectorEnv):
    """Native vector twin of :class:`MultiTurnMathEnv`: one batched verifier call per step for all
    sub-envs, whatever turn each is on; finished sub-envs autoreset in the same step."""

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, prompts: PromptSource, verifier: RewardOracle, num_envs: int, **kwargs: Any):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.task = MultiTurnTask(prompts, verifier, **kwargs)
        self.num_envs = int(num_envs)
        self.single_observation_space = self.task.observation_space
        self.single_action_space = self.task.response_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._episodes: list[Episode] | None = None
        self.last_oracle_metrics: dict[str, float] = {}

    def _obs(self) -> tuple:
        return tuple(self.task.observation(ep) for ep in self._episodes)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        super().reset(seed=seed)
        if seed is not None:
            self.task.stream.reset()
        self._episodes = [self.task.new_episode(r) for r in self.task.next_prompts(self.num_envs, self.np_random)]
        uids = np.array([ep.record.uid for ep in self._episodes], dtype=object)
        return self._obs(), {"prompt_uid": uids, "_prompt_uid": np.ones(self.num_envs, dtype=bool)}

    def step(self, actions: Any):
        if self._episodes is None:
            raise RuntimeError("step() called before reset()")
        responses = self.task.parse_batch_action(actions, self.num_envs)
        rewards, terminated, info = self.task.advance(self._episodes, responses)
        self.last_oracle_metrics = dict(self.task.last_metrics)
        infos: dict[str, Any] = {}
        continuing = ~terminated
        for key, arr in info.items():  # step info of sub-envs that go on
            infos[key], infos[f"_{key}"] = arr, continuing.copy()
        if terminated.any():
            done = np.flatnonzero(terminated)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in done:
                final_obs[i] = self.task.observation(self._episodes[i])
            final_info: dict[str, Any] = {}
            for key, arr in info.items():
                final_info[key], final_info[f"_{key}"] = arr, terminated.copy()
            infos.update(final_obs=final_obs, _final_obs=terminated.copy(), final_info=final_info,
                         _final_info=terminated.copy())
            for i, record in zip(done, self.task.next_prompts(len(done), self.np_random)):
                self._episodes[i] = self.task.new_episode(record)
        infos["prompt_uid"] = np.array([ep.record.uid for ep in self._episodes], dtype=object)
        infos["_prompt_uid"] = np.ones(self.num_envs, dtype=bool)
        return self._obs(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos

    def state_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.state_dict(),
            "np_random": self.np_random.bit_generator.state,
            "episodes": None if self._episodes is None else [asdict(ep) for ep in self._episodes],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` exactly. Atomic: a state that is corrupt or does not fit this env
        raises a ``TypeError``/``ValueError`` naming the field and leaves the env unchanged."""
        self.check_state_dict(state)()

    def check_state_dict(self, state: Any, where: str = "state") -> StateCommit:
        """Validate every field of a :meth:`state_dict` without changing the env; return the commit.
        ``episodes``: None (never reset) or ``num_envs`` episodes (:meth:`MultiTurnTask.check_state_episodes`)."""
        state = check_state_keys(state, where, ("task", "np_random", "episodes"))
        commit_task_and_rng = self._check_task_and_rng_state(state, where)
        episodes = None
        if state["episodes"] is not None:
            episodes = self.task.check_state_episodes(state["episodes"], state_field(where, "episodes"), self.num_envs)

        def commit() -> None:
            commit_task_and_rng()
            self._episodes = episodes
            self.task.remember([ep.record for ep in episodes or ()])

        return commit
