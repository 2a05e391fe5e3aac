"""A Python tool for text environments: run the agent's code, show it the output (DESIGN.md §2.3).

:class:`PythonToolWrapper` wraps any env whose action is a response ``str`` and whose observation is
either a ``str`` or a tuple of ``{"role", "content"}`` messages (``oat/Arithmetic-v0``,
``oat/GSM8K-v0``, ``oat/MathMultiTurn-v0`` in either observation format).

``step(action)``:

* **Tool step** -- if ``action`` contains a fenced code block (the first ````` ```python ````` or
  ````` ```py ````` block that is closed by ````` ``` `````) and fewer than ``max_tool_calls``
  tool calls were made this episode, the block runs in :func:`oat_env.sandbox.run_python` (with
  bubblewrap: its own mount, PID and network namespaces, uid 65534, a size-capped tmpfs as the only
  writable place, seccomp, time/memory/output limits -- see that module for each layer and what
  happens without bwrap) and the inner env is *not* stepped. The next observation is the
  conversation extended by the action and the output:

  - ``str`` observation: ``obs + action + "\\n```output\\n" + output + "\\n```\\n"``;
  - messages: ``obs + ({"role": "assistant", "content": action},
    {"role": tool_role, "content": "```output\\n" + output + "\\n```"})``.

  Reward ``0.0``, ``terminated = truncated = False``. ``output`` is the code's stdout followed by
  its stderr (the traceback on an exception) and a ``[sandbox] ...`` note when a limit stopped it,
  cut to ``max_output_chars`` characters (head and tail kept).
* **Env step** -- otherwise (no code block, or the tool budget is spent) the action goes to the
  inner env unchanged and its result is returned. The tool exchanges of the episode stay in the
  observation: when the inner env's new observation extends its previous one (as a multi-turn env's
  does), the extension is appended to the wrapper's transcript; otherwise (e.g. a single-turn env,
  which returns the prompt again) the inner observation is returned as is.

A code block that cannot be run at all -- it contains a NUL character or a lone surrogate (model
output can) -- is a tool error like any other: the output says why, the exit code is 1, nothing
raises.

Info on every step (and on reset, zeroed): ``tool_calls``, ``tool_timeouts``, ``tool_errors`` (runs
that did not exit with status 0: exceptions, limits, refusals, rejected code), ``tool_blocked``
(runs in which the sandbox refused an operation) for the current episode; tool steps add
``tool_output``, ``tool_exit_code``, ``tool_killed_reason``, ``tool_containment`` (the sandbox
layers that were in force, :attr:`~oat_env.sandbox.SandboxResult.containment`) and
``tool_missing_layers`` (those of :data:`~oat_env.sandbox.FULL_CONTAINMENT` that were not: non-empty
means degraded containment, also announced by a
:class:`~oat_env.sandbox.SandboxDegradedWarning`); an env step with a code block but no budget left
adds ``tool_budget_exhausted=True``. To refuse degraded containment instead, pass
``sandbox_kwargs={"require": FULL_CONTAINMENT}``: ``step`` then raises
:class:`~oat_env.sandbox.SandboxUnavailableError` (a configuration error, not a tool error).

Observation space: the inner space grown to hold ``max_tool_calls`` exchanges -- a
:class:`~oat_env.spaces.TextSpace` with ``max_length`` increased by ``max_tool_calls * (action max
length + output bound)``, or a :class:`~oat_env.spaces.ConversationSpace` with
``2 * max_tool_calls`` more messages and a content bound that fits the actions and tool outputs.
Other observation spaces are rejected with a ``TypeError``. The wrapper records its constructor
arguments (``RecordConstructorArgs``), so ``env.spec`` can rebuild it and
``gymnasium.utils.env_checker.check_env`` passes on the wrapped env.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym

from oat_env.sandbox import SandboxResult, run_python, validate_code
from oat_env.spaces import CHAT_ROLES, ConversationSpace, TextSpace

# ```python / ```py (any case), optional text after the tag on the fence line, a closing fence.
CODE_BLOCK_RE = re.compile(r"```(?:python|py)\b[^\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
OUTPUT_OPEN, OUTPUT_CLOSE = "```output\n", "\n```"
_TRUNCATED = "\n...[tool output truncated]...\n"
# Longest sandbox note appended to the output, with margin.
_NOTE_HEADROOM = 200


def extract_code(action: str) -> str | None:
    """The body of the first closed ```python (or ```py) block in ``action``, else ``None``."""
    match = CODE_BLOCK_RE.search(action)
    return None if match is None else match.group(1)


def format_tool_output(result: SandboxResult, max_chars: int) -> str:
    """stdout, then stderr, then a note if a sandbox limit stopped the code; at most ``max_chars``
    characters plus a short truncation marker (the head and the tail are kept)."""
    parts = [result.stdout]
    if result.stderr:
        if parts[0] and not parts[0].endswith("\n"):
            parts.append("\n")
        parts.append(result.stderr)
    notes = {
        "timeout": "[sandbox] the code was stopped: wall-clock time limit exceeded",
        "cpu": "[sandbox] the code was stopped: CPU time limit exceeded",
        "memory": "[sandbox] the code ran out of memory",
        "output": "[sandbox] the code was stopped: output limit exceeded",
    }
    if result.killed_reason == "blocked" and result.blocked_event == "seccomp":
        notes["blocked"] = "[sandbox] the code was killed: a forbidden system call"
    if result.killed_reason in notes:
        parts.append(
            ("\n" if "".join(parts) and not "".join(parts).endswith("\n") else "")
            + notes[result.killed_reason]
        )
    text = "".join(parts).rstrip("\n")
    if len(text) > max_chars:
        head = max_chars // 2
        text = text[:head] + _TRUNCATED + text[len(text) - (max_chars - head) :]
    return text


def rejected_code_result(reason: str) -> SandboxResult:
    """The result reported for a code block that was not run because it is not valid source text."""
    return SandboxResult(
        stdout="",
        stderr=f"[sandbox] the code was not run: {reason}\n",
        exit_code=1,
        timed_out=False,
        killed_reason=None,
        blocked_event=None,
        duration_s=0.0,
        network_isolation="audit-hook",
    )


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class PythonToolWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Run fenced Python blocks of the agent's responses in a sandbox (see the module docstring).

    Args:
        env: an env with a ``str`` action (a :class:`TextSpace`) and a ``str`` or messages observation.
        max_tool_calls: tool calls allowed per episode; later code blocks go to the inner env.
        timeout_s: wall-clock limit per tool call (the CPU limit is the same, rounded up).
        memory_mb: address-space limit per tool call.
        max_output_chars: characters of tool output shown to the agent.
        tool_role: role of the tool-output message for messages observations (``"user"`` by
            default, since many chat templates reject ``"tool"`` without a tool-call id).
        sandbox_kwargs: extra keyword arguments for :func:`~oat_env.sandbox.run_python`.
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        max_tool_calls: int = 4,
        timeout_s: float = 5.0,
        memory_mb: int = 256,
        max_output_chars: int = 2048,
        tool_role: str = "user",
        sandbox_kwargs: dict[str, Any] | None = None,
    ):
        # Recorded so that env.spec (and check_env's spec.make()) can rebuild the wrapped env.
        gym.utils.RecordConstructorArgs.__init__(
            self,
            max_tool_calls=max_tool_calls,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_output_chars=max_output_chars,
            tool_role=tool_role,
            sandbox_kwargs=sandbox_kwargs,
        )
        gym.Wrapper.__init__(self, env)
        self.max_tool_calls = _check_count("max_tool_calls", max_tool_calls, 0)
        self.max_output_chars = _check_count("max_output_chars", max_output_chars, 1)
        self.memory_mb = _check_count("memory_mb", memory_mb, 1)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        if tool_role not in CHAT_ROLES:
            raise ValueError(f"tool_role must be one of {CHAT_ROLES}, got {tool_role!r}")
        self.tool_role = tool_role
        self.sandbox_kwargs = dict(sandbox_kwargs or {})
        reserved = {"timeout_s", "memory_mb", "max_output_chars"} & set(self.sandbox_kwargs)
        if reserved:
            raise ValueError(
                f"sandbox_kwargs must not set {sorted(reserved)}: use the wrapper's own arguments"
            )

        action_space = env.action_space
        if not isinstance(action_space, TextSpace):
            raise TypeError(f"PythonToolWrapper needs a text action space (TextSpace), got {action_space!r}")
        # Tool output: stdout + stderr (each <= max_output_chars plus a marker) is cut again to
        # max_output_chars + marker; the fences add the rest.
        output_bound = (
            self.max_output_chars + len(_TRUNCATED) + len(OUTPUT_OPEN) + len(OUTPUT_CLOSE) + _NOTE_HEADROOM
        )
        inner_obs = env.observation_space
        if isinstance(inner_obs, TextSpace):
            self._messages = False
            grown = inner_obs.max_length + self.max_tool_calls * (action_space.max_length + output_bound + 2)
            self.observation_space = TextSpace(grown, min_length=inner_obs.min_length)
        elif isinstance(inner_obs, ConversationSpace):
            self._messages = True
            content = max(inner_obs.content_space.max_length, action_space.max_length, output_bound)
            self.observation_space = ConversationSpace(
                content, max_messages=inner_obs.max_messages + 2 * self.max_tool_calls
            )
        else:
            raise TypeError(
                f"PythonToolWrapper needs a TextSpace or ConversationSpace observation, got {inner_obs!r}"
            )
        self._inner_obs: Any = None
        self._obs: Any = None
        self._done = True
        self._counters = self._zero_counters()

    @staticmethod
    def _zero_counters() -> dict[str, int]:
        return {"tool_calls": 0, "tool_timeouts": 0, "tool_errors": 0, "tool_blocked": 0}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._inner_obs, self._obs, self._done = obs, self._fresh(obs), False
        self._counters = self._zero_counters()
        return obs, {**info, **self._counters}

    def run_tool(self, code: str) -> SandboxResult:
        """Run one code block with the wrapper's limits (override to use another executor)."""
        return run_python(
            code,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_output_chars=self.max_output_chars,
            **self.sandbox_kwargs,
        )

    def _fresh(self, obs: Any) -> Any:
        """A copy sharing no mutable objects with what earlier calls returned (users keep those)."""
        return tuple(dict(m) for m in obs) if self._messages else obs

    def _extend(self, obs: Any, action: str, output: str) -> Any:
        if self._messages:
            return tuple(obs) + (
                {"role": "assistant", "content": action},
                {"role": self.tool_role, "content": OUTPUT_OPEN + output + OUTPUT_CLOSE},
            )
        return obs + action + "\n" + OUTPUT_OPEN + output + OUTPUT_CLOSE + "\n"

    def _splice(self, inner_obs: Any) -> Any:
        """The wrapper's transcript plus whatever the inner env appended to its own observation."""
        previous = self._inner_obs
        if self._messages:
            new, old = tuple(inner_obs), tuple(previous)
            if len(new) >= len(old) and new[: len(old)] == old:
                return tuple(self._obs) + new[len(old) :]
            return inner_obs
        if isinstance(inner_obs, str) and isinstance(previous, str) and inner_obs.startswith(previous):
            return self._obs + inner_obs[len(previous) :]
        return inner_obs

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        code = extract_code(action) if isinstance(action, str) else None
        if code is not None and self._counters["tool_calls"] < self.max_tool_calls:
            self.env.action_space.check(action, "action")  # same length bound as an env step
            try:
                validate_code(code)
            except ValueError as exc:  # NUL, lone surrogate: a tool error, never an exception
                result = rejected_code_result(str(exc))
            else:
                result = self.run_tool(code)
            output = format_tool_output(result, self.max_output_chars)
            self._counters["tool_calls"] += 1
            self._counters["tool_timeouts"] += int(result.timed_out)
            self._counters["tool_errors"] += int(not result.ok)
            self._counters["tool_blocked"] += int(result.blocked_event is not None)
            self._obs = self._extend(self._obs, action, output)
            info = {
                **self._counters,
                "tool_output": output,
                "tool_exit_code": result.exit_code,
                "tool_killed_reason": result.killed_reason,
                "tool_containment": result.containment,
                "tool_missing_layers": result.missing_layers,
            }
            return self._fresh(self._obs), 0.0, False, False, info

        obs, reward, terminated, truncated, info = self.env.step(action)
        spliced = self._splice(obs)
        self._inner_obs, self._obs = obs, self._fresh(spliced)
        self._done = bool(terminated or truncated)
        info = {**info, **self._counters}
        if code is not None:
            info["tool_budget_exhausted"] = True
        return spliced, reward, terminated, truncated, info
