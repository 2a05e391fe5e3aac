"""Offline first contact: the first error names every way out, unknown keywords are refused before
anything loads, and the held-out split is decided (and counted) at construction.

Everything here runs with the hub unreachable (``HF_HUB_OFFLINE=1``, set by conftest).
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import oat_env  # noqa: F401  (registers the ids)
from oat_env import registration
from oat_env.data.arithmetic import ArithmeticConfig, ArithmeticProblems, evaluate_expression
from oat_env.data.chat_data import format_tldr_prompt
from oat_env.data.hub import PromptDataUnavailableError
from oat_env.data.records import PromptRecord
from oat_env.data.sources import ProceduralPrompts, stable_fraction
from oat_env.oracles.base import OracleResult

DUEL_IDS = ("oat/TLDR-Duel-v0", "oat/UltraFeedback-Duel-v0")
WAYS_OUT = ("prompt_data=", "oracle='embedding'", "reward_model=", "oracle_url=")


class FirstWins:
    """A preference oracle object (nothing to load)."""

    def compare(self, prompts, responses_a, responses_b, references=None) -> OracleResult:
        return OracleResult(prob_a_wins=np.ones(len(prompts)))


def _records(n: int, tldr: bool = False) -> list[PromptRecord]:
    def prompt(i: int) -> str:
        return format_tldr_prompt(f"post number {i}") if tldr else f"What is {i} + {i}?"

    return [PromptRecord(prompt=prompt(i), reference=f"summary {i}", answer=str(2 * i), uid=str(i)) for i in range(n)]


@pytest.fixture
def offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def nothing_loads(monkeypatch) -> None:
    """Any prompt-data or model load fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError("something was loaded before the keywords were checked")

    for name in ("load_prompt_records", "RewardModelOracle", "MessagesRewardModelOracle", "RemoteOracle"):
        monkeypatch.setattr(registration, name, fail)


# -------------------------------------------------------------------------- the first error
@pytest.mark.parametrize("env_id", DUEL_IDS)
def test_first_error_without_arguments_names_every_way_out(env_id, offline) -> None:
    with pytest.raises(PromptDataUnavailableError) as err:
        gym.make(env_id)
    message = str(err.value)
    assert all(way in message for way in WAYS_OUT), message
    assert "not model_name_or_path=" in message


@pytest.mark.parametrize("env_id", DUEL_IDS)
def test_reward_model_error_with_local_prompts_names_every_way_out(env_id, offline) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(OSError, match="could not load reward model") as err:
        gym.make(env_id, prompt_data=_records(3, tldr=True))
    message = str(err.value)
    assert all(way in message for way in WAYS_OUT), message
    assert registration.DEFAULT_REWARD_MODEL in message and "HF_HUB_OFFLINE is set" in message
    assert "(model_name_or_path=...)" not in message  # the oracle class's keyword is not this env's


def test_offline_ways_out_text() -> None:
    assert registration.offline_ways_out("oat/TLDR-Duel-v0") == (
        "Ways out for oat/TLDR-Duel-v0 without the Hugging Face hub: prompt_data='prompts.jsonl' (local prompts: "
        ".jsonl/.json/.parquet/.csv or a list of PromptRecord; add eval_prompt_data= for held-out prompts) "
        "together with an oracle that needs no hub: oracle='embedding' (the bundled offline "
        "reference-similarity oracle), reward_model='path/to/reward_model_dir' (a local reward model "
        "directory; this env's keyword is reward_model=, not model_name_or_path=) or "
        "oracle_url='http://host:port' (an oat-serve-oracle service)."
    )


# -------------------------------------------------------------------------- keywords are checked first
def test_model_name_or_path_is_refused_before_the_oracle_loads(nothing_loads) -> None:
    for env_id in DUEL_IDS:
        with pytest.raises(TypeError, match=r"\['model_name_or_path'\] \(did you mean model_name_or_path= -> reward_model=\?\); nothing was loaded"):
            gym.make(env_id, prompt_data=_records(3, tldr=True), model_name_or_path="/models/rm")
    with pytest.raises(TypeError, match="model_name_or_path= -> reward_model="):
        gym.make_vec("oat/TLDR-Duel-v0", num_envs=2, prompt_data=_records(3, tldr=True), model_name_or_path="/m")


@pytest.mark.parametrize("env_id", sorted(registration.ENV_FACTORIES))
@pytest.mark.parametrize("vector", [False, True])
def test_unknown_keywords_are_refused_before_anything_loads(env_id, vector, nothing_loads) -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['bogus_option'\]; nothing was loaded"):
        if vector:
            gym.make_vec(env_id, num_envs=2, bogus_option=1)
        else:
            gym.make(env_id, bogus_option=1)


def test_refusals_suggest_the_intended_keyword(nothing_loads) -> None:
    with pytest.raises(TypeError, match="max_digit= -> max_digits="):
        gym.make("oat/Arithmetic-v0", max_digit=3)
    with pytest.raises(TypeError, match=r"\['max_digits'\]"):  # arithmetic options do not apply to gsm8k
        gym.make("oat/MathMultiTurn-v0", source="gsm8k", max_digits=2)
    with pytest.raises(TypeError, match="eval_data= -> eval_prompt_data="):
        gym.make("oat/GSM8K-v0", eval_data="x.jsonl")
    with pytest.raises(TypeError, match=r"\['oracle_reference'\]"):  # fixed by the arithmetic duel env
        gym.make("oat/Arithmetic-Duel-v0", oracle_reference="reference")
    # Oracle options that do not fit the chosen oracle are also refused before the data loads.
    with pytest.raises(ValueError, match=r"\['dtype'\] do not apply to oracle='embedding'"):
        gym.make("oat/TLDR-Duel-v0", oracle="embedding", dtype="float16", prompt_data="x.jsonl")
    with pytest.raises(ValueError, match="cannot be combined"):
        gym.make("oat/TLDR-Duel-v0", oracle_url="http://127.0.0.1:1", reward_model="rm", prompt_data="x.jsonl")


# -------------------------------------------------------------------------- held-out prompts
def test_local_prompt_data_alone_has_no_held_out_split_from_construction() -> None:
    makers = (
        lambda: gym.make("oat/GSM8K-v0", prompt_data=_records(4)),
        lambda: gym.make("oat/TLDR-Duel-v0", prompt_data=_records(4, tldr=True), oracle=FirstWins()),
        lambda: gym.make_vec("oat/MathMultiTurn-v0", num_envs=2, source="math", prompt_data=_records(4)),
    )
    for make in makers:
        # Told at construction, not minutes later at the first evaluation.
        with pytest.warns(UserWarning, match=r"no held-out prompts.*Pass eval_prompt_data="):
            env = make()
        assert env.unwrapped.num_eval_prompts == 0  # known right after construction, nothing to load
        with pytest.raises(ValueError, match=r"num_eval_prompts is 0.*pass eval_prompt_data="):
            env.unwrapped.eval_prompts()
        env.close()


def test_eval_prompts_without_n_returns_every_held_out_prompt() -> None:
    held_out = _records(5)
    env = gym.make("oat/GSM8K-v0", prompt_data=_records(3), eval_prompt_data=held_out, template="plain")
    assert env.unwrapped.num_eval_prompts == 5
    assert env.unwrapped.eval_prompts() == [r.prompt for r in held_out]
    assert env.unwrapped.eval_prompts(2) == [r.prompt for r in held_out[:2]]
    env = gym.make("oat/TLDR-Duel-v0", prompt_data=_records(3, tldr=True), eval_prompt_data=_records(4, tldr=True),
                   oracle=FirstWins())
    assert env.unwrapped.num_eval_prompts == 4 and len(env.unwrapped.eval_prompts()) == 4


def _brute_force_held_out(config: ArithmeticConfig, eval_fraction: float) -> set[str]:
    gen = ArithmeticProblems(config)
    lo, hi = config.term_range
    uids = set()
    for k in range(lo, hi + 1):
        for terms in itertools.product(gen.term_values, repeat=k):
            for ops in itertools.product(sorted(set(config.operators)), repeat=k - 1):
                if not config.allow_negative and evaluate_expression(list(terms), list(ops)) < 0:
                    continue
                uid = "".join(f"{t}{o}" for t, o in zip(terms, ops)) + str(terms[-1])
                if stable_fraction(uid) < eval_fraction:
                    uids.add(uid)
    return uids


@pytest.mark.parametrize("env_id", ["oat/Arithmetic-v0", "oat/Arithmetic-Duel-v0", "oat/MathMultiTurn-v0"])
def test_finite_procedural_space_counts_and_serves_every_held_out_problem(env_id) -> None:
    single_digit = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "eval_fraction": 0.4}
    env = gym.make(env_id, **single_digit)
    expected = _brute_force_held_out(ArithmeticConfig(min_digits=1, max_digits=1, operators="+", template="bare"), 0.4)
    assert env.unwrapped.num_eval_prompts == len(expected) == 33  # the number oat_agents.recipes relies on
    prompts = env.unwrapped.eval_prompts()
    assert len(prompts) == len(set(prompts)) == 33
    assert {p.removesuffix("=") for p in prompts} == expected
    assert set(env.unwrapped.eval_prompts(33)) == set(prompts)  # a seeded draw of all of them
    with pytest.raises(ValueError, match="only 33 distinct held-out problems exist, asked for 34"):
        env.unwrapped.eval_prompts(34)
    env.reset(seed=0)  # training never serves a held-out problem
    train = {env.unwrapped.task.next_prompts(1, np.random.default_rng(i))[0].prompt for i in range(300)}
    assert not train & set(prompts)


def test_procedural_counts() -> None:
    config = ArithmeticConfig(operators="-", allow_negative=False)
    source = ProceduralPrompts(ArithmeticProblems(config), eval_fraction=0.1)
    assert source.num_eval_records == len(_brute_force_held_out(config, 0.1))
    assert gym.make("oat/Arithmetic-v0").unwrapped.num_eval_prompts == len(
        _brute_force_held_out(ArithmeticConfig(), 0.1)
    )
    assert gym.make("oat/Arithmetic-v0", eval_fraction=0.0).unwrapped.num_eval_prompts == 0
    big = gym.make("oat/Arithmetic-v0", max_digits=3, num_terms=3)  # 1000**3 * 2**2 expressions: not listed
    assert big.unwrapped.num_eval_prompts is None
    countdown = gym.make("oat/Countdown-v0")  # no enumerate_problems: unbounded
    assert countdown.unwrapped.num_eval_prompts is None
    for env in (big, countdown):
        with pytest.raises(ValueError, match=r"too large to list every held-out problem .*eval_prompts\(100\)"):
            env.unwrapped.eval_prompts()
        assert len(set(env.unwrapped.eval_prompts(5))) == 5
