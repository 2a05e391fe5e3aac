"""Vector-env checkpoint state: ``load_state_dict`` validates every field and is atomic.

A rejected state raises a ``TypeError``/``ValueError`` naming the field and leaves the env exactly
as it was: the same ``state_dict()``, and stepping afterwards gives what an env that never saw the
bad load gives. Covered: the arithmetic duel, verifiable and multi-turn ids (procedural prompts)
and a verifiable and a multi-turn env over a finite dataset (where the prompt ``order`` matters).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import oat_env  # noqa: F401  (registers the ids)
from oat_env.data import PromptDataset, PromptRecord
from oat_env.envs import MultiTurnMathVectorEnv, VerifiableVectorEnv
from oat_env.oracles import IntegerAnswerVerifier

NUM_ENVS = 4
MAX_QUERIES = 100
DATASET_SIZE = 10
MAX_TURNS = 3


def _dataset() -> PromptDataset:
    return PromptDataset(
        [PromptRecord(prompt=f"What is {i}+{i}?", answer=str(2 * i), uid=f"d{i}") for i in range(DATASET_SIZE)]
    )


FACTORIES: dict[str, Callable[[], Any]] = {
    "duel": lambda: gym.make_vec(
        "oat/Arithmetic-Duel-v0", num_envs=NUM_ENVS, max_queries=MAX_QUERIES, label_mode="bt_sample"
    ),
    "verifiable": lambda: gym.make_vec("oat/Arithmetic-v0", num_envs=NUM_ENVS, max_queries=MAX_QUERIES),
    "multiturn": lambda: gym.make_vec(
        "oat/MathMultiTurn-v0", num_envs=NUM_ENVS, max_turns=MAX_TURNS, max_queries=MAX_QUERIES
    ),
    "dataset": lambda: VerifiableVectorEnv(
        _dataset(), IntegerAnswerVerifier(), num_envs=NUM_ENVS, max_queries=MAX_QUERIES
    ),
    "multiturn-dataset": lambda: MultiTurnMathVectorEnv(
        _dataset(), IntegerAnswerVerifier(), num_envs=NUM_ENVS, max_turns=MAX_TURNS, max_queries=MAX_QUERIES
    ),
}
KINDS = list(FACTORIES)
PROCEDURAL = ["duel", "verifiable", "multiturn"]
DATASET = ["dataset", "multiturn-dataset"]
SINGLE_TURN = ["duel", "verifiable", "dataset"]
MULTI_TURN = ["multiturn", "multiturn-dataset"]


def _action(kind: str, step: int) -> Any:
    answers = [f"\\boxed{{{step + i}}}" for i in range(NUM_ENVS)]
    if kind == "duel":
        return [str(step + i) for i in range(NUM_ENVS)], [str(2 * step + i) for i in range(NUM_ENVS)]
    if kind in MULTI_TURN:  # mix a right answer in so some episodes end and others go on
        return ["\\boxed{0}", *answers[1:]]
    return answers


def _stepped(kind: str) -> Any:
    """A reset env after one step (the raw vector env), so every part of its state is non-trivial."""
    env = FACTORIES[kind]().unwrapped
    env.reset(seed=3)
    env.step(_action(kind, 0))
    return env


def _changed(state: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A deep copy of ``state`` with the entry at ``path`` set to ``value``."""
    out = copy.deepcopy(state)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _without(state: dict[str, Any], path: tuple) -> dict[str, Any]:
    out = copy.deepcopy(state)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _assert_same_steps(env: Any, twin: Any, kind: str, steps: int = 3) -> None:
    for t in range(1, steps + 1):
        np.testing.assert_equal(env.step(_action(kind, t)), twin.step(_action(kind, t)))
    assert env.num_queries == twin.num_queries and env.state_dict() == twin.state_dict()


def _assert_rejected(kind: str, bad: Any, error: type[Exception], match: str, env: Any = None) -> None:
    """Loading ``bad`` raises ``error`` matching ``match`` and changes nothing: same state_dict, and the
    next steps equal those of an identical env that never saw the load."""
    env = _stepped(kind) if env is None else env
    before = env.state_dict()
    with pytest.raises(error, match=match):
        env.load_state_dict(bad)
    assert env.state_dict() == before
    _assert_same_steps(env, _stepped(kind), kind)


# -- the query count ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_negative_query_count_is_rejected(kind):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("task", "queries"), -1000), ValueError,
                     r"state\['task'\]\['queries'\] must be an int >= 0, got -1000")


@pytest.mark.parametrize("kind", KINDS)
def test_string_query_count_is_rejected(kind):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("task", "queries"), "5"), TypeError,
                     r"state\['task'\]\['queries'\] must be an int, got str")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [2.9, 4.0, True])
def test_float_or_bool_query_count_is_rejected(kind, value):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("task", "queries"), value), TypeError,
                     rf"state\['task'\]\['queries'\] must be an int, got {type(value).__name__}")


@pytest.mark.parametrize("kind", KINDS)
def test_query_count_over_the_budget_is_rejected(kind):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("task", "queries"), MAX_QUERIES + 1), ValueError,
                     rf"queries'\] is {MAX_QUERIES + 1}, more than this env's max_queries={MAX_QUERIES}")


# -- the generator -----------------------------------------------------------------------------
def _rng_state(**changes: Any) -> dict[str, Any]:
    state = np.random.default_rng(0).bit_generator.state
    return {**state, **changes}


BAD_RNG_STATES = {
    "not-a-dict": (5, TypeError, r"state\['np_random'\] must be a dict"),
    "other-generator": (_rng_state(bit_generator="MT19937"), ValueError, r"np_random'\] is not a valid numpy PCG64"),
    "garbage-inner-state": (_rng_state(state="garbage"), ValueError, r"state\['np_random'\] is not a valid"),
    "float-leaf": (_rng_state(state={"state": 1.5, "inc": 1}), ValueError, "non-int"),
    "missing-key": ({k: v for k, v in _rng_state().items() if k != "uinteger"}, ValueError, "uinteger"),
    "extra-key": (_rng_state(extra=1), ValueError, "extra"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad_rng", list(BAD_RNG_STATES))
def test_bad_np_random_after_a_valid_task_is_atomic(kind, bad_rng):
    """The ``task`` entry is valid (and different) but ``np_random`` is not: the query count must stay."""
    value, error, match = BAD_RNG_STATES[bad_rng]
    env = _stepped(kind)
    state = env.state_dict()
    bad = _changed(_changed(state, ("task", "queries"), state["task"]["queries"] + 8), ("np_random",), value)
    _assert_rejected(kind, bad, error, match, env=env)


# -- served prompts ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", SINGLE_TURN)
def test_wrong_length_records_are_rejected(kind):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("records",), state["records"][:3]), ValueError,
                     rf"state\['records'\] has 3 items, expected {NUM_ENVS}")
    _assert_rejected(kind, _changed(state, ("records",), state["records"] * 2), ValueError,
                     rf"state\['records'\] has {2 * NUM_ENVS} items, expected {NUM_ENVS}")


BAD_RECORDS = {
    "string": (lambda rs: "What is 1+1?", TypeError, r"state\['records'\] must be a list, got str"),
    "record-not-a-dict": (lambda rs: [*rs[:-1], "1+1"], TypeError, r"state\['records'\]\[3\] must be a dict"),
    "missing-prompt": (lambda rs: [*rs[:-1], {"answer": "2"}], ValueError, r"\[3\] is missing \['prompt'\]"),
    "prompt-not-str": (lambda rs: [{**rs[0], "prompt": 7}, *rs[1:]], TypeError, r"\[0\] is not a valid prompt record"),
    "unknown-key": (lambda rs: [{**rs[0], "gold": "2"}, *rs[1:]], ValueError, r"\[0\] has unknown keys \['gold'\]"),
    "uid-not-str": (lambda rs: [{**rs[0], "uid": 3}, *rs[1:]], TypeError, r"\[0\]\['uid'\] must be a str or None"),
    "meta-not-dict": (lambda rs: [{**rs[0], "meta": [1]}, *rs[1:]], TypeError, r"\[0\]\['meta'\] must be a dict"),
}


@pytest.mark.parametrize("kind", SINGLE_TURN)
@pytest.mark.parametrize("bad_record", list(BAD_RECORDS))
def test_bad_records_are_rejected(kind, bad_record):
    make_bad, error, match = BAD_RECORDS[bad_record]
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("records",), make_bad(state["records"])), error, match)


def test_too_long_record_prompt_is_rejected():
    env = gym.make_vec("oat/Arithmetic-v0", num_envs=NUM_ENVS, max_prompt_length=200).unwrapped
    env.reset(seed=3)
    state = env.state_dict()
    records = [{**state["records"][0], "prompt": "x" * 201}, *state["records"][1:]]
    with pytest.raises(ValueError, match=r"\['records'\]\[0\]\['prompt'\] has 201 characters, more than max_prompt"):
        env.load_state_dict(_changed(state, ("records",), records))
    assert env.state_dict() == state


def test_bad_prompt_pool_is_rejected():
    env = _stepped("duel")
    env.prompt_pool(7)
    state = env.state_dict()
    _assert_rejected("duel", _changed(state, ("pool",), state["pool"][:3]), ValueError,
                     rf"state\['pool'\] has 3 items, expected at least {NUM_ENVS}")
    _assert_rejected("duel", _changed(_changed(state, ("records",), None), ("pool",), state["pool"]), ValueError,
                     r"state\['pool'\] must be None when state\['records'\] is")
    _assert_rejected("duel", _changed(state, ("pool",), 7), TypeError, r"state\['pool'\] must be a list")


# -- the prompt stream -------------------------------------------------------------------------
ORDER = r"state\['task'\]\['stream'\]\['order'\]"
PERMUTATION = rf"{ORDER} must be a permutation of range\({DATASET_SIZE}\) \(the dataset has {DATASET_SIZE} prompts\)"
BAD_ORDERS = {
    "out-of-range": (lambda o: [*o[:-1], DATASET_SIZE], ValueError, PERMUTATION),
    "negative": (lambda o: [*o[:-1], -1], ValueError, PERMUTATION),
    "duplicate": (lambda o: [o[0], *o[:-1]], ValueError, PERMUTATION),
    "too-short": (lambda o: o[:-1], ValueError, PERMUTATION),
    "floats": (lambda o: [float(i) for i in o], TypeError, rf"{ORDER} must be a flat list of ints"),
    "bools": (lambda o: [True] * len(o), TypeError, rf"{ORDER} must be a flat list of ints"),
    "nested": (lambda o: [o], TypeError, rf"{ORDER} must be a flat list of ints"),
    "string": (lambda o: "0123456789", TypeError, rf"{ORDER} must be a list of ints, got str"),
}


@pytest.mark.parametrize("kind", DATASET)
@pytest.mark.parametrize("bad_order", list(BAD_ORDERS))
def test_bad_dataset_order_is_rejected(kind, bad_order):
    """Before the fix an out-of-range order was accepted and the next step spent queries, then raised."""
    make_bad, error, match = BAD_ORDERS[bad_order]
    state = _stepped(kind).state_dict()
    order = state["task"]["stream"]["order"]
    _assert_rejected(kind, _changed(state, ("task", "stream", "order"), make_bad(order)), error, match)


@pytest.mark.parametrize("kind", DATASET)
def test_inconsistent_dataset_position_is_rejected(kind):
    state = _stepped(kind).state_dict()
    stream = ("task", "stream")
    served = state["task"]["stream"]["served"]
    _assert_rejected(kind, _changed(state, (*stream, "position"), DATASET_SIZE + 1), ValueError,
                     rf"\['position'\] must be in \[0, {DATASET_SIZE}\]")
    _assert_rejected(kind, _changed(state, (*stream, "served"), served + 1), ValueError,
                     rf"\['served'\] must be epoch \* {DATASET_SIZE} \+ position = {served}, got {served + 1}")
    _assert_rejected(kind, _changed(state, (*stream, "epoch"), -1), ValueError, r"\['epoch'\] must be an int >= 0")
    _assert_rejected(kind, _changed(state, (*stream, "order"), None), ValueError, "nothing drawn yet")


@pytest.mark.parametrize("kind", PROCEDURAL)
def test_order_on_a_procedural_source_is_rejected(kind):
    state = _stepped(kind).state_dict()
    _assert_rejected(kind, _changed(state, ("task", "stream", "order"), [0, 1, 2]), ValueError,
                     r"procedural source .* so state\['task'\]\['stream'\]\['order'\] must be None")
    _assert_rejected(kind, _changed(state, ("task", "stream", "position"), 2), ValueError, "epoch/position 0")


# -- shape of the state ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [None, [], "state", 5])
def test_wrong_top_level_type_is_rejected(kind, bad):
    _assert_rejected(kind, bad, TypeError, rf"state must be a dict \(as returned by state_dict\(\)\), got {type(bad).__name__}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", [("task",), ("task", "stream")])
def test_wrong_nested_type_is_rejected(kind, path):
    state = _stepped(kind).state_dict()
    where = "state" + "".join(f"\\['{k}'\\]" for k in path)
    _assert_rejected(kind, _changed(state, path, ["not", "a", "dict"]), TypeError, rf"{where} must be a dict")


def _state_paths(kind: str) -> list[tuple]:
    top = [("task",), ("np_random",), ("records",) if kind in SINGLE_TURN else ("episodes",)]
    stream = [("task", "stream", k) for k in ("epoch", "position", "order", "served")]
    return [*top, ("task", "queries"), ("task", "stream"), *stream]


@pytest.mark.parametrize("kind", KINDS)
def test_missing_keys_are_rejected(kind):
    state = _stepped(kind).state_dict()
    for path in _state_paths(kind):
        _assert_rejected(kind, _without(state, path), ValueError, rf"is missing \['{path[-1]}'\]")


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_keys_are_rejected(kind):
    state = _stepped(kind).state_dict()
    for path in [("extra",), ("task", "extra"), ("task", "stream", "extra")]:
        _assert_rejected(kind, _changed(state, path, 1), ValueError, r"has unknown keys \['extra'\]")


# -- multi-turn episodes -----------------------------------------------------------------------
def _episode_changes(state: dict[str, Any]) -> dict[str, tuple]:
    """Corruptions of a saved episode list: (bad episodes, error, match)."""
    eps = state["episodes"]
    mid = next(i for i, ep in enumerate(eps) if ep["turn"] == 1)  # an episode after one wrong attempt
    ep = eps[mid]

    def at(new_ep):
        return [*eps[:mid], new_ep, *eps[mid + 1:]]

    w = rf"state\['episodes'\]\[{mid}\]"
    return {
        "wrong-length": (eps[:3], ValueError, rf"state\['episodes'\] has 3 items, expected {NUM_ENVS}"),
        "not-a-list": ({"0": eps[0]}, TypeError, r"state\['episodes'\] must be a list"),
        "turn-at-limit": (at({**ep, "turn": MAX_TURNS}), ValueError, rf"{w}\['turn'\] must be an int in \[0, 2\]"),
        "negative-turn": (at({**ep, "turn": -1}), ValueError, rf"{w}\['turn'\]"),
        "string-turn": (at({**ep, "turn": "1"}), TypeError, rf"{w}\['turn'\] must be an int, got str"),
        "messages-count": (at({**ep, "messages": ep["messages"][:1]}), ValueError,
                           rf"{w}\['messages'\] has 1 items, expected 3"),
        "message-role": (at({**ep, "messages": [ep["messages"][0], {**ep["messages"][1], "role": "user"},
                                                 ep["messages"][2]]}), ValueError, r"\['role'\] must be 'assistant'"),
        "message-content": (at({**ep, "messages": [*ep["messages"][:2], {"role": "user", "content": 1}]}), TypeError,
                            r"\['content'\] must be a str"),
        "other-prompt": (at({**ep, "messages": [{"role": "user", "content": "?"}, *ep["messages"][1:]]}), ValueError,
                         "must start with the episode's prompt"),
        "text-mismatch": (at({**ep, "text": ep["text"] + "extra"}), ValueError, rf"{w}\['text'\] must be the prompt"),
        "text-not-str": (at({**ep, "text": None}), TypeError, rf"{w}\['text'\] must be a str"),
        "bad-record": (at({**ep, "record": {"prompt": 3}}), TypeError, rf"{w}\['record'\] is not a valid prompt record"),
        "missing-key": (at({k: v for k, v in ep.items() if k != "turn"}), ValueError, r"is missing \['turn'\]"),
    }


EPISODE_CHANGES = [
    "wrong-length", "not-a-list", "turn-at-limit", "negative-turn", "string-turn", "messages-count", "message-role",
    "message-content", "other-prompt", "text-mismatch", "text-not-str", "bad-record", "missing-key",
]


@pytest.mark.parametrize("kind", MULTI_TURN)
@pytest.mark.parametrize("change", EPISODE_CHANGES)
def test_bad_episodes_are_rejected(kind, change):
    state = _stepped(kind).state_dict()
    changes = _episode_changes(state)
    assert set(changes) == set(EPISODE_CHANGES)
    bad_episodes, error, match = changes[change]
    _assert_rejected(kind, _changed(state, ("episodes",), bad_episodes), error, match)


# -- valid states still load exactly -----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_valid_round_trip_resumes_exactly(kind):
    env = _stepped(kind)
    if kind == "duel":
        env.prompt_pool(6)
    state = json.loads(json.dumps(env.state_dict()))
    fresh = FACTORIES[kind]().unwrapped
    fresh.reset(seed=999)
    fresh.step(_action(kind, 0))
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    _assert_same_steps(fresh, env, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_state_before_reset_loads_exactly(kind):
    """A never-reset env's state (no served prompts) replaces the served prompts too."""
    state = json.loads(json.dumps(FACTORIES[kind]().unwrapped.state_dict()))
    env = _stepped(kind)
    env.load_state_dict(state)
    assert env.state_dict() == state
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(_action(kind, 1))
