"""oat/ReasoningGym-v0: reasoning-gym tasks as a verifiable env (check_env, vector stepping, the
seed-range held-out split, mixtures, rewards equal to reasoning-gym's score_answer, the optional import)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import Counter
from importlib.util import find_spec

import gymnasium as gym
import numpy as np
import pytest
from conftest import subprocess_env
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import oat_env  # noqa: F401  (the oat/* ids)
from oat_env.envs.verifiable import VerifiableEnv, VerifiableVectorEnv
from oat_env.integrations import reasoning_gym as rgm

needs_rg = pytest.mark.skipif(find_spec("reasoning_gym") is None, reason="reasoning-gym is not installed")
ID = rgm.ENV_ID
TASKS = ["leg_counting", "basic_arithmetic", "word_sorting"]


def _ref(env, prompt):
    """The JSON reference of a served prompt (split, index, task, gold answer)."""
    (record,) = env.unwrapped.task.resolve([prompt])
    return json.loads(record.answer)


def _rg_dataset(task, seed, size=rgm.DEFAULT_TRAIN_SIZE, **config):
    import reasoning_gym

    return reasoning_gym.create_dataset(task, seed=seed, size=size, **config)


@needs_rg
@pytest.mark.parametrize("task", [*TASKS, ["leg_counting", "basic_arithmetic"]])
def test_check_env(task):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning is a failure
        env = gym.make(ID, task=task)
        assert isinstance(env.unwrapped, VerifiableEnv)
        check_env(env.unwrapped)


@needs_rg
def test_make_vec_one_batched_verifier_call_per_step():
    n = 6
    envs = gym.make_vec(ID, num_envs=n, task="leg_counting")
    assert isinstance(envs.unwrapped, VerifiableVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    verifier = envs.unwrapped.task.verifier
    calls = []
    original = verifier.reward
    verifier.reward = lambda *a, **k: calls.append(len(a[1])) or original(*a, **k)
    obs, infos = envs.reset(seed=0)
    assert envs.observation_space.contains(obs) and infos["_prompt_uid"].all()
    for round_ in range(1, 4):
        golds = [_ref(envs, p)["answer"] for p in obs]
        actions = [f"<answer>{g}</answer>" if i % 2 == 0 else "no idea" for i, g in enumerate(golds)]
        prev, (obs, rewards, terms, truncs, infos) = obs, envs.step(actions)
        assert rewards.dtype == np.float64 and rewards.tolist() == [1.0, 0.0] * (n // 2)
        assert terms.all() and not truncs.any() and list(infos["final_obs"]) == list(prev)
        final = infos["final_info"]
        assert final["correct"].tolist() == [True, False] * (n // 2)
        assert final["formatted"].tolist() == [True, False] * (n // 2)
        assert list(final["task"]) == ["leg_counting"] * n and final["_score"].all()
        assert envs.unwrapped.num_queries == round_ * n
    assert calls == [n, n, n]
    envs.close()


@needs_rg
def test_reset_seed_reproducible_and_state_resumes():
    a, b = gym.make_vec(ID, num_envs=3, task=TASKS), gym.make_vec(ID, num_envs=3, task=TASKS)
    assert a.reset(seed=5)[0] == b.reset(seed=5)[0]
    a.step(["x"] * 3)
    state = json.loads(json.dumps(a.unwrapped.state_dict()))  # survives JSON (checkpoints)
    b.unwrapped.load_state_dict(state)
    assert b.unwrapped.current_prompts == a.unwrapped.current_prompts
    refs = [_ref(a, p) for p in a.unwrapped.current_prompts]
    _, rb, *_ = b.step([f"<answer>{r['answer']}</answer>" for r in refs])
    assert rb.tolist() == [1.0, 1.0, 1.0]


@needs_rg
@pytest.mark.parametrize("task", TASKS)
def test_reward_equals_score_answer(task):
    """Right, partially right, wrong and unformatted answers: the reward is reasoning-gym's own
    score_answer of the extracted answer on an independently built reasoning-gym entry."""
    env = gym.make(ID, task=task, dataset_seed=3)
    ds = _rg_dataset(task, seed=3)
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        ref = _ref(env, obs)
        entry = ds[ref["index"]]
        assert entry["question"] in obs and str(entry["answer"]) == ref["answer"]
        gold = entry["answer"]
        cases = {
            f"Thinking... <answer>{gold}</answer>": gold,
            f"<answer>{gold} legs</answer>": f"{gold} legs",  # partial credit on some scorers
            "<answer>certainly not this</answer>": "certainly not this",
            f"{gold}": None,  # no <answer> tags: nothing extracted
        }
        for response, extracted in cases.items():
            env.reset(seed=seed)
            _, reward, terminated, truncated, info = env.step(response)
            expected = float(ds.score_answer(extracted, entry))
            assert reward == expected == info["score"], (task, response)
            assert info["extracted_answer"] == extracted and info["formatted"] == (extracted is not None)
            assert info["correct"] == (expected == 1.0) and terminated and not truncated
        env.reset(seed=seed)
        assert env.step(f"<answer>{gold}</answer>")[1] == 1.0


@needs_rg
def test_reward_keeps_partial_credit_and_binary_mode():
    env = gym.make(ID, task="leg_counting")
    obs, _ = env.reset(seed=0)
    gold = _ref(env, obs)["answer"]
    _, reward, _, _, info = env.step(f"<answer>{gold} legs</answer>")
    assert reward == pytest.approx(len(gold) / len(f"{gold} legs")) and 0 < reward < 1 and not info["correct"]
    binary = gym.make(ID, task="leg_counting", reward="binary", incorrect_reward=-1.0, unformatted_reward=-2.0)
    binary.reset(seed=0)
    assert binary.step(f"<answer>{gold} legs</answer>")[1] == -1.0
    binary.reset(seed=0)
    assert binary.step("no tags")[1] == -2.0
    with pytest.raises(ValueError, match="reward must be one of"):
        gym.make(ID, reward="sometimes")


@needs_rg
def test_scorer_exception_scores_zero():
    """prime_factorization's scorer raises on a non-numeric answer: the reward is 0, counted."""
    env = gym.make(ID, task="prime_factorization")
    env.reset(seed=0)
    _, reward, _, _, info = env.step("<answer>zzz</answer>")
    assert reward == 0.0 and not info["correct"]
    assert env.unwrapped.last_oracle_metrics["oracle/scorer_errors"] == 1.0


@needs_rg
def test_held_out_split_is_a_disjoint_seed_range():
    seed, train_size, eval_size = 11, 500, 40
    env = gym.make(ID, task="basic_arithmetic", dataset_seed=seed, train_size=train_size, eval_size=eval_size)
    source = env.unwrapped.task.source
    train = [source.sample(np.random.default_rng(0)) for _ in range(300)]
    held_out = source.eval_records(eval_size)
    # Generator seeds: item i of a dataset seeded s comes from Random(s + i).
    train_seeds = {seed + r.meta["index"] for r in train}
    eval_seeds = {seed + train_size + r.meta["index"] for r in held_out}
    assert all(r.meta["split"] == "train" for r in train) and all(r.meta["split"] == "eval" for r in held_out)
    assert train_seeds <= set(range(seed, seed + train_size))
    assert eval_seeds == set(range(seed + train_size, seed + train_size + eval_size))
    assert {r.prompt for r in train}.isdisjoint(r.prompt for r in held_out)
    # The held-out items are reasoning-gym's items of the dataset seeded seed + train_size.
    ds = _rg_dataset("basic_arithmetic", seed=seed + train_size, size=eval_size)
    assert [json.loads(r.answer)["answer"] for r in held_out] == [ds[i]["answer"] for i in range(eval_size)]
    # Fixed and nested; evaluation scores without spending queries.
    prompts = env.unwrapped.eval_prompts(5)
    assert prompts == env.unwrapped.eval_prompts(5) == env.unwrapped.eval_prompts(8)[:5]
    assert len(env.unwrapped.eval_prompts()) == eval_size
    with pytest.raises(ValueError, match="eval_size=40"):
        env.unwrapped.eval_prompts(41)
    golds = [f"<answer>{ds[i]['answer']}</answer>" for i in range(5)]
    assert env.unwrapped.evaluate(golds, prompts)["accuracy"] == 1.0
    assert env.unwrapped.evaluate(["<answer>nope</answer>"] * 5, prompts)["accuracy"] == 0.0
    assert env.unwrapped.num_queries == 0


@needs_rg
def test_mixture_weights_configs_and_scoring():
    from reasoning_gym.composite import CompositeConfig, CompositeDataset, DatasetSpec

    weights = {"leg_counting": 3.0, "basic_arithmetic": 1.0}
    config = {"leg_counting": {"max_animals": 3}}
    envs = gym.make_vec(ID, num_envs=50, task=weights, task_config=config, train_size=2000)
    obs, _ = envs.reset(seed=0)
    counts = Counter()
    for _ in range(4):
        refs = [_ref(envs, p) for p in obs]
        obs, rewards, _, _, infos = envs.step([f"<answer>{r['answer']}</answer>" for r in refs])
        assert rewards.tolist() == [1.0] * 50  # each item scored by its own task's scorer
        assert list(infos["final_info"]["task"]) == [r["task"] for r in refs]
        counts.update(r["task"] for r in refs)
    assert set(counts) == set(weights) and 0.65 < counts["leg_counting"] / 200 < 0.85
    # The items are reasoning-gym's CompositeDataset items; per-task configs apply.
    composite = CompositeDataset(CompositeConfig(size=2000, seed=0, datasets=[
        DatasetSpec("leg_counting", 3.0, {"max_animals": 3}), DatasetSpec("basic_arithmetic", 1.0, {}),
    ]))
    data = envs.unwrapped.task.source.data
    for i in (0, 7, 1999):
        ours, theirs = data.entry("train", i), composite[i]
        assert ours["question"] == theirs["question"] and ours["answer"] == theirs["answer"]
        if ours["metadata"]["source_dataset"] == "leg_counting":
            assert ours["metadata"]["num_animals"] <= 3
    # A list is an equal-weight mixture; evaluation reports each task.
    env = gym.make(ID, task=["leg_counting", "word_sorting"])
    prompts = env.unwrapped.eval_prompts(20)
    golds = [f"<answer>{_ref(env, p)['answer']}</answer>" for p in prompts]
    result = env.unwrapped.evaluate(golds, prompts)
    assert result["accuracy"] == 1.0 and set(result["by_task"]) == {"leg_counting", "word_sorting"}
    assert sum(v["num_prompts"] for v in result["by_task"].values()) == 20


@needs_rg
def test_templates_and_extractors():
    env = gym.make(ID, task="leg_counting", template="answer_is")
    obs, _ = env.reset(seed=0)
    gold = _ref(env, obs)["answer"]
    assert obs.rstrip().endswith('"Answer: <your final answer>".')
    assert env.step(f"Counting...\nAnswer: {gold}.")[1] == 1.0
    plain = gym.make(ID, task="leg_counting", template="plain")
    obs, _ = plain.reset(seed=0)
    assert obs.startswith("Your task is to count") and plain.step(f" {gold}\n")[1] == 1.0
    r1 = gym.make(ID, task="leg_counting", template="r1")
    obs, _ = r1.reset(seed=0)
    assert obs.endswith("Assistant: <think>") and r1.step(f"hmm</think> <answer>{gold}</answer>")[1] == 1.0
    custom = gym.make(ID, task="leg_counting", template="Q: {question}\nA:", extractor="raw")
    assert custom.reset(seed=0)[0].startswith("Q: Your task")


@needs_rg
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "no_such_task"}, ValueError, "unknown reasoning-gym task"),
        ({"task": []}, ValueError, "task is empty"),
        ({"task": {"leg_counting": 0}}, ValueError, "must be a finite number > 0"),
        ({"task": ["leg_counting", "leg_counting"]}, ValueError, "more than once"),
        ({"task": 3}, TypeError, "task must be"),
        ({"task_config": {"legs": 3}}, ValueError, "no config fields"),
        ({"task_config": {"seed": 3}}, ValueError, "dataset_seed"),
        ({"task": ["leg_counting", "gcd"], "task_config": {"lcm": {}}}, ValueError, "not in task"),
        ({"template": "no placeholder"}, ValueError, "template must be"),
        ({"extractor": "boxed"}, ValueError, "extractor must be"),
        ({"train_size": 0}, ValueError, "train_size"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        gym.make(ID, **kwargs)


@needs_rg
def test_foreign_reference_is_refused():
    env = gym.make(ID, task="leg_counting")
    other = gym.make(ID, task="leg_counting", dataset_seed=99)
    record = other.unwrapped.task.source.eval_records(1)[0]
    with pytest.raises(ValueError, match="does not match"):
        env.unwrapped.evaluate(["<answer>1</answer>"], [record])


def test_missing_package_raises_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # `import reasoning_gym` now fails
    for build in (lambda: gym.make(ID, task="leg_counting"), lambda: gym.make_vec(ID, num_envs=2)):
        with pytest.raises(ImportError, match="pip install reasoning-gym"):
            build()


def test_oat_env_imports_and_registers_without_reasoning_gym():
    code = (
        "import sys; sys.modules['reasoning_gym'] = None\n"
        "import gymnasium as gym, oat_env\n"
        "from oat_env.integrations import reasoning_gym as m\n"
        "assert m.ENV_ID in gym.registry  # import oat_env registered it\n"
        "try:\n    gym.make(m.ENV_ID)\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert out.returncode == 0, out.stderr
    assert "ImportError:" in out.stdout and "pip install reasoning-gym" in out.stdout


def test_training_loops_evaluation_dumps_a_mixture_with_per_task_metrics(tmp_path):
    """The loops' held-out evaluation on a reasoning-gym mixture: ``by_task`` (a dict, not a per-item array) becomes
    ``eval/by_task/<task>/<metric>`` and the sample dump keeps every per-item field (it raised ``KeyError`` before)."""
    from oat_agents.loops.bookkeeping import LoopConfig, evaluate

    env = gym.make_vec("oat/ReasoningGym-v0", num_envs=2, task=["leg_counting", "basic_arithmetic"], eval_size=6)
    records = env.unwrapped.task.source.eval_records(6)

    class GoldAnswersOnOddItems:
        def generate_greedy(self, prompts):
            return [f"<answer>{json.loads(r.answer)['answer']}</answer>" if i % 2 else "no idea"
                    for i, r in enumerate(records)]

    metrics = evaluate(env, GoldAnswersOnOddItems(), LoopConfig(num_eval_prompts=6), queries=0, dump_dir=tmp_path)
    assert metrics["eval/accuracy"] == pytest.approx(0.5)
    tasks = {k.split("/")[2] for k in metrics if k.startswith("eval/by_task/")}
    assert tasks == {"leg_counting", "basic_arithmetic"}
    counts = sum(metrics[f"eval/by_task/{t}/num_prompts"] for t in tasks)
    assert counts == 6
    (dump,) = tmp_path.glob("queries_*.json")
    samples = json.loads(dump.read_text())["samples"]
    assert [s["correct"] for s in samples] == [False, True] * 3 and all("task" not in s or s["task"] for s in samples)
    env.close()
