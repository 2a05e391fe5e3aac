"""Tests for oat_env.envs.tools.PythonToolWrapper on the offline arithmetic envs."""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import oat_env  # noqa: F401  (registers the oat/* ids)
from oat_env.envs.tools import PythonToolWrapper, extract_code, format_tool_output
from oat_env.sandbox import FULL_CONTAINMENT, SandboxDegradedWarning, SandboxResult
from oat_env.spaces import ConversationSpace, TextSpace

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox targets Linux")


def arithmetic(**kwargs) -> PythonToolWrapper:
    return PythonToolWrapper(gym.make("oat/Arithmetic-v0"), **kwargs)


def answer_of(prompt: str) -> int:
    """'What is 67+34? ...' -> 101 (the arithmetic prompts are 'What is <expr>?')."""
    expr = prompt.split("What is ", 1)[1].split("?", 1)[0]
    assert set(expr) <= set("0123456789+-* ()"), expr
    return int(eval(expr))  # noqa: S307 -- digits and operators only, checked above


def result(stdout="", stderr="", exit_code=0, killed=None) -> SandboxResult:
    return SandboxResult(
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        timed_out=killed == "timeout",
        killed_reason=killed,
        blocked_event=None,
        duration_s=0.0,
        network_isolation="audit-hook",
    )


def test_extract_code():
    assert extract_code("Let me check.\n```python\nprint(1)\n```\nmore") == "print(1)\n"
    assert extract_code("```py\nx = 2\n```") == "x = 2\n"
    assert extract_code("```Python title\na\n```\n```python\nb\n```") == "a\n"  # the first block
    assert extract_code("```python\nprint(1)") is None  # unclosed
    assert extract_code("```\nprint(1)\n```") is None  # no language tag
    assert extract_code("```pythonic\nprint(1)\n```") is None
    assert extract_code("The answer is 3") is None


def test_format_tool_output():
    assert format_tool_output(result("45\n"), 100) == "45"
    assert (
        format_tool_output(result("a", "Traceback...\nValueError: x\n", 1), 100)
        == "a\nTraceback...\nValueError: x"
    )
    assert "wall-clock time limit" in format_tool_output(result(killed="timeout", exit_code=-9), 100)
    long = format_tool_output(result("h" * 500 + "t" * 500), 100)
    assert long.startswith("h" * 50) and long.endswith("t" * 50) and "truncated" in long
    assert len(long) < 100 + 40


def test_tool_call_then_final_answer():
    env = arithmetic(max_tool_calls=2)
    prompt, info = env.reset(seed=0)
    assert info["tool_calls"] == 0
    expr = prompt.split("What is ", 1)[1].split("?", 1)[0]
    action = f"Let me compute.\n```python\nprint({expr})\n```"
    obs, reward, terminated, truncated, info = env.step(action)
    expected = str(answer_of(prompt))
    assert obs == prompt + action + "\n```output\n" + expected + "\n```\n"
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_output"] == expected and info["tool_calls"] == 1 and info["tool_exit_code"] == 0
    assert env.observation_space.contains(obs)

    obs, reward, terminated, truncated, info = env.step(f"The answer is {info['tool_output']}")
    assert reward == 1.0 and terminated and not truncated
    assert info["correct"] is True and info["tool_calls"] == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step("```python\nprint(1)\n```")


def test_max_tool_calls_enforced():
    env = arithmetic(max_tool_calls=1)
    prompt, _ = env.reset(seed=1)
    _, _, terminated, _, info = env.step("```python\nprint(1)\n```")
    assert not terminated and info["tool_calls"] == 1
    # Budget spent: the next code block goes to the inner env, which grades (and ends) the episode.
    _, reward, terminated, _, info = env.step(f"```python\nprint(2)\n```\nThe answer is {answer_of(prompt)}")
    assert terminated and reward == 1.0
    assert info["tool_calls"] == 1 and info["tool_budget_exhausted"] is True
    assert "tool_output" not in info

    no_tools = arithmetic(max_tool_calls=0)
    no_tools.reset(seed=1)
    _, _, terminated, _, info = no_tools.step("```python\nprint(1)\n```")
    assert terminated and info["tool_calls"] == 0


def test_counters_count_and_reset():
    env = arithmetic(max_tool_calls=5, timeout_s=1.5)  # room for a loaded machine; the loop hits it
    env.reset(seed=2)
    _, _, _, _, info = env.step("```python\nraise ValueError('boom')\n```")
    assert info["tool_errors"] == 1 and "ValueError: boom" in info["tool_output"]
    _, _, _, _, info = env.step("```python\nimport socket\nsocket.socket()\n```")
    assert info["tool_blocked"] == 1 and info["tool_errors"] == 2
    assert "not allowed" in info["tool_output"]
    _, _, _, _, info = env.step("```python\nwhile True:\n    pass\n```")
    assert info["tool_timeouts"] == 1 and info["tool_killed_reason"] == "timeout"
    assert info == {**info, "tool_calls": 3, "tool_errors": 3, "tool_blocked": 1, "tool_timeouts": 1}
    obs, info = env.reset(seed=3)
    assert {
        k: info[k] for k in ("tool_calls", "tool_timeouts", "tool_errors", "tool_blocked")
    } == dict.fromkeys(("tool_calls", "tool_timeouts", "tool_errors", "tool_blocked"), 0)
    _, _, _, _, info = env.step("```python\nprint('fresh')\n```")
    assert info["tool_calls"] == 1 and info["tool_errors"] == 0


@pytest.mark.parametrize("bad", ["print(1)\x00", "print('\ud800')"], ids=["nul", "lone-surrogate"])
def test_unrunnable_code_is_a_tool_error_not_an_exception(bad):
    env = arithmetic(max_tool_calls=3)
    prompt, _ = env.reset(seed=7)
    action = f"```python\n{bad}\n```"
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["tool_calls"] == 1 and info["tool_errors"] == 1 and info["tool_exit_code"] == 1
    assert info["tool_output"].startswith("[sandbox] the code was not run: ")
    assert ("NUL" in info["tool_output"]) == ("\x00" in bad)
    assert ("surrogate" in info["tool_output"]) == ("\ud800" in bad)
    assert obs == prompt + action + "\n```output\n" + info["tool_output"] + "\n```\n"
    _, _, _, _, info = env.step("```python\nprint(2 + 3)\n```")
    assert info["tool_output"] == "5" and info["tool_errors"] == 1


def test_tool_info_reports_the_containment():
    env = arithmetic()
    env.reset(seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxDegradedWarning)  # without bwrap: degraded, and flagged
        _, _, _, _, info = env.step("```python\nprint(1)\n```")
    assert set(info["tool_containment"]) >= {"seccomp", "rlimits", "audit-hook"}
    assert info["tool_missing_layers"] == tuple(
        layer for layer in FULL_CONTAINMENT if layer not in info["tool_containment"]
    )


def test_seccomp_kill_is_explained_in_the_output():
    killed = SandboxResult(
        stdout="",
        stderr="",
        exit_code=-31,
        timed_out=False,
        killed_reason="blocked",
        blocked_event="seccomp",
        duration_s=0.0,
        network_isolation="namespace",
    )
    assert "forbidden system call" in format_tool_output(killed, 100)


def test_observation_space_grows_to_fit():
    env = arithmetic(max_tool_calls=3, max_output_chars=50)
    inner = env.env.observation_space
    assert isinstance(env.observation_space, TextSpace)
    assert env.observation_space.max_length > inner.max_length + 3 * env.action_space.max_length
    env.reset(seed=4)
    for _ in range(3):
        obs, *_ = env.step("```python\nprint('z' * 10_000)\n```")
        assert env.observation_space.contains(obs)
    assert obs.count("```output") == 3


def test_multiturn_messages_observation():
    env = PythonToolWrapper(
        gym.make("oat/MathMultiTurn-v0", source="arithmetic", observation_format="messages", max_turns=2),
        max_tool_calls=1,
    )
    assert isinstance(env.observation_space, ConversationSpace)
    obs, _ = env.reset(seed=5)
    prompt = obs[0]["content"]
    obs, reward, terminated, _, info = env.step("```python\nprint(6 * 7)\n```")
    assert [m["role"] for m in obs] == ["user", "assistant", "user"]
    assert obs[2]["content"] == "```output\n42\n```" and not terminated
    assert env.observation_space.contains(obs)
    # A wrong final answer: the inner env's feedback is appended after the tool exchange.
    obs, reward, terminated, _, info = env.step("The answer is -1")
    assert [m["role"] for m in obs] == ["user", "assistant", "user", "assistant", "user"]
    assert obs[3]["content"] == "The answer is -1" and "incorrect" in obs[4]["content"]
    assert not terminated and info["tool_calls"] == 1
    _, reward, terminated, _, _ = env.step(f"The answer is {answer_of(prompt)}")
    assert terminated and reward == 1.0


def test_multiturn_text_observation_keeps_tool_transcript():
    env = PythonToolWrapper(gym.make("oat/MathMultiTurn-v0", source="arithmetic", max_turns=2))
    prompt, _ = env.reset(seed=6)
    tool_obs, *_ = env.step("```python\nprint(2 + 2)\n```")
    obs, _, terminated, _, _ = env.step("The answer is -1")
    assert obs.startswith(tool_obs + "The answer is -1") and "incorrect" in obs
    assert not terminated and env.observation_space.contains(obs)


@pytest.mark.parametrize("kwargs", [{}, {"observation_format": "messages"}])
def test_check_env_passes(kwargs):
    env_id = "oat/MathMultiTurn-v0" if kwargs else "oat/Arithmetic-v0"
    extra = {"source": "arithmetic", **kwargs} if kwargs else {}
    env = PythonToolWrapper(gym.make(env_id, **extra), max_tool_calls=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the env is wrapped" notice: checking the wrapper is the point
        check_env(env)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="max_tool_calls"):
        arithmetic(max_tool_calls=-1)
    with pytest.raises(TypeError, match="max_tool_calls"):
        arithmetic(max_tool_calls=1.5)
    with pytest.raises(ValueError, match="timeout_s"):
        arithmetic(timeout_s=0)
    with pytest.raises(ValueError, match="tool_role"):
        arithmetic(tool_role="robot")
    with pytest.raises(ValueError, match="sandbox_kwargs"):
        arithmetic(sandbox_kwargs={"timeout_s": 3})
    with pytest.raises(TypeError, match="TextSpace"):
        PythonToolWrapper(gym.make("CartPole-v1"))
    env = arithmetic()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("```python\nprint(1)\n```")
