"""oat_env.integrations.trl: prompt datasets, reward functions and tool environments for TRL.

The adapters are checked against the envs themselves (a reward equals what ``env.step`` gives for
the same completion; a dataset holds the prompts the env serves) and against the real TRL trainers
(``GRPOTrainer`` with a reward function and with ``environment_factory``, ``OnlineDPOTrainer``),
on a tiny hub-free model on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import subprocess_env

import oat_env  # noqa: F401  (registers the env ids)
from oat_env.envs import QueryBudgetExhausted
from oat_env.integrations.trl import (
    EnvReward,
    MultiTurnToolEnv,
    PythonToolEnv,
    environment_factory,
    prompt_dataset,
    reward_function,
)

ENV = "oat/Arithmetic-v0"
DUEL = "oat/Arithmetic-Duel-v0"
MULTI = "oat/MathMultiTurn-v0"
SHAPING = {"correct_reward": 2.0, "incorrect_reward": -0.5, "unformatted_reward": -1.0}


def _vector_rewards(env_id: str, kwargs: dict, seed: int, n: int, responses: list) -> np.ndarray:
    """What a vector env's ``step`` gives for ``responses`` to the ``n`` prompts it serves after ``reset(seed)``."""
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    vec.reset(seed=seed)
    rewards = vec.step(responses)[1]
    vec.close()
    return rewards


class CountingVerifier:
    """Wraps an env's verifier and counts its ``reward`` calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def reward(self, *args, **kwargs):
        self.calls += 1
        return self.inner.reward(*args, **kwargs)


def _count_verifier_calls(fn: EnvReward) -> CountingVerifier:
    task = fn.env.unwrapped.task
    task.verifier = CountingVerifier(task.verifier)
    return task.verifier


# -- import ----------------------------------------------------------------------------------------
def test_import_needs_no_torch_datasets_trl_or_agents():
    code = (
        "import sys, oat_env.integrations.trl as t; "
        "print([m for m in ('torch', 'datasets', 'trl', 'transformers', 'oat_agents') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "[]"


# -- prompt_dataset --------------------------------------------------------------------------------
def test_train_prompts_are_the_envs_seeded_stream():
    kwargs = {"max_digits": 3, "operators": "+-*"}
    ds = prompt_dataset(ENV, n=6, seed=7, **kwargs)
    cols = ds.to_dict()
    assert ds.column_names == ["prompt", "answer", "prompt_uid"]
    vec = gym.make_vec(ENV, num_envs=6, vectorization_mode="vector_entry_point", **kwargs)
    obs, info = vec.reset(seed=7)
    assert list(obs) == cols["prompt"] and list(info["prompt_uid"]) == cols["prompt_uid"]
    assert [r.answer for r in vec.unwrapped.task.resolve(list(obs))] == cols["answer"]
    single = gym.make(ENV, **kwargs)
    served = [single.reset(seed=7)[0]] + [single.reset()[0] for _ in range(5)]
    assert served == cols["prompt"]
    assert prompt_dataset(ENV, n=6, seed=8, **kwargs)["prompt"] != cols["prompt"]


def test_dataset_env_epoch_and_eval_split(tmp_path):
    rows = [{"problem": f"What is {i}+1?", "answer": str(i + 1)} for i in range(5)]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kwargs = {"prompt_data": str(path), "eval_prompt_data": str(path), "template": "plain"}
    epoch = prompt_dataset("oat/MATH-v0", seed=3, **kwargs)  # n=None: one epoch, in the stream's order
    vec = gym.make_vec("oat/MATH-v0", num_envs=5, vectorization_mode="vector_entry_point", **kwargs)
    assert list(vec.reset(seed=3)[0]) == epoch["prompt"]
    assert sorted(epoch["prompt"]) == sorted(r["problem"] for r in rows)
    assert prompt_dataset("oat/MATH-v0", n=7, seed=3, **kwargs)["prompt"][:5] == epoch["prompt"]
    held_out = prompt_dataset("oat/MATH-v0", split="eval", **kwargs)  # n=None: every held-out prompt
    assert held_out["prompt"] == [r["problem"] for r in rows] and held_out["answer"] == [r["answer"] for r in rows]


def test_procedural_eval_split_and_errors():
    env = gym.make(ENV)
    assert prompt_dataset(ENV, n=5, split="eval")["prompt"] == env.unwrapped.eval_prompts(5)
    assert prompt_dataset(ENV, n=5, split="eval", seed=2)["prompt"] == env.unwrapped.eval_prompts(5, seed=2)
    with pytest.raises(ValueError, match="pass n"):
        prompt_dataset(ENV)
    try:  # n=None: every held-out problem, where the env can list them
        every = env.unwrapped.eval_prompts()
    except ValueError as err:
        with pytest.raises(ValueError, match=re.escape(str(err))):
            prompt_dataset(ENV, split="eval")
    else:
        assert prompt_dataset(ENV, split="eval")["prompt"] == every
    with pytest.raises(ValueError, match="eval prompts"):  # 9-digit terms: far too many to list
        prompt_dataset(ENV, split="eval", max_digits=9)
    with pytest.raises(ValueError, match="split must be"):
        prompt_dataset(ENV, n=2, split="test")
    with pytest.raises(ValueError, match="n must be a positive int"):
        prompt_dataset(ENV, n=0)
    with pytest.raises(TypeError, match="no_such_option"):
        prompt_dataset(ENV, n=2, no_such_option=1)


class LengthOracle:
    """A scalar-score oracle for chat envs: longer responses win; records the prompts it was given."""

    def __init__(self):
        self.prompts: list[str] = []

    def reward(self, prompts, responses, references=None):
        from oat_env.oracles import OracleResult

        self.prompts.extend(prompts)
        return OracleResult(scores=np.array([float(len(r)) for r in responses]))


def _chat_rows(tmp_path):
    rows = [
        {"id": f"q{i}", "chosen": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Name {i + 2} colours."},
            {"role": "assistant", "content": "Red and blue."},
        ]}
        for i in range(3)
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_conversational_prompts_follow_the_envs_chat_format(tmp_path):
    multi = prompt_dataset(MULTI, n=2, observation_format="messages")
    assert multi["prompt"][0] == [{"role": "user", "content": multi["prompt_text"][0]}]
    assert isinstance(prompt_dataset(MULTI, n=2)["prompt"][0], str)
    assert isinstance(prompt_dataset(MULTI, n=2, observation_format="messages", conversational=False)["prompt"][0], str)
    forced = prompt_dataset(ENV, n=2, conversational=True)
    assert forced["prompt"][0] == [{"role": "user", "content": forced["prompt_text"][0]}]

    kwargs = {"prompt_data": str(_chat_rows(tmp_path)), "chat_format": "messages", "oracle": LengthOracle()}
    chat = prompt_dataset("oat/UltraFeedback-Duel-v0", n=3, **kwargs)
    chat_cols = chat.to_dict()
    assert chat.column_names == ["prompt", "answer", "prompt_uid", "reference", "prompt_text"]
    assert chat_cols["prompt"][0][0] == {"role": "system", "content": "Be brief."} and chat_cols["prompt"][0][-1]["role"] == "user"
    assert [json.loads(t) for t in chat_cols["prompt_text"]] == chat_cols["prompt"]
    assert set(chat_cols["reference"]) == {"Red and blue."}


# -- reward_function: verifiable envs --------------------------------------------------------------
def _arithmetic_completions(answer: str) -> dict:
    value = int(answer)
    return {
        "correct": f"Let me think. The answer is {value}.",
        "wrong": f"\\boxed{{{value + 1}}}",
        "unformatted": "I am not sure.",
        "bare_number": f"{value}",
        "chat": [{"role": "assistant", "content": f"So \\boxed{{{value}}}"}],
        "chat_blocks": [{"role": "assistant", "content": [{"type": "text", "text": f"The answer is {value}"}]}],
        "chat_after_tool": [
            {"role": "assistant", "content": "Let me check."},
            {"role": "tool", "name": "calc", "content": str(value + 5)},
            {"role": "assistant", "content": f"\\boxed{{{value - 1}}}"},
        ],
    }


def _text(completion) -> str:
    """The response the env is stepped with: the string, or the last assistant message's text."""
    if isinstance(completion, str):
        return completion
    content = [m for m in completion if m["role"] == "assistant"][-1]["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


@pytest.mark.parametrize(
    "kwargs",
    [SHAPING, {**SHAPING, "strict": True, "template": "boxed"}, {"max_digits": 3, "operators": "*-"}],
    ids=["shaping", "strict", "defaults"],
)
@pytest.mark.parametrize("conversational", [False, True], ids=["text", "chat"])
def test_rewards_equal_env_step_in_one_verifier_call(kwargs, conversational):
    n, seed = 4, 5
    ds = prompt_dataset(ENV, n=n, seed=seed, conversational=conversational, **kwargs)
    cols = ds.to_dict()
    fn = reward_function(ENV, **kwargs)
    counter = _count_verifier_calls(fn)
    kinds = list(_arithmetic_completions("1"))
    per_kind = {k: [_arithmetic_completions(a)[k] for a in cols["answer"]] for k in kinds}
    expected = np.concatenate([_vector_rewards(ENV, kwargs, seed, n, [_text(c) for c in per_kind[k]]) for k in kinds])
    columns = {c: cols[c] * len(kinds) for c in ds.column_names if c != "prompt"}
    rewards = fn(
        prompts=cols["prompt"] * len(kinds),
        completions=[c for k in kinds for c in per_kind[k]],
        completion_ids=[[0]] * (n * len(kinds)),
        trainer_state=None,
        **columns,
    )
    assert rewards == expected.tolist()
    assert all(type(r) is float for r in rewards)
    assert counter.calls == fn.verifier_calls == 1 and fn.items_scored == n * len(kinds)
    by_kind = dict(zip(kinds, np.asarray(rewards).reshape(len(kinds), n)))
    correct = kwargs.get("correct_reward", 1.0)
    assert set(by_kind["correct"]) == set(by_kind["chat"]) == {correct}
    assert set(by_kind["wrong"]) == set(by_kind["chat_after_tool"]) == {kwargs.get("incorrect_reward", 0.0)}
    if "unformatted_reward" in kwargs:
        assert set(by_kind["unformatted"]) == {kwargs["unformatted_reward"]}
    if kwargs.get("strict"):  # no last-number fallback: a bare number is unformatted
        assert set(by_kind["bare_number"]) == {kwargs["unformatted_reward"]}
    assert fn.last_info["extracted_answer"][:n].tolist() == [str(int(a) + 0) for a in cols["answer"]]


@pytest.mark.parametrize("template", ["r1", "qwen_math", "plain"])
def test_math_rewards_use_the_templates_extractor_order(tmp_path, template):
    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(1, 4)]
    rows.append({"problem": "Half of one?", "answer": "\\frac{1}{2}"})
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kwargs = {"prompt_data": str(path), "template": template, "unformatted_reward": -1.0}
    ds = prompt_dataset("oat/MATH-v0", **kwargs)
    cols = ds.to_dict()
    fn = reward_function("oat/MATH-v0", **kwargs)
    counter = _count_verifier_calls(fn)
    # The <answer> tag holds the gold, \boxed{} a wrong one: r1 reads the tag first, qwen_math the box.
    tagged = [f"<answer>{a}</answer> so \\boxed{{99}}" for a in cols["answer"]]
    boxed = [f"\\boxed{{{a}}}" for a in cols["answer"]]
    rewards = fn(prompts=cols["prompt"] * 2, completions=tagged + boxed, answer=cols["answer"] * 2)
    n = len(rows)
    expected = np.concatenate([_vector_rewards("oat/MATH-v0", kwargs, 0, n, c) for c in (tagged, boxed)])
    assert rewards == expected.tolist() and counter.calls == 1
    assert set(rewards[:n]) == ({1.0} if template == "r1" else {0.0})
    assert set(rewards[n:]) == {1.0}


def test_countdown_rewards_equal_env_step():
    n, seed = 3, 1
    ds = prompt_dataset("oat/Countdown-v0", n=n, seed=seed)
    cols = ds.to_dict()
    vec = gym.make_vec("oat/Countdown-v0", num_envs=n, vectorization_mode="vector_entry_point")
    solutions = [r.reference for r in vec.unwrapped.task.resolve(list(vec.reset(seed=seed)[0]))]
    completions = solutions + ["<answer> 1 + 1 </answer>"] * n + ["no answer"] * n
    fn = reward_function("oat/Countdown-v0")
    rewards = fn(prompts=cols["prompt"] * 3, completions=completions, answer=cols["answer"] * 3)
    expected = [r for i in range(3) for r in _vector_rewards("oat/Countdown-v0", {}, seed, n, completions[i * n:(i + 1) * n])]
    assert rewards == expected and rewards[:n] == [1.0] * n


def test_reward_function_contract_and_errors():
    fn = reward_function(ENV, max_queries=5)
    assert fn.__name__ == "oat_Arithmetic-v0" and reward_function(ENV, name="acc").__name__ == "acc"
    counter = _count_verifier_calls(fn)
    ds = prompt_dataset(ENV, n=3)
    cols = ds.to_dict()
    assert fn(prompts=[], completions=[], answer=[]) == [] and counter.calls == 0
    with pytest.raises(ValueError, match="'answer'"):
        fn(prompts=cols["prompt"], completions=["1", "2", "3"])
    with pytest.raises(ValueError, match="column 'answer' has 2 values for 3"):
        fn(prompts=cols["prompt"], completions=["1", "2", "3"], answer=cols["answer"][:2])
    with pytest.raises(TypeError, match=r"completions\[1\]"):
        fn(prompts=cols["prompt"], completions=["1", 2, "3"], answer=cols["answer"])
    assert counter.calls == 0
    # The env's query budget: 3 of 5 spent, the next batch of 3 is refused before grading.
    fn(prompts=cols["prompt"], completions=["1", "2", "3"], answer=cols["answer"], unknown_column=[0, 0, 0])
    assert fn.env.unwrapped.num_queries == 3
    with pytest.raises(QueryBudgetExhausted):
        fn(prompts=cols["prompt"], completions=["1", "2", "3"], answer=cols["answer"])
    assert counter.calls == fn.verifier_calls == 1
    with pytest.raises(TypeError, match="environment_factory"):
        reward_function(MULTI)


def test_log_metric_gets_accuracy_and_formatted():
    ds = prompt_dataset(ENV, n=2)
    cols = ds.to_dict()
    logged = {}
    fn = reward_function(ENV)
    fn(prompts=cols["prompt"], completions=[f"\\boxed{{{ds['answer'][0]}}}", "hm"], answer=cols["answer"],
       log_metric=logged.__setitem__)
    assert logged == {"oat_Arithmetic-v0/accuracy": 0.5, "oat_Arithmetic-v0/formatted": 0.5}
    assert fn(prompts=ds["prompt"], completions=ds["answer"], answer=ds["answer"]) == [1.0, 1.0]  # datasets columns


# -- reward_function: dueling envs -----------------------------------------------------------------
def test_duel_rewards_rank_pairs_like_the_envs_threshold_labels():
    kwargs = {"template": "bare", "label_mode": "threshold"}
    n, seed = 6, 2
    ds = prompt_dataset(DUEL, n=n, seed=seed, **kwargs)
    cols = ds.to_dict()
    assert ds.column_names == ["prompt", "answer", "prompt_uid", "reference"]
    offsets_a, offsets_b = [0, 1, 30, 2, 5, 0], [3, 0, 2, 40, 4, 1]
    a = [str(int(x) + d) for x, d in zip(cols["answer"], offsets_a)]
    b = [str(int(x) + d) if i != 4 else "no number" for i, (x, d) in enumerate(zip(cols["answer"], offsets_b))]
    fn = reward_function(DUEL, **kwargs)
    rewards = np.array(fn(prompts=cols["prompt"] * 2, completions=a + b, answer=cols["answer"] * 2))
    vec = gym.make_vec(DUEL, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    vec.reset(seed=seed)
    labels = vec.step((a, b))[1]
    assert (labels == 1.0).tolist() == (rewards[:n] > rewards[n:]).tolist()
    assert rewards[0] == 1.0 and rewards[n + 4] == 0.0  # exact answer: utility 1; no number: 0
    assert fn.verifier_calls == 1 and vec.unwrapped.num_queries == n and fn.env.unwrapped.num_queries == 0


def test_chat_duel_rewards_grade_the_env_prompt_string(tmp_path):
    oracle = LengthOracle()
    kwargs = {"prompt_data": str(_chat_rows(tmp_path)), "chat_format": "messages", "oracle": oracle}
    ds = prompt_dataset("oat/UltraFeedback-Duel-v0", n=3, **kwargs)
    cols = ds.to_dict()
    fn = reward_function("oat/UltraFeedback-Duel-v0", **kwargs)
    completions = [[{"role": "assistant", "content": "x" * (i + 1)}] for i in range(3)]
    assert fn(prompts=cols["prompt"], completions=completions, prompt_text=cols["prompt_text"]) == [1.0, 2.0, 3.0]
    assert fn(prompts=cols["prompt"], completions=completions) == [1.0, 2.0, 3.0]  # prompt JSON rebuilt from messages
    assert oracle.prompts == cols["prompt_text"] * 2


# -- environment_factory ---------------------------------------------------------------------------
def test_tool_env_episode_matches_env_steps():
    kwargs = {"max_turns": 3, "turn_penalty": 0.25, "per_turn_reward": -0.1, "failure_reward": -1.0}
    ds = prompt_dataset(MULTI, n=2, seed=4, conversational=True, **kwargs)
    cols = ds.to_dict()
    factory = environment_factory(MULTI, **kwargs)
    tool_env = factory()
    assert tool_env.reset(**ds[0]) is None and tool_env.turn == 0
    answer = cols["answer"][0]
    attempts = ["no idea", f"\\boxed{{{int(answer) + 3}}}", answer]
    replies = [tool_env.submit_answer(a) for a in attempts]

    env = gym.make(MULTI, **kwargs)
    obs, _ = env.reset(seed=4)
    assert obs == cols["prompt_text"][0]
    steps = [env.step(a) for a in attempts]
    for (obs_after, *_), reply, attempt in zip(steps[:2], replies[:2], attempts[:2]):
        assert obs_after.endswith(f"{attempt}\n\n{reply}\n\n")  # the env's own feedback text
    assert replies[2] == "Correct." and tool_env.done and tool_env.turn == 3
    assert tool_env.get_reward() == pytest.approx(sum(s[1] for s in steps)) == pytest.approx(1 - 0.5 - 0.2)
    assert tool_env.submit_answer(answer) == "This problem is already finished; no more answers are graded."
    assert factory.verifier_calls == 3 and factory.env.unwrapped.num_queries == 3

    assert tool_env.reset(**ds[1]) is None and not tool_env.done  # instances are reused across batches
    assert tool_env.get_reward() == -1.0  # no answer at all: a failed episode
    assert "incorrect" in tool_env.submit_answer(int(cols["answer"][1]) + 1)  # a bare number from tool-call JSON
    assert tool_env.get_reward() == pytest.approx(-0.1 - 1.0)  # unfinished after one wrong attempt
    assert tool_env.submit_answer(float(cols["answer"][1])) == "Correct."
    assert tool_env.get_reward() == pytest.approx(-0.1 + 1 - 0.25)


def test_tool_env_turn_limit_and_errors():
    factory = environment_factory(MULTI, max_turns=1)
    ds = prompt_dataset(MULTI, n=1, conversational=True)
    tool_env = factory()
    with pytest.raises(RuntimeError, match="reset"):
        tool_env.submit_answer("1")
    tool_env.reset(**ds[0])
    assert tool_env.submit_answer("\\boxed{-12345}") == "Incorrect. No attempts left."
    assert tool_env.done and tool_env.get_reward() == 0.0
    with pytest.raises(ValueError, match="conversational"):
        tool_env.reset(**prompt_dataset(MULTI, n=1)[0])
    with pytest.raises(ValueError, match="no 'answer' column"):
        tool_env.reset(prompt=[{"role": "user", "content": "What is 1+1?"}])
    with pytest.raises(TypeError, match="reward_function"):
        environment_factory(ENV)


def test_tool_env_without_dataset_serves_the_envs_stream():
    factory = environment_factory(MULTI, seed=9)
    envs = [factory() for _ in range(4)]
    placeholder = {"prompt": [{"role": "user", "content": ""}]}
    served = [e.reset(**placeholder) for e in envs] + [envs[0].reset()]
    assert served == prompt_dataset(MULTI, n=5, seed=9)["prompt"]
    assert factory.instances == 4


def test_tool_env_exposes_exactly_one_tool_with_a_schema():
    get_json_schema = pytest.importorskip("transformers.utils").get_json_schema  # how TRL reads a tool
    public = [name for name, _ in inspect.getmembers(MultiTurnToolEnv, inspect.isfunction) if not name.startswith("_")]
    assert sorted(public) == ["get_reward", "reset", "submit_answer"]
    schema = get_json_schema(environment_factory(MULTI)().submit_answer)["function"]
    assert schema["name"] == "submit_answer" and schema["parameters"]["required"] == ["answer"]
    assert schema["parameters"]["properties"]["answer"]["type"] == "string"


def test_python_tool_env_runs_code_in_the_sandbox_and_grades_nothing():
    factory = environment_factory(MULTI, python_tool=True, python_tool_kwargs={"max_tool_calls": 3, "timeout_s": 5.0})
    ds = prompt_dataset(MULTI, n=1, seed=1, conversational=True)
    tool_env = factory()
    assert isinstance(tool_env, PythonToolEnv)
    with pytest.raises(RuntimeError, match="reset"):
        tool_env.run_python("print(1)")
    tool_env.reset(**ds[0])
    assert tool_env.run_python("print(6 * 7)") == "42"
    assert "ZeroDivisionError" in tool_env.run_python("1 / 0")  # the traceback, not an exception here
    assert "NUL" in tool_env.run_python("print(1)\x00")  # model output that cannot run: a tool error
    assert "limit of 3 Python runs" in tool_env.run_python("print(2)")  # the per-episode budget
    assert factory.tool_calls == 3 and factory.verifier_calls == 0 and not tool_env.done  # tools grade nothing
    tool_env.reset(**ds[0])  # a new episode gets a fresh budget
    assert tool_env.run_python("import os; print(os.getuid())") in ("65534", "0")  # uid 65534 under bwrap
    assert tool_env.submit_answer(ds[0]["answer"]) == "Correct." and factory.verifier_calls == 1


def test_python_tool_options_are_checked():
    with pytest.raises(TypeError, match="python_tool=True"):
        environment_factory(MULTI, python_tool_kwargs={"timeout_s": 1.0})
    with pytest.raises(TypeError, match=r"unknown keys \['timeout'\]"):
        environment_factory(MULTI, python_tool=True, python_tool_kwargs={"timeout": 1.0})
    with pytest.raises(ValueError, match="timeout_s"):
        environment_factory(MULTI, python_tool=True, python_tool_kwargs={"timeout_s": 0})
    with pytest.raises(ValueError, match="must not set"):
        environment_factory(MULTI, python_tool=True, python_tool_kwargs={"sandbox_kwargs": {"memory_mb": 9}})


def test_python_tool_env_exposes_two_tools_with_schemas():
    get_json_schema = pytest.importorskip("transformers.utils").get_json_schema
    public = [name for name, _ in inspect.getmembers(PythonToolEnv, inspect.isfunction) if not name.startswith("_")]
    assert sorted(public) == ["get_reward", "reset", "run_python", "submit_answer"]
    schema = get_json_schema(environment_factory(MULTI, python_tool=True)().run_python)["function"]
    assert schema["name"] == "run_python" and schema["parameters"]["required"] == ["code"]


# -- the real TRL trainers -------------------------------------------------------------------------
def _trl():
    trl = pytest.importorskip("trl")
    import torch

    torch.set_num_threads(1)
    return trl


def _tiny_model(tokenizer, max_positions: int = 512):
    from oat_agents.tiny import build_tiny_llama

    return build_tiny_llama(len(tokenizer), hidden=32, layers=1, heads=2, seed=0, max_position_embeddings=max_positions)


def _no_checkpointing(config_class) -> dict:
    """Activation checkpointing off (TRL's default is on), under its transformers >= 5 name when it has one."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return {"activation_checkpointing": False} if "activation_checkpointing" in names else {"gradient_checkpointing": False}


def _grpo_config(trl, tmp_path, **overrides):
    options = {
        "output_dir": str(tmp_path / "grpo"), "num_generations": 2, "per_device_train_batch_size": 4,
        "max_completion_length": 6, "max_steps": 2, "logging_steps": 1, "report_to": [], "use_cpu": True,
        "bf16": False, **_no_checkpointing(trl.GRPOConfig), "save_strategy": "no", "disable_tqdm": True,
        "dataloader_num_workers": 0, "seed": 0, "beta": 0.0,
    }
    return trl.GRPOConfig(**{**options, **overrides})


class Recorder:
    """Sits between TRL and a reward function; keeps what TRL passed and what it got back."""

    def __init__(self, fn):
        self.fn, self.__name__, self.calls = fn, fn.__name__, []

    def __call__(self, prompts, completions, **kwargs):
        rewards = self.fn(prompts=prompts, completions=completions, **kwargs)
        self.calls.append({"completions": list(completions), "rewards": rewards, **kwargs})
        return rewards


@pytest.mark.parametrize("conversational", [False, True], ids=["text", "chat"])
def test_grpo_trainer_scores_with_the_reward_function(tmp_path, conversational):
    trl = _trl()
    from oat_agents.tiny import CharTokenizer

    kwargs = {"unformatted_reward": -1.0, "template": "bare"}
    seed, rows = 0, 4
    ds = prompt_dataset(ENV, n=rows, seed=seed, conversational=conversational, **kwargs)
    cols = ds.to_dict()
    fn = reward_function(ENV, **kwargs)
    recorder = Recorder(fn)
    tokenizer = CharTokenizer()
    trainer = trl.GRPOTrainer(model=_tiny_model(tokenizer), reward_funcs=recorder, args=_grpo_config(trl, tmp_path),
                              train_dataset=ds, processing_class=tokenizer)
    trainer.train()

    assert fn.verifier_calls == len(recorder.calls) == 2 and fn.items_scored == 8
    logged = [h[f"rewards/{fn.__name__}/mean"] for h in trainer.state.log_history if f"rewards/{fn.__name__}/mean" in h]
    assert logged == pytest.approx([np.mean(c["rewards"]) for c in recorder.calls])
    assert len({r for c in recorder.calls for r in c["rewards"]}) > 1  # formatted (0) and unformatted (-1)
    call = recorder.calls[0]
    assert {"completion_ids", "trainer_state", "answer", "prompt_uid"} <= call.keys()
    assert ("prompt_text" in call) == conversational
    # Replay every completion TRL generated through the env itself.
    for c in recorder.calls:
        for completion, uid, reward in zip(c["completions"], c["prompt_uid"], c["rewards"], strict=True):
            assert isinstance(completion, list) == conversational
            env = gym.make(ENV, **kwargs)
            env.reset(seed=seed)
            for _ in range(cols["prompt_uid"].index(uid)):
                env.reset()
            assert env.step(_text(completion))[1] == reward


def _tool_tokenizer(trl):
    from trl.chat_template_utils import add_response_schema, qwen3_chat_template

    from oat_agents.tiny import CharTokenizer

    tokenizer = CharTokenizer()
    tokenizer.chat_template = qwen3_chat_template  # renders tools and tool calls; TRL knows how to parse it
    return add_response_schema(tokenizer)


def test_grpo_environment_factory_runs_the_tool(tmp_path, monkeypatch):
    """A scripted policy (a tiny random model never calls a tool) drives TRL's real tool loop: the first
    rollout of each prompt answers wrong then right, the second right at once."""
    trl = _trl()
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    kwargs = {"max_turns": 2, "turn_penalty": 0.25, "failure_reward": -1.0}
    ds = prompt_dataset(MULTI, n=2, seed=0, conversational=True, **kwargs)
    cols = ds.to_dict()
    factory = environment_factory(MULTI, **kwargs)
    tokenizer = _tool_tokenizer(trl)
    gold = dict(zip(cols["prompt_text"], cols["answer"]))
    first_turns: dict[str, int] = {}

    def tool_call(answer: str) -> str:
        call = {"name": "submit_answer", "arguments": {"answer": answer}}
        return f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"

    class ScriptedGRPO(trl.GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **_):
            out = []
            for ids in prompt_ids:
                text = tokenizer.decode(ids)
                (problem,) = [p for p in gold if p in text]
                if "<tool_response>" not in text:
                    k = first_turns[problem] = first_turns.get(problem, -1) + 1
                    reply = tool_call("-999" if k % 2 == 0 else gold[problem])
                elif text.count("<tool_response>") == 1 and "incorrect" in text:
                    reply = tool_call(gold[problem])
                else:
                    reply = "Done.<|im_end|>"
                out.append(tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.eos_token_id])
            return out, None

    trainer = ScriptedGRPO(model=_tiny_model(tokenizer, 2048), args=_grpo_config(trl, tmp_path, max_steps=1,
                           max_completion_length=512), train_dataset=ds, processing_class=tokenizer,
                           environment_factory=factory)
    assert [t.__name__ for t in trainer.tools] == ["submit_answer"] and "MultiTurnToolEnv" in trainer.reward_func_names
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "rewards/MultiTurnToolEnv/mean" in h]
    assert log["rewards/MultiTurnToolEnv/mean"] == pytest.approx((0.75 + 1.0) / 2)
    assert log["tools/call_frequency"] == pytest.approx(1.5) and log["tools/failure_frequency"] == 0.0
    assert factory.verifier_calls == 6 and first_turns == {p: 1 for p in gold}


def test_grpo_environment_factory_runs_python_then_answers(tmp_path, monkeypatch):
    """TRL's real tool loop with both tools: a scripted policy computes the sum with run_python, then submits
    what the sandbox printed; every rollout succeeds at the first attempt."""
    trl = _trl()
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    ds = prompt_dataset(MULTI, n=2, seed=0, conversational=True, max_turns=2)
    cols = ds.to_dict()
    factory = environment_factory(MULTI, python_tool=True, max_turns=2)
    tokenizer = _tool_tokenizer(trl)
    questions = {p: re.search(r"What is (.+?)\?", p).group(1) for p in cols["prompt_text"]}  # "What is 6+7? ..."

    def tool_call(name: str, **arguments: str) -> str:
        return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call><|im_end|>"

    class ScriptedGRPO(trl.GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, **_):
            out = []
            for ids in prompt_ids:
                text = tokenizer.decode(ids)
                (problem,) = [p for p in questions if p in text]
                if "<tool_response>" not in text:
                    reply = tool_call("run_python", code=f"print({questions[problem]})")
                elif text.count("<tool_response>") == 1:
                    printed = text.rsplit("<tool_response>", 1)[1].split("</tool_response>")[0].strip()
                    reply = tool_call("submit_answer", answer=printed)
                else:
                    reply = "Done.<|im_end|>"
                out.append(tokenizer.encode(reply, add_special_tokens=False) + [tokenizer.eos_token_id])
            return out, None

    trainer = ScriptedGRPO(model=_tiny_model(tokenizer, 2048), args=_grpo_config(trl, tmp_path, max_steps=1,
                           max_completion_length=512), train_dataset=ds, processing_class=tokenizer,
                           environment_factory=factory)
    assert sorted(t.__name__ for t in trainer.tools) == ["run_python", "submit_answer"]
    trainer.train()
    (log,) = [h for h in trainer.state.log_history if "rewards/PythonToolEnv/mean" in h]
    assert log["rewards/PythonToolEnv/mean"] == pytest.approx(1.0)  # every rollout: computed, then correct
    assert factory.tool_calls == 4 and factory.verifier_calls == 4


def test_grpo_environment_factory_without_dataset(tmp_path, monkeypatch):
    trl = _trl()
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    factory = environment_factory(MULTI, seed=3, failure_reward=-1.0)
    tokenizer = _tool_tokenizer(trl)
    trainer = trl.GRPOTrainer(model=_tiny_model(tokenizer, 2048), args=_grpo_config(trl, tmp_path, max_steps=1),
                              processing_class=tokenizer, environment_factory=factory)
    trainer.train()
    served = sorted(e._episode.record.prompt for e in trainer.environments)
    assert served == sorted(prompt_dataset(MULTI, n=4, seed=3)["prompt"])  # the env's own seeded stream
    (log,) = [h for h in trainer.state.log_history if "rewards/MultiTurnToolEnv/mean" in h]
    assert log["rewards/MultiTurnToolEnv/mean"] == -1.0  # 6 random characters never call the tool


def test_online_dpo_trainer_with_duel_rewards(tmp_path, monkeypatch):
    _trl()
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    from oat_agents.tiny import CharTokenizer

    kwargs = {"template": "bare", "label_mode": "threshold", "max_digits": 1}
    seed, batch = 0, 4
    ds = prompt_dataset(DUEL, n=batch, seed=seed, **kwargs)
    cols = ds.to_dict()
    fn = reward_function(DUEL, **kwargs)
    recorder = Recorder(fn)
    tokenizer = CharTokenizer()
    model = _tiny_model(tokenizer)
    args = OnlineDPOConfig(
        output_dir=str(tmp_path / "odpo"), **_no_checkpointing(OnlineDPOConfig), per_device_train_batch_size=batch,
        max_steps=1, max_new_tokens=8, max_length=64, report_to="none", use_cpu=True, bf16=False,
        logging_steps=1, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0, beta=[0.1],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = OnlineDPOTrainer(model=model, ref_model=copy.deepcopy(model), reward_funcs=recorder, args=args,
                                   train_dataset=ds, processing_class=tokenizer)
        trainer.train()
    (call,) = recorder.calls
    assert fn.verifier_calls == 1 and len(call["completions"]) == 2 * batch
    a, b = call["completions"][:batch], call["completions"][batch:]
    rewards = np.array(call["rewards"])
    # TRL ranks each pair by these rewards; the env labels the same pairs the same way (ties aside).
    uids = call["prompt_uid"][:batch]
    assert sorted(uids) == sorted(cols["prompt_uid"])
    order = [uids.index(u) for u in cols["prompt_uid"]]
    vec = gym.make_vec(DUEL, num_envs=batch, vectorization_mode="vector_entry_point", **kwargs)
    vec.reset(seed=seed)
    labels = vec.step(([a[i] for i in order], [b[i] for i in order]))[1]
    ties = rewards[:batch][order] == rewards[batch:][order]
    assert (~ties).any() and ((labels == 1.0) == (rewards[:batch][order] > rewards[batch:][order]))[~ties].all()
