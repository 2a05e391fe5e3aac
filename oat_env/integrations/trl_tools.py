"""TRL's ``GRPOTrainer(environment_factory=...)`` for oat's multi-turn envs: :func:`environment_factory`,
the :class:`MultiTurnEnvFactory` it returns and the per-rollout :class:`MultiTurnToolEnv` (its
``reset``, the one tool ``submit_answer`` and ``get_reward``).

The contract (what ``reset`` takes and returns, what the tool grades and says, what the reward sums)
is documented with the other TRL adapters in :mod:`oat_env.integrations.trl`, which re-exports these
names. Nothing here imports torch, TRL, ``datasets`` or ``oat_agents``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding

from oat_env.data.records import PromptRecord
from oat_env.envs.multiturn import Episode, MultiTurnTask
from oat_env.integrations.trl_common import _is_messages, _make_env, _optional_str, _prompt_text

__all__ = ["MultiTurnEnvFactory", "MultiTurnToolEnv", "environment_factory"]


class MultiTurnToolEnv:
    """One rollout of a multi-turn env for TRL's ``environment_factory``: ``reset``, the one tool
    ``submit_answer`` and ``get_reward`` (contract in :mod:`oat_env.integrations.trl`).

    Create instances by calling a :class:`MultiTurnEnvFactory`. TRL exposes every public method but
    ``reset``/``get_reward`` as a tool, so this class has no other public methods.
    """

    def __init__(self, factory: MultiTurnEnvFactory):
        self._factory = factory
        self._episode: Episode | None = None
        self._return = 0.0
        self._done = False

    @property
    def turn(self) -> int:
        """Attempts graded in this episode."""
        return 0 if self._episode is None else self._episode.turn

    @property
    def done(self) -> bool:
        """Whether the episode ended (a correct answer, or ``max_turns`` attempts)."""
        return self._done

    def reset(self, **row: Any) -> str | None:
        """Start an episode: the dataset row's problem (returns ``None``), or without a row's ``answer``
        the env's next training problem (returns its prompt)."""
        task = self._factory.task
        if "answer" in row:
            prompt = row.get("prompt")
            if not _is_messages(prompt):
                raise ValueError(
                    "environment_factory needs conversational prompts (TRL shows tools only in chat prompts): "
                    "build the dataset with prompt_dataset(..., conversational=True) or observation_format='messages'"
                )
            if row["answer"] is None:
                raise ValueError(f"row {row.get('prompt_uid')!r} has no gold answer (answer is None)")
            text = row.get("prompt_text")
            record = PromptRecord(
                prompt=_prompt_text(prompt, False, 0) if text is None else str(text),
                answer=str(row["answer"]),
                uid=_optional_str(row.get("prompt_uid")),
            )
            observation = None
        else:
            prompt = row.get("prompt")
            if prompt and _prompt_text(prompt, False, 0):
                raise ValueError(
                    "the dataset row has a prompt but no 'answer' column to grade it: use prompt_dataset(...) "
                    "rows, or pass no train_dataset so the env serves its own problems"
                )
            (record,) = task.next_prompts(1, self._factory.rng)
            observation = record.prompt
        self._episode = task.new_episode(record)
        self._return, self._done = 0.0, False
        return observation

    def submit_answer(self, answer: str) -> str:
        """Submit an answer to the problem and get the grader's verdict.

        Args:
            answer: Your answer to the problem, for example "42".

        Returns:
            "Correct.", or why the answer is wrong and whether you may try again.
        """
        if self._episode is None:
            raise RuntimeError("submit_answer() before reset(): no problem to answer")
        if self._done:
            return "This problem is already finished; no more answers are graded."
        if isinstance(answer, (int, float, np.number)) and not isinstance(answer, bool):
            answer = str(answer)  # tool-call JSON may give a bare number
        task = self._factory.task
        responses = task.parse_action(answer)
        rewards, terminated, info = task.advance([self._episode], responses)
        self._factory.verifier_calls += 1
        self._return += float(rewards[0])
        self._done = bool(terminated[0])
        if bool(info["correct"][0]):
            return "Correct."
        if self._done:
            return "Incorrect. No attempts left."
        return task.feedback_text(bool(info["formatted"][0]), info["extracted_answer"][0])

    def get_reward(self) -> float:
        """The episode's return (an unfinished episode counts as failed)."""
        if self._episode is None:
            return 0.0
        if not self._done:
            return self._return + self._factory.task.failure_reward
        return self._return


class MultiTurnEnvFactory:
    """Callable ``() -> MultiTurnToolEnv`` over one shared multi-turn env; build it with
    :func:`environment_factory`. Attributes: ``env_id``, ``env``, ``verifier_calls``, ``instances``."""

    def __init__(self, env_id: str, *, seed: int = 0, **env_kwargs: Any):
        self.env_id = env_id
        self.env, task = _make_env(env_id, dict(env_kwargs))
        if not isinstance(task, MultiTurnTask):
            self.env.close()
            raise TypeError(
                f"{env_id} is single-turn: use reward_function({env_id!r}, ...) with GRPOTrainer(reward_funcs=...); "
                "environment_factory is for multi-turn envs (oat/MathMultiTurn-v0)"
            )
        self.task: MultiTurnTask = task
        self.rng, _ = seeding.np_random(int(seed))
        self.task.stream.reset()
        self.verifier_calls = 0
        self.instances = 0

    def __repr__(self) -> str:
        return f"MultiTurnEnvFactory({self.env_id!r})"

    def __call__(self) -> MultiTurnToolEnv:
        self.instances += 1
        return MultiTurnToolEnv(self)

    def close(self) -> None:
        """Release the env's verifier resources."""
        self.env.close()


def environment_factory(env_id: str, *, seed: int = 0, **env_kwargs: Any) -> MultiTurnEnvFactory:
    """A TRL ``environment_factory`` for a multi-turn env (contract in :mod:`oat_env.integrations.trl`).

    Args:
        env_id: a registered multi-turn id (``oat/MathMultiTurn-v0``).
        seed: seeds the training stream the env draws from when TRL runs without a dataset.
        **env_kwargs: the env's keyword arguments (``max_turns``, rewards, ``source``, ...).
    """
    return MultiTurnEnvFactory(env_id, seed=seed, **env_kwargs)
