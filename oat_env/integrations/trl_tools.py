"""TRL's ``GRPOTrainer(environment_factory=...)`` for oat's multi-turn envs: :func:`environment_factory`,
the :class:`MultiTurnEnvFactory` it returns and the per-rollout :class:`MultiTurnToolEnv` (its
``reset``, the one tool ``submit_answer`` and ``get_reward``), or with ``python_tool=True``
:class:`PythonToolEnv` (a second tool, ``run_python``: the code runs in :func:`oat_env.sandbox.run_python`
with the limits of :class:`~oat_env.envs.tools.PythonToolWrapper`, and costs no verifier call).

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

__all__ = ["MultiTurnEnvFactory", "MultiTurnToolEnv", "PythonToolEnv", "environment_factory"]

# PythonToolWrapper's defaults: the same code gets the same limits through either door.
PYTHON_TOOL_DEFAULTS: dict[str, Any] = {"max_tool_calls": 4, "timeout_s": 5.0, "memory_mb": 256,
                                        "max_output_chars": 2048, "sandbox_kwargs": {}}


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
        self._tool_calls = 0
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


class PythonToolEnv(MultiTurnToolEnv):
    """:class:`MultiTurnToolEnv` plus a second tool, ``run_python`` (``environment_factory(...,
    python_tool=True)``): the model may compute before it answers. Each call runs in a fresh sandbox
    (:func:`oat_env.sandbox.run_python`: namespaces, uid 65534, seccomp, time/memory/output limits) and
    returns stdout, stderr and any limit note, formatted as :class:`~oat_env.envs.tools.PythonToolWrapper`
    shows them; after ``max_tool_calls`` calls in an episode it returns a refusal instead of running."""

    def run_python(self, code: str) -> str:
        """Run a Python program in a sandbox and get what it printed.

        Args:
            code: A complete Python program; print() the values you want to see.

        Returns:
            The program's standard output and error (the traceback if it raised), or why it was not run.
        """
        from oat_env.envs.tools import format_tool_output, rejected_code_result
        from oat_env.sandbox import run_python, validate_code

        if self._episode is None:
            raise RuntimeError("run_python() before reset(): no episode")
        limits = self._factory.python_tool
        if self._tool_calls >= limits["max_tool_calls"]:
            return f"[sandbox] not run: the limit of {limits['max_tool_calls']} Python runs per problem is spent"
        self._tool_calls += 1
        self._factory.tool_calls += 1
        code = code if isinstance(code, str) else str(code)
        try:
            validate_code(code)
        except ValueError as exc:  # NUL characters, lone surrogates: a tool error, never an exception
            result = rejected_code_result(str(exc))
        else:
            result = run_python(code, timeout_s=limits["timeout_s"], memory_mb=limits["memory_mb"],
                                max_output_chars=limits["max_output_chars"], **limits["sandbox_kwargs"])
        return format_tool_output(result, limits["max_output_chars"]) or "(no output)"


def _python_tool_limits(options: dict[str, Any] | None) -> dict[str, Any]:
    """``python_tool_kwargs`` checked against :data:`PYTHON_TOOL_DEFAULTS` (same meaning as the wrapper's)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(PYTHON_TOOL_DEFAULTS))
    if unknown:
        raise TypeError(f"python_tool_kwargs got unknown keys {unknown}; it takes {sorted(PYTHON_TOOL_DEFAULTS)}")
    limits = {**PYTHON_TOOL_DEFAULTS, **options}
    for key in ("max_tool_calls", "memory_mb", "max_output_chars"):
        value = limits[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "max_tool_calls" else 1):
            raise ValueError(f"python_tool_kwargs[{key!r}] must be an int >= {0 if key == 'max_tool_calls' else 1}, "
                             f"got {value!r}")
    timeout = limits["timeout_s"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"python_tool_kwargs['timeout_s'] must be a positive number, got {timeout!r}")
    reserved = {"timeout_s", "memory_mb", "max_output_chars"} & set(limits["sandbox_kwargs"])
    if reserved:
        raise ValueError(f"python_tool_kwargs['sandbox_kwargs'] must not set {sorted(reserved)}: use the keys themselves")
    return limits


class MultiTurnEnvFactory:
    """Callable ``() -> MultiTurnToolEnv`` (or ``PythonToolEnv`` with ``python_tool``) over one shared
    multi-turn env; build it with :func:`environment_factory`. Attributes: ``env_id``, ``env``,
    ``verifier_calls``, ``tool_calls`` (``run_python`` runs), ``instances``."""

    def __init__(self, env_id: str, *, seed: int = 0, python_tool: bool = False,
                 python_tool_kwargs: dict[str, Any] | None = None, **env_kwargs: Any):
        if python_tool_kwargs is not None and not python_tool:
            raise TypeError("python_tool_kwargs= is given but python_tool=False: pass python_tool=True to add the tool")
        self.python_tool = _python_tool_limits(python_tool_kwargs) if python_tool else None
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
        self.tool_calls = 0
        self.instances = 0

    def __repr__(self) -> str:
        return f"MultiTurnEnvFactory({self.env_id!r})"

    def __call__(self) -> MultiTurnToolEnv:
        self.instances += 1
        return PythonToolEnv(self) if self.python_tool is not None else MultiTurnToolEnv(self)

    def close(self) -> None:
        """Release the env's verifier resources."""
        self.env.close()


def environment_factory(env_id: str, *, seed: int = 0, python_tool: bool = False,
                        python_tool_kwargs: dict[str, Any] | None = None, **env_kwargs: Any) -> MultiTurnEnvFactory:
    """A TRL ``environment_factory`` for a multi-turn env (contract in :mod:`oat_env.integrations.trl`).

    Args:
        env_id: a registered multi-turn id (``oat/MathMultiTurn-v0``).
        seed: seeds the training stream the env draws from when TRL runs without a dataset.
        python_tool: also offer the model a ``run_python(code)`` tool (sandboxed; see :class:`PythonToolEnv`).
        python_tool_kwargs: its limits, as :class:`~oat_env.envs.tools.PythonToolWrapper`'s arguments:
            ``max_tool_calls`` (per episode, default 4), ``timeout_s`` (5), ``memory_mb`` (256),
            ``max_output_chars`` (2048), ``sandbox_kwargs`` (more :func:`~oat_env.sandbox.run_python` options).
        **env_kwargs: the env's keyword arguments (``max_turns``, rewards, ``source``, ...).
    """
    return MultiTurnEnvFactory(env_id, seed=seed, python_tool=python_tool, python_tool_kwargs=python_tool_kwargs,
                               **env_kwargs)
