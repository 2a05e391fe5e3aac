"""Every registered env: check_env, make_vec stepping, seeding, bad inputs, budgets."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import oat_env
from oat_env import QueryBudgetExhausted

OAT_IDS = sorted(i for i in gym.registry if i.startswith("oat/"))
MULTI_TURN_IDS = {"oat/MathMultiTurn-v0"}


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def offline_kwargs(tmp_path_factory):
    """Small offline configurations for ids whose defaults need the hub or heavy models. Every
    registered id must be listed so that a new env cannot skip these tests silently."""
    tmp = tmp_path_factory.mktemp("prompts")
    gsm8k = _jsonl(
        tmp / "gsm8k.jsonl",
        [{"question": f"Tom has {i} apples and buys {i + 2} more. How many?", "answer": f"{i}+{i + 2}\n#### {2 * i + 2}"}
         for i in range(12)],
    )
    math = _jsonl(
        tmp / "math.jsonl",
        [{"problem": f"Simplify $\\frac{{{i}}}{{{2 * i}}}$.", "answer": "\\frac{1}{2}", "unique_id": f"m{i}"}
         for i in range(1, 12)],
    )
    tldr = _jsonl(
        tmp / "tldr.jsonl",
        [{"id": i, "subreddit": "AskReddit", "title": f"Question {i}", "post": f"My post number {i} is long.",
          "reference_summary": f"post {i}"} for i in range(12)],
    )
    chat = _jsonl(
        tmp / "chat.jsonl",
        [{"prompt": f"Say {i}.", "chosen_response": f"{i}", "rejected_response": "no"} for i in range(12)],
    )
    from oat_env.oracles.reward_model import save_tiny_reward_model  # lazy: imports torch

    tiny_rm = save_tiny_reward_model(tmp / "tiny_rm", seed=0)
    duel = {"reward_model": tiny_rm, "device": "cpu"}
    return {
        "oat/TLDR-Duel-v0": {"prompt_data": tldr, "eval_prompt_data": tldr, **duel},
        "oat/UltraFeedback-Duel-v0": {"prompt_data": chat, "eval_prompt_data": chat, **duel},
        "oat/Arithmetic-v0": {},
        "oat/Arithmetic-Duel-v0": {},
        "oat/Countdown-v0": {},
        "oat/GSM8K-v0": {"prompt_data": gsm8k, "eval_prompt_data": gsm8k},
        "oat/MATH-v0": {"prompt_data": math, "eval_prompt_data": math},
        "oat/MathMultiTurn-v0": {},
        "oat/ReasoningGym-v0": {"task": "leg_counting"},
    }


def test_every_id_has_an_offline_config(offline_kwargs):
    assert set(OAT_IDS) == set(offline_kwargs), "add offline kwargs for new env ids to offline_kwargs"
    assert "oat/Arithmetic-v0" in OAT_IDS and "oat/Arithmetic-Duel-v0" in OAT_IDS


def test_register_is_idempotent():
    oat_env.register_envs()
    assert sorted(i for i in gym.registry if i.startswith("oat/")) == OAT_IDS


@pytest.mark.parametrize("env_id", OAT_IDS)
def test_check_env(env_id, offline_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning is a failure
        env = gym.make(env_id, **offline_kwargs[env_id])
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", OAT_IDS)
def test_make_vec_three_rounds(env_id, offline_kwargs):
    n = 8
    envs = gym.make_vec(env_id, num_envs=n, **offline_kwargs[env_id])
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert envs.num_envs == n
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs) and len(obs) == n
    assert infos["_prompt_uid"].all()
    envs.action_space.seed(0)
    for round_ in range(1, 4):
        actions = envs.action_space.sample()
        assert envs.action_space.contains(actions)
        prev_obs = obs
        obs, rewards, terms, truncs, infos = envs.step(actions)
        assert rewards.shape == (n,) and rewards.dtype == np.float64
        assert not truncs.any()
        if env_id not in MULTI_TURN_IDS:
            assert terms.all()  # single-turn: every sub-env finishes every step
        assert envs.observation_space.contains(obs)
        if terms.any():
            assert np.array_equal(infos["_final_obs"], terms) and np.array_equal(infos["_final_info"], terms)
            if env_id not in MULTI_TURN_IDS:
                assert list(infos["final_obs"]) == list(prev_obs)
            final = infos["final_info"]
            for key, value in final.items():
                if not key.startswith("_"):
                    assert len(value) == n and np.array_equal(final[f"_{key}"], terms), key
        else:
            assert "final_obs" not in infos
        assert envs.unwrapped.num_queries == round_ * n
    envs.close()


def _duel_actions(obs, rng):
    """Responses that are sometimes right: the arithmetic answer parsed from the prompt, perturbed."""
    a, b = [], []
    for prompt in obs:
        expr = prompt.split("What is ")[1].split("?")[0]
        value = oat_env.data.evaluate_expression(
            [int(t) for t in expr.replace("-", "+").split("+")],
            [c for c in expr if c in "+-"],
        )
        a.append(f"The answer is {value + int(rng.integers(-1, 2))}")
        b.append(f"The answer is {value + int(rng.integers(-3, 4))}")
    return a, b


def test_duel_feedback_and_regret_info():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=16)
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(0)
    a, b = _duel_actions(obs, rng)
    _, rewards, _, _, infos = envs.step((a, b))
    fi = infos["final_info"]
    assert np.array_equal(rewards, fi["label"].astype(float))
    assert np.array_equal(fi["label"], fi["prob_a_wins"] > 0.5)  # threshold mode
    assert np.all(fi["utility_best"] == 1.0)
    assert np.all(fi["utility_a"] <= 1.0) and np.all(fi["utility_b"] <= 1.0)
    # the utility is monotone in closeness: the winner is never further from the truth
    assert np.all((fi["utility_a"] > fi["utility_b"]) == (fi["prob_a_wins"] > 0.5))


def test_single_env_seeded_reset_reproducible():
    env = gym.make("oat/Arithmetic-Duel-v0", label_mode="bt_sample", flip_prob=0.2)
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=42)
        trajectory = [obs]
        for _ in range(5):
            _, reward, *_ = env.step(("The answer is 3", "7"))
            obs, _ = env.reset()
            trajectory += [reward, obs]
        runs.append(trajectory)
    assert runs[0] == runs[1]
    # a different seed gives a different prompt sequence
    seq43 = [env.reset(seed=43)[0]] + [env.reset()[0] for _ in range(5)]
    assert seq43 != runs[0][0::2]


def test_vector_env_seeded_reset_reproducible():
    def run(seed):
        envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, label_mode="bt_sample", flip_prob=0.1)
        obs, _ = envs.reset(seed=seed)
        out = [obs]
        for _ in range(3):
            obs, rewards, *_ = envs.step((["1"] * 4, ["The answer is 12"] * 4))
            out += [obs, rewards.tolist()]
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_bt_sampling_and_flip_noise_statistics():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=200, label_mode="threshold", flip_prob=0.25)
    obs, _ = envs.reset(seed=0)
    flips = []
    for _ in range(5):
        obs, rewards, _, _, infos = envs.step((["0"] * 200, ["nonsense"] * 200))
        fi = infos["final_info"]
        # "0" parses, "nonsense" does not: a always wins before noise
        assert np.array_equal(rewards.astype(bool), ~fi["label_flipped"])
        flips.append(fi["label_flipped"].mean())
    assert 0.18 < np.mean(flips) < 0.32
    bt = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=500, label_mode="bt_sample", temperature=1.0)
    bt.reset(seed=0)
    _, rewards, _, _, infos = bt.step((["0"] * 500, ["nonsense"] * 500))
    p = infos["final_info"]["prob_a_wins"]
    assert abs(rewards.mean() - p.mean()) < 0.06 and 0.5 < p.mean() < 1.0


def test_one_oracle_call_per_vector_step():
    from oat_env.data import ArithmeticProblems, ProceduralPrompts
    from oat_env.envs import DuelingVectorEnv
    from oat_env.oracles import ArithmeticUtilityOracle

    class CountingOracle(ArithmeticUtilityOracle):
        calls = 0

        def compare(self, *args, **kwargs):
            CountingOracle.calls += 1
            return super().compare(*args, **kwargs)

    envs = DuelingVectorEnv(ProceduralPrompts(ArithmeticProblems()), CountingOracle(), num_envs=32, oracle_reference="answer")
    envs.reset(seed=0)
    for _ in range(3):
        envs.step((["1"] * 32, ["2"] * 32))
    assert CountingOracle.calls == 3


def test_query_budget_raises_before_calling_the_oracle():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, max_queries=10)
    obs, _ = envs.reset(seed=0)
    obs, *_, infos = envs.step((["1"] * 4, ["2"] * 4))
    assert infos["final_info"]["queries_remaining"].tolist() == [6] * 4
    obs, *_ = envs.step((["1"] * 4, ["2"] * 4))
    with pytest.raises(QueryBudgetExhausted, match="needs 4 oracle queries but only 2 of max_queries=10 remain"):
        envs.step((["1"] * 4, ["2"] * 4))
    assert envs.unwrapped.num_queries == 8  # nothing was spent by the failed step
    single = gym.make("oat/Arithmetic-v0", max_queries=1)
    single.reset(seed=0)
    *_, info = single.step("5")
    assert info["queries_remaining"] == 0
    single.reset()
    with pytest.raises(QueryBudgetExhausted):
        single.step("5")


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [
        ("just one", TypeError, "must be a pair"),
        (("a", "b", "c"), ValueError, "got 3 items"),
        (("a", 5), TypeError, r"response_b\[0\] must be a str, got int"),
        (np.array(["a", "b", "c"]), ValueError, r"shape \(2,\)"),
        (("a" * 200_001, "b"), ValueError, "more than max_length"),
    ],
)
def test_single_duel_bad_actions(action, error, match):
    env = gym.make("oat/Arithmetic-Duel-v0", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(action)


@pytest.mark.parametrize(
    ("actions", "error", "match"),
    [
        ((["a"] * 3, ["b"] * 4), ValueError, r"responses_a has 3 items, expected 4"),
        ([("a", "b")] * 4, ValueError, r"must be \(responses_a, responses_b\).*tuple\(zip\(\*pairs\)\)"),
        ((["a"] * 4, "bbbb"), TypeError, "responses_b must be a sequence of 4 strings, got str"),
        ((["a"] * 4, [1, 2, 3, 4]), TypeError, r"responses_b\[0\] must be a str"),
        (np.array([["a", "b"]] * 3, dtype=object), ValueError, r"shape \(4, 2\)"),
    ],
)
def test_vector_duel_bad_actions(actions, error, match):
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4)
    envs.reset(seed=0)
    with pytest.raises(error, match=match):
        envs.step(actions)
    assert envs.unwrapped.num_queries == 0


def test_vector_duel_accepts_n_by_2_array():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=3)
    envs.reset(seed=0)
    _, rewards, *_ = envs.step(np.array([["1", "x"]] * 3, dtype=object))
    assert rewards.tolist() == [1.0, 1.0, 1.0]


def test_verifiable_bad_actions_and_rewards():
    envs = gym.make_vec("oat/Arithmetic-v0", num_envs=2, correct_reward=2.0, incorrect_reward=-1.0, unformatted_reward=-2.0)
    obs, _ = envs.reset(seed=0)
    with pytest.raises(ValueError, match="responses has 3 items, expected 2"):
        envs.step(["1", "2", "3"])
    with pytest.raises(TypeError, match=r"responses\[1\] must be a str, got NoneType"):
        envs.step(["1", None])
    with pytest.raises(TypeError, match="sequence of 2 strings, got str"):
        envs.step("12")
    answers = [str(eval(p.split("What is ")[1].split("?")[0])) for p in obs]  # test-only: trusted prompt text
    _, rewards, _, _, infos = envs.step([f"The answer is {answers[0]}", "no idea"])
    assert rewards.tolist() == [2.0, -2.0]
    fi = infos["final_info"]
    assert fi["correct"].tolist() == [True, False] and fi["formatted"].tolist() == [True, False]
    assert fi["extracted_answer"][0] == answers[0]
    assert "answer" not in fi and "reference" not in fi  # gold answers never leak


def test_step_before_reset_and_after_termination():
    env = oat_env.registration.make_arithmetic_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("1")
    env.reset(seed=0)
    env.step("1")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("1")
    envs = oat_env.registration.make_arithmetic_vector_env(num_envs=2)
    with pytest.raises(RuntimeError, match="before reset"):
        envs.step(["1", "2"])
    with pytest.raises(TypeError, match="seed must be an int"):
        envs.reset(seed=[1, 2])


def test_evaluate_costs_no_queries():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4)
    envs.reset(seed=0)
    prompts = envs.unwrapped.eval_prompts(20)
    assert prompts == envs.unwrapped.eval_prompts(20)
    perfect = envs.unwrapped.evaluate([envs.unwrapped.task.resolve([p])[0].reference for p in prompts], prompts)
    assert perfect["win_rate"] == pytest.approx(0.5) and perfect["anytime_regret"] == pytest.approx(0.0)
    bad = envs.unwrapped.evaluate(["no"] * 20, prompts)
    assert bad["win_rate"] < 0.01 and bad["anytime_regret"] == pytest.approx(1.0)
    assert envs.unwrapped.num_queries == 0
    with pytest.raises(KeyError, match="unknown to this env"):
        envs.unwrapped.evaluate(["1"], ["What is 1000+1?"])
    acc_env = gym.make("oat/Arithmetic-v0").unwrapped
    eval_prompts = acc_env.eval_prompts(10)
    result = acc_env.evaluate(["\\boxed{0}"] * 10, eval_prompts)
    assert 0.0 <= result["accuracy"] <= 0.2 and acc_env.num_queries == 0


def test_vector_state_dict_resumes_the_prompt_stream():
    import json

    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, label_mode="bt_sample")
    envs.reset(seed=5)
    envs.step((["1"] * 4, ["2"] * 4))
    state = json.loads(json.dumps(envs.unwrapped.state_dict()))  # must be JSON-serialisable
    expected = [envs.step((["3"] * 4, ["4"] * 4)) for _ in range(3)]
    fresh = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, label_mode="bt_sample")
    fresh.reset(seed=999)
    fresh.unwrapped.load_state_dict(state)
    got = [fresh.step((["3"] * 4, ["4"] * 4)) for _ in range(3)]
    for (o1, r1, *_), (o2, r2, *_) in zip(expected, got):
        assert o1 == o2 and np.array_equal(r1, r2)
    assert fresh.unwrapped.num_queries == envs.unwrapped.num_queries


def test_reward_oracle_is_wrapped_with_bradley_terry():
    from oat_env.data import ArithmeticProblems, ProceduralPrompts
    from oat_env.envs import DuelingEnv
    from oat_env.oracles import IntegerAnswerVerifier

    env = DuelingEnv(ProceduralPrompts(ArithmeticProblems()), IntegerAnswerVerifier(), oracle_reference="answer")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(("wrong", "wrong"))
    assert info["prob_a_wins"] == pytest.approx(0.5) and reward == 0.0
    assert info["score_a"] == 0.0 and info["correct_a"] is False


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, oat_env; print(sorted(m for m in ('torch','datasets','transformers','sympy','pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_close_releases_the_oracle():
    from oat_env.data import ArithmeticProblems, ProceduralPrompts
    from oat_env.envs import DuelingEnv, DuelingVectorEnv
    from oat_env.oracles import ArithmeticUtilityOracle

    class Closable(ArithmeticUtilityOracle):
        closed = 0

        def close(self):
            Closable.closed += 1

    prompts = ProceduralPrompts(ArithmeticProblems())
    DuelingEnv(prompts, Closable(), oracle_reference="answer").close()
    DuelingVectorEnv(prompts, Closable(), num_envs=2, oracle_reference="answer").close()
    assert Closable.closed == 2


def test_prompt_pool_serves_chosen_prompts_and_only_they_cost_queries():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=3)
    obs, _ = envs.reset(seed=1)
    env = envs.unwrapped
    pool = env.prompt_pool(7)
    assert len(pool) == 7 and pool[:3] == obs  # the served prompts come first
    assert env.prompt_pool(5) == pool and env.num_queries == 0  # fixed until the next step, and free
    grown = env.prompt_pool(9)
    assert grown[:7] == pool and len(grown) == 9
    served = env.serve_prompts([8, 2, 5])
    assert served == (grown[8], grown[2], grown[5]) == env.current_prompts
    _, _, _, _, infos = envs.step((["1"] * 3, ["2"] * 3))
    assert tuple(infos["final_obs"]) == served and env.num_queries == 3
    with pytest.raises(RuntimeError, match="needs a prompt_pool"):
        env.serve_prompts([0, 1, 2])  # the pool is dropped by the step
    # Reproducible from the reset seed, pool draws included.
    again = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=3)
    again.reset(seed=1)
    assert again.unwrapped.prompt_pool(9) == grown


@pytest.mark.parametrize(
    "indices, error, match",
    [([0, 1], ValueError, "3 integers"), ([0, 0, 1], ValueError, "distinct"), ([0, 1, 9], IndexError, "pool size"),
     ([0.0, 1.0, 2.0], ValueError, "integers")],
)
def test_serve_prompts_rejects_bad_indices(indices, error, match):
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=3)
    envs.reset(seed=0)
    envs.unwrapped.prompt_pool(5)
    with pytest.raises(error, match=match):
        envs.unwrapped.serve_prompts(indices)
    with pytest.raises(ValueError, match="num_envs"):
        envs.unwrapped.prompt_pool(2)


def test_prompt_pool_survives_state_dict():
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=2)
    envs.reset(seed=3)
    pool = envs.unwrapped.prompt_pool(6)
    envs.unwrapped.serve_prompts([4, 5])
    state = json.loads(json.dumps(envs.unwrapped.state_dict()))
    fresh = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=2)
    fresh.reset(seed=0)
    fresh.unwrapped.load_state_dict(state)
    assert fresh.unwrapped.prompt_pool(6) == pool and fresh.unwrapped.current_prompts == pool[4:]
