"""Gymnasium's own vectorizers, ``gym.make_vec(id, vectorization_mode="sync" | "async")``, on the oat ids.

Covers: the shared-memory hooks of the text spaces (:mod:`oat_env.spaces`), every registered id
(representative kwargs; the hub-backed ones on the offline shared data with the bundled embedding
oracle) reset/stepped in both modes against ``N`` mirrored single envs and closed without leaking
processes, and the documented differences from the native vector env (``oat_env.registration``).
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

import oat_env  # noqa: F401  (registers the ids)
from oat_env import registration
from oat_env.data.chat_data import format_tldr_prompt
from oat_env.data.records import PromptRecord
from oat_env.envs.base import QueryBudgetExhausted
from oat_env.oracles.base import OracleResult
from oat_env.spaces import (
    ConversationSpace,
    SharedConversationBatch,
    SharedTextBatch,
    TextPairSpace,
    TextSpace,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES = ("sync", "async")


# -------------------------------------------------------------------------- helpers
def _descendants(root: int) -> set[int]:
    """Live (non-zombie) descendant pids of ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _assert_no_leaks(spawned: set[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(spawned) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(spawned), f"processes left after close(): {sorted(_alive(spawned))}"


def _actions(kind: str, n: int, step: int) -> tuple[Any, list[Any]]:
    """A valid batched action and the matching per-sub-env actions."""
    if kind == "duel":
        a = tuple(f"The answer is {i + step}." for i in range(n))
        b = tuple(f"I think it is {10 * i + step}, a longer answer." for i in range(n))
        return (a, b), list(zip(a, b))
    responses = tuple(f"The answer is \\boxed{{{i + step}}}." for i in range(n))
    return responses, list(responses)


# -------------------------------------------------------------------------- the ids and their offline kwargs
def _math_file(tmp_path: Path) -> str:
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i), "unique_id": f"p{i}"} for i in range(6)]
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _shared(name: str) -> str:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"shared test data not found at {path}")
    return str(path)


# case name -> (env id, kind, num_envs, kwargs builder(tmp_path))
CASES: dict[str, tuple[str, str, int, Any]] = {
    "arithmetic-duel": ("oat/Arithmetic-Duel-v0", "duel", 3, lambda tmp: {}),
    "arithmetic": ("oat/Arithmetic-v0", "verifiable", 3, lambda tmp: {}),
    "countdown": ("oat/Countdown-v0", "verifiable", 3, lambda tmp: {}),
    "reasoning-gym": ("oat/ReasoningGym-v0", "verifiable", 3, lambda tmp: {"task": "leg_counting"}),
    "multiturn": ("oat/MathMultiTurn-v0", "verifiable", 3, lambda tmp: {"max_turns": 2}),
    "multiturn-messages": (
        "oat/MathMultiTurn-v0", "verifiable", 3, lambda tmp: {"max_turns": 2, "observation_format": "messages"},
    ),
    "gsm8k": ("oat/GSM8K-v0", "verifiable", 3, lambda tmp: {"prompt_data": _shared("gsm8k_test.jsonl"), "limit": 20}),
    "math": ("oat/MATH-v0", "verifiable", 3, lambda tmp: {"prompt_data": _math_file(tmp), "template": "boxed"}),
    "tldr-embedding": (
        "oat/TLDR-Duel-v0", "duel", 2,
        lambda tmp: {"prompt_data": _shared("tldr_fewshot_examples.jsonl"), "oracle": "embedding"},
    ),
    "ultrafeedback-embedding": (
        "oat/UltraFeedback-Duel-v0", "duel", 2,
        lambda tmp: {"prompt_data": _shared("llamafactory_dpo_en_demo.jsonl"), "limit": 20, "oracle": "embedding"},
    ),
}
REGISTERED = sorted(k for k in gym.registry if k.startswith("oat/"))


def test_every_factory_id_is_covered() -> None:
    assert set(registration.ENV_FACTORIES) <= {env_id for env_id, *_ in CASES.values()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_vector_mode_matches_single_envs(case: str, mode: str, tmp_path: Path) -> None:
    """Default vector_kwargs (NEXT_STEP autoreset): sub-env i behaves exactly as gym.make(id) seeded i."""
    env_id, kind, n, make_kwargs = CASES[case]
    kwargs = make_kwargs(tmp_path)
    singles = [gym.make(env_id, **kwargs) for _ in range(n)]
    before = _descendants(os.getpid())
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, **kwargs)
    assert isinstance(envs, SyncVectorEnv if mode == "sync" else AsyncVectorEnv)
    try:
        obs, infos = envs.reset(seed=0)
        expected = tuple(env.reset(seed=i)[0] for i, env in enumerate(singles))
        assert type(obs) is tuple and obs == expected  # the prompts (or conversations) themselves
        assert envs.observation_space.contains(obs)
        assert infos["_prompt_uid"].all()
        done = [False] * n
        for step in range(3):
            batch, per_env = _actions(kind, n, step)
            obs, rewards, terms, truncs, infos = envs.step(batch)
            mirrored = []
            for i, env in enumerate(singles):
                if done[i]:  # NEXT_STEP: this step only resets sub-env i
                    mirrored.append((env.reset()[0], 0.0, False))
                else:
                    o, r, t, tr, _ = env.step(per_env[i])
                    mirrored.append((o, r, t))
                done[i] = mirrored[-1][2]
            assert type(obs) is tuple and obs == tuple(m[0] for m in mirrored)
            assert envs.observation_space.contains(obs)
            np.testing.assert_array_equal(rewards, [m[1] for m in mirrored])
            np.testing.assert_array_equal(terms, [m[2] for m in mirrored])
            assert not truncs.any()
        spawned = _descendants(os.getpid()) - before
        if mode == "async":
            assert {p.pid for p in envs.unwrapped.processes} <= spawned
    finally:
        envs.close()
        for env in singles:
            env.close()
    _assert_no_leaks(spawned)


OTHER_IDS = [i for i in REGISTERED if i not in {c[0] for c in CASES.values()}] or [
    pytest.param(None, marks=pytest.mark.skip(reason="every registered oat/ id is covered by CASES"))
]


@pytest.mark.parametrize("env_id", OTHER_IDS)
def test_other_registered_ids_async(env_id: str) -> None:
    """Ids registered by other modules (e.g. integrations): async mode with default kwargs, when they
    build offline."""
    try:
        envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async")
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        pytest.skip(f"{env_id} does not build offline with default kwargs here: {type(err).__name__}: {err}")
    try:
        obs, _ = envs.reset(seed=0)
        assert envs.observation_space.contains(obs)
        envs.step(envs.action_space.sample())
    finally:
        envs.close()


# -------------------------------------------------------------------------- the shared-memory hooks
def test_text_shared_memory_round_trip() -> None:
    space = TextSpace(8)
    memory = create_shared_memory(space, n=4)
    view = read_from_shared_memory(space, memory, n=4)
    assert isinstance(view, SharedTextBatch) and view == ("",) * 4
    values = ("héllo 😀", "", "a\x00b", "\ud800x" + "z" * 6)  # NUL and a lone surrogate survive
    for i, value in enumerate(values):
        write_to_shared_memory(space, i, value, memory)
    assert view == values and tuple(view) == values and view[1:3] == values[1:3] and view[-1] == values[-1]
    snapshot = copy.deepcopy(view)
    assert type(snapshot) is tuple and snapshot == values
    assert type(copy.copy(view)) is tuple and pickle.loads(pickle.dumps(view)) == values
    write_to_shared_memory(space, 0, "new", memory)  # the view is live, the snapshot is not
    assert view[0] == "new" and snapshot[0] == values[0]
    with pytest.raises(ValueError, match="more than max_length=8"):
        write_to_shared_memory(space, 0, "x" * 9, memory)
    with pytest.raises(TypeError, match="must be a str"):
        write_to_shared_memory(space, 0, 3, memory)
    with pytest.raises(IndexError):
        view[4]


def test_pair_and_conversation_shared_memory() -> None:
    pair = TextPairSpace(5)
    memory = create_shared_memory(pair, n=2)
    write_to_shared_memory(pair, 1, ("ab", "cdé"), memory)
    a, b = read_from_shared_memory(pair, memory, n=2)
    assert (a, b) == (("", "ab"), ("", "cdé"))
    space = ConversationSpace(10, max_messages=3)
    memory = create_shared_memory(space, n=2)
    convo = ({"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5 ✗"}, {"role": "user", "content": ""})
    write_to_shared_memory(space, 0, convo, memory)
    write_to_shared_memory(space, 1, convo[:1], memory)
    view = read_from_shared_memory(space, memory, n=2)
    assert isinstance(view, SharedConversationBatch)
    assert copy.deepcopy(view) == (convo, convo[:1])
    with pytest.raises(ValueError, match="not in ConversationSpace"):
        write_to_shared_memory(space, 0, convo * 2, memory)  # 6 messages > max_messages=3
    with pytest.raises(ValueError, match="not in ConversationSpace"):
        write_to_shared_memory(space, 0, ({"role": "robot", "content": "x"},), memory)


def test_async_copy_false_spawn_and_no_shared_memory() -> None:
    envs = gym.make_vec("oat/Arithmetic-v0", num_envs=2, vectorization_mode="async", vector_kwargs={"copy": False})
    try:
        obs, _ = envs.reset(seed=0)
        assert isinstance(obs, SharedTextBatch)
        first = tuple(obs)
        envs.step(("1", "2"))
        envs.step(("1", "2"))  # NEXT_STEP: this one resets, serving new prompts
        assert tuple(obs) != first  # the same view now shows the new prompts
    finally:
        envs.close()
    # A fresh interpreter per worker: the hooks are registered when the worker imports oat_env. And
    # without shared memory, observations come through the pipes: the same tuples.
    for vector_kwargs in ({"context": "spawn"}, {"shared_memory": False}):
        envs = gym.make_vec("oat/Arithmetic-v0", num_envs=2, vectorization_mode="async", vector_kwargs=vector_kwargs)
        try:
            obs, _ = envs.reset(seed=0)
            assert type(obs) is tuple and obs == tuple(gym.make("oat/Arithmetic-v0").reset(seed=i)[0] for i in range(2))
        finally:
            envs.close()


# -------------------------------------------------------------------------- the documented differences
class CountingPreference:
    """A picklable preference oracle that records the batch size of every call (in its own process)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def compare(self, prompts, responses_a, responses_b, references=None) -> OracleResult:
        self.calls.append(len(prompts))
        return OracleResult(prob_a_wins=np.array([float(len(a) > len(b)) for a, b in zip(responses_a, responses_b)]))


def _count_calls(task: Any, calls: list[int]) -> None:
    original = task.verifier.reward

    def reward(prompts, responses, references=None):
        calls.append(len(prompts))
        return original(prompts, responses, references=references)

    task.verifier.reward = reward


@pytest.mark.parametrize("mode", MODES)
def test_documented_differences_from_native_vector_env(mode: str, monkeypatch) -> None:
    """Each numbered difference in the ``oat_env.registration`` docstring, asserted."""
    env_id, n, same_step = "oat/Arithmetic-v0", 3, {"autoreset_mode": AutoresetMode.SAME_STEP}
    native = gym.make_vec(env_id, num_envs=n)
    answers = ("1", "2", "3")

    # 1. Autoreset: NEXT_STEP by default, so every other step is a dummy round.
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert native.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    _, _, terms, _, infos = envs.step(answers)
    assert terms.all() and "correct" in infos and "final_info" not in infos  # feedback is top level
    _, rewards, terms, _, infos = envs.step(answers)  # the dummy round: only resets
    assert not terms.any() and (rewards == 0).all() and set(infos) == {"prompt_uid", "_prompt_uid"}
    assert envs.get_attr("num_queries") == (1,) * n  # nothing was queried in the dummy round
    envs.close()
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, vector_kwargs=same_step)
    obs, _ = envs.reset(seed=0)
    for _ in range(2):  # SAME_STEP: every step answers, like the native env
        prev = obs
        obs, _, terms, _, infos = envs.step(answers)
        assert terms.all() and list(infos["final_obs"]) == list(prev) and "correct" in infos["final_info"]
    assert envs.get_attr("num_queries") == (2,) * n

    # 2. Seeding: sub-env i is gym.make(id) seeded s + i; the native env's one generator serves others.
    obs, _ = envs.reset(seed=7)
    assert obs == tuple(gym.make(env_id).reset(seed=7 + i)[0] for i in range(n))
    assert native.reset(seed=7)[0] != obs
    assert envs.reset(seed=[3, 1, 4])[0] == tuple(gym.make(env_id).reset(seed=s)[0] for s in (3, 1, 4))
    with pytest.raises(TypeError, match="one generator drives all sub-envs"):
        native.reset(seed=[3, 1, 4])
    envs.close()
    records = [PromptRecord(prompt=f"What is {i} + {i}?", answer=str(2 * i), uid=str(i)) for i in range(n)]
    native_data = gym.make_vec("oat/GSM8K-v0", num_envs=n, prompt_data=records)
    data_envs = gym.make_vec("oat/GSM8K-v0", num_envs=n, vectorization_mode=mode, prompt_data=records)
    rounds = [(native_data.reset(seed=s)[0], data_envs.reset(seed=s)[0]) for s in range(10)]
    assert all(sorted(ours) == sorted(r.prompt for r in records) for ours, _ in rounds)  # one epoch per round
    assert any(len(set(theirs)) < n for _, theirs in rounds)  # N independent epochs: repeats in a round
    native_data.close()
    data_envs.close()

    # 3. Query budget: max_queries is per sub-env, N * max_queries in all.
    native_budget = gym.make_vec(env_id, num_envs=n, max_queries=2)
    native_budget.reset(seed=0)
    with pytest.raises(QueryBudgetExhausted):  # 3 queries needed, 2 allowed for the whole batch
        native_budget.step(answers)
    assert native_budget.unwrapped.num_queries == 0
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, vector_kwargs=same_step, max_queries=2)
    envs.reset(seed=0)
    envs.step(answers)
    envs.step(answers)
    assert envs.get_attr("num_queries") == (2,) * n and envs.get_attr("queries_remaining") == (0,) * n
    with pytest.raises(QueryBudgetExhausted), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # async: gymnasium logs each worker's traceback as a warning
        envs.step(answers)
    envs.close()

    # 4. Batching: N oracle calls of size 1 (one oracle per sub-env) vs ONE call of size N.
    native_calls: list[int] = []
    _count_calls(native.unwrapped.task, native_calls)
    native.reset(seed=0)
    native.step(answers)
    assert native_calls == [n]
    if mode == "sync":
        envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, vector_kwargs=same_step)
        calls: list[int] = []
        tasks = [env.unwrapped.task for env in envs.envs]
        assert len({id(task.verifier) for task in tasks}) == n
        for task in tasks:
            _count_calls(task, calls)
        envs.reset(seed=0)
        envs.step(answers)
        assert calls == [1] * n
        envs.close()
    built: list[int] = []  # sub-envs (each with its own oracle) built in THIS process
    original = registration.make_arithmetic_env
    monkeypatch.setattr(registration, "make_arithmetic_env", lambda **kw: built.append(1) or original(**kw))
    gym.make_vec(env_id, num_envs=n, vectorization_mode=mode).close()
    assert len(built) == (n if mode == "sync" else 1)  # async: N in the workers + 1 here to read the spaces
    oracle = CountingPreference()
    prompt = format_tldr_prompt("I lost my keys and found them in the fridge.")
    envs = gym.make_vec(
        "oat/TLDR-Duel-v0", num_envs=2, vectorization_mode=mode, oracle=oracle,
        prompt_data=[PromptRecord(prompt=prompt, reference="keys in fridge", uid="0")],
    )
    envs.reset(seed=0)
    _, rewards, *_ = envs.step((("a longer summary", "b"), ("short", "a much longer summary")))
    np.testing.assert_array_equal(rewards, [1.0, 0.0])
    assert oracle.calls == ([1, 1] if mode == "sync" else [])  # sync shares the object; async copies it
    envs.close()

    # 5. Env API: the native env's own members exist per sub-env only.
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode)
    envs.reset(seed=0)
    for name in ("eval_prompts", "num_eval_prompts", "evaluate", "prompt_pool", "serve_prompts", "state_dict"):
        assert hasattr(native.unwrapped, name) and not hasattr(envs, name), name
    per_env = envs.call("eval_prompts", 4)
    assert len(per_env) == n and all(p == native.unwrapped.eval_prompts(4) for p in per_env)
    assert envs.get_attr("num_eval_prompts") == (native.unwrapped.num_eval_prompts,) * n
    envs.close()
    native.close()
    if mode == "async":  # nothing of the above leaves a worker behind
        assert not [p for p in mp.active_children() if p.name.startswith("Worker<AsyncVectorEnv>")]
