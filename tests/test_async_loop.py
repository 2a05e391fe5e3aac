"""Asynchronous mode (``LoopConfig.asynchronous``, :mod:`oat_agents.loops.overlap`): the actor generates round t+1
with the weights θ_t while the learner trains on round t, on real tiny models, envs and loops (fast)."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading

import gymnasium as gym
import pytest
import torch

import oat_env  # noqa: F401
from oat_agents.agents.apl import APLAgent
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.algorithms.pg import PGConfig
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.duel import run_online
from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl
from oat_agents.loops.multiturn import run_multiturn_rl
from oat_agents.loops.overlap import ActorThread
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "eval_fraction": 0.4}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def _models(seed: int):
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=seed)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(model, LearnerConfig(zero_stage=0, learning_rate=1e-2, micro_batch_size=8, seed=seed),
                            ref_model=copy.deepcopy(model))
    return policy, learner


def dap_agent(seed: int = 0, cls=DAPAgent) -> DAPAgent:
    policy, learner = _models(seed)
    return cls(policy, learner, DAPAgentConfig(max_new_tokens=3, max_seq_length=16, seed=seed))


def rl_agent(seed: int = 0, tis_cap: float | None = 2.0) -> GroupRLAgent:
    policy, learner = _models(seed)
    return GroupRLAgent(policy, learner, GroupRLAgentConfig(
        num_samples=4, max_new_tokens=3, max_seq_length=16, seed=seed,
        # An entropy bonus moves the weights even when an untrained model earns no reward (zero advantages).
        pg=PGConfig(advantage_estimator="dr_grpo", loss_agg="constant", tis_cap=tis_cap, entropy_coef=0.5)))


def fingerprint(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def instrument(agent, overlapping_learns: int = 0):
    """Record, for every sampling call, the thread it ran in and the policy's weights then; and every synced
    (learner) weights. The first ``overlapping_learns`` learn() calls wait until the actor has started the next
    round (which must be in flight then) and record that it did."""
    calls: list[tuple[str, float]] = []
    synced: list[float] = [fingerprint(agent.policy.model)]
    started = threading.Event()
    generate, sync, learn = agent.policy.generate, agent.sync_weights, agent.learn
    overlapped: list[bool] = []

    def recording_generate(prompts, n=1, sampling=None):
        if sampling is not None and sampling.temperature > 0:
            calls.append((threading.current_thread().name, fingerprint(agent.policy.model)))
            started.set()
        return generate(prompts, n=n, sampling=sampling)

    def recording_sync():
        seconds = sync()
        synced.append(fingerprint(agent.policy.model))
        return seconds

    def waiting_learn():
        # In asynchronous mode the next round's act was submitted before learn(): it must start while we learn.
        if len(overlapped) < overlapping_learns:
            overlapped.append(started.wait(timeout=60) and threading.current_thread() is threading.main_thread())
            started.clear()
        return learn()

    agent.policy.generate, agent.sync_weights, agent.learn = recording_generate, recording_sync, waiting_learn
    return calls, synced, overlapped


def loop_config(tmp_path, name: str, total: int, **kw) -> LoopConfig:
    return LoopConfig(total_queries=total, eval_query_interval=0, log_dir=str(tmp_path / name), progress=False,
                      tensorboard=False, **kw)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_actor_samples_one_update_behind_in_asynchronous_mode(tmp_path, asynchronous):
    agent = dap_agent()
    # the last learn() has no next round to overlap (it would exceed the budget)
    calls, synced, overlapped = instrument(agent, overlapping_learns=4 if asynchronous else 0)
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    result = run_online(envs, agent, loop_config(tmp_path, f"a{asynchronous}", 20, asynchronous=asynchronous))
    assert result.rounds == 5 and result.queries == 20
    assert len(calls) == 5  # no generation beyond the budget
    threads = [name for name, _ in calls]
    used = [w for _, w in calls]
    assert len(set(synced)) == 6  # every learn() moved the weights
    if asynchronous:
        assert threads[0] == threading.main_thread().name
        assert all(name.startswith("oat-actor") for name in threads[1:])
        # round 0 and round 1 (generated during learn 0) sample θ_0; round t+1 samples θ_t
        assert used == [synced[0], synced[0], synced[1], synced[2], synced[3]]
        assert overlapped == [True, True, True, True]
    else:
        assert set(threads) == {threading.main_thread().name}
        assert used == synced[:5]


def _metrics(tmp_path, name):
    return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_asynchronous_runs_are_reproducible_and_time_their_rounds(tmp_path):
    runs = []
    for name in ("one", "two"):
        envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
        run_online(envs, dap_agent(), loop_config(tmp_path, name, 16, asynchronous=True))
        runs.append(_metrics(tmp_path, name))
    assert [r["train/loss"] for r in runs[0]] == [r["train/loss"] for r in runs[1]]
    assert [r["regret/cumulative"] for r in runs[0]] == [r["regret/cumulative"] for r in runs[1]]
    for row in runs[0]:
        assert row["misc/round_s"] > 0 and row["actor/generate_s"] > 0 and row["train/step_s"] > 0
    assert torch.get_num_threads() >= 1


def test_group_rl_in_asynchronous_mode_corrects_the_stale_sampler(tmp_path):
    """Synchronously the sampler is the learner (log-prob mismatch ~ 0); asynchronously it lags one update, which
    the TIS weights see."""
    mismatch = {}
    for asynchronous in (False, True):
        envs = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4, **ENV_KWARGS)
        name = f"rl{asynchronous}"
        run_online_rl(envs, rl_agent(), loop_config(tmp_path, name, 40, asynchronous=asynchronous))
        rows = _metrics(tmp_path, name)
        assert len(rows) == 5 and all("train/tis_weight_mean" in r for r in rows)
        mismatch[asynchronous] = [r["train/logprob_mismatch"] for r in rows]
    assert max(mismatch[False]) < 1e-4
    assert mismatch[True][0] < 1e-4  # round 0 is sampled by the same weights it trains
    assert min(mismatch[True][1:]) > 10 * max(mismatch[False]) and min(mismatch[True][1:]) > 1e-3


def test_policy_gradient_without_importance_correction_warns(tmp_path):
    envs = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4, **ENV_KWARGS)
    with pytest.warns(UserWarning, match="tis_cap"):
        run_online_rl(envs, rl_agent(tis_cap=None), loop_config(tmp_path, "warn", 8, asynchronous=True))


def test_what_cannot_overlap_is_refused(tmp_path):
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    with pytest.raises(ValueError, match="cannot overlap its learn"):
        run_online(envs, dap_agent(cls=APLAgent), loop_config(tmp_path, "apl", 8, asynchronous=True))
    with pytest.raises(ValueError, match="multi-turn loop"):
        run_multiturn_rl(None, None, loop_config(tmp_path, "mt", 8, asynchronous=True))
    agent = dap_agent()
    agent.collocate = True
    with pytest.raises(ValueError, match="collocated"):
        run_online(envs, agent, loop_config(tmp_path, "colo", 8, asynchronous=True))
    with pytest.raises(ValueError, match="async_threads"):
        LoopConfig(async_threads=0)


def test_a_failing_learn_waits_for_the_actor_and_leaves_threads_as_they_were(tmp_path):
    before = torch.get_num_threads()
    agent = dap_agent()
    finished = []
    generate = agent.policy.generate

    def slow_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        finished.append(threading.current_thread().name)
        return out

    agent.policy.generate = slow_generate
    learn = agent.learn
    count = [0]

    def failing_learn():
        count[0] += 1
        if count[0] == 2:
            raise RuntimeError("learner failed")
        return learn()

    agent.learn = failing_learn
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    with pytest.raises(RuntimeError, match="learner failed"):
        run_online(envs, agent, loop_config(tmp_path, "fail", 40, asynchronous=True, async_threads=1))
    # round 0 (main), round 1 (actor, during learn 0), round 2 (actor, during the failing learn 1): all finished
    assert len(finished) == 3 and finished[2].startswith("oat-actor")
    assert torch.get_num_threads() == before


def test_actor_thread_errors_surface_after_learn():
    actor = ActorThread()
    try:
        order = []
        with pytest.raises(ValueError, match="actor broke"):
            actor.run_beside(lambda: (_ for _ in ()).throw(ValueError("actor broke")), lambda: order.append("learn"))
        assert order == ["learn"]
        metrics, (action, seconds) = actor.run_beside(lambda: "a", lambda: {"m": 1.0})
        assert metrics == {"m": 1.0} and action == "a" and seconds >= 0
    finally:
        actor.close()


def test_asynchronous_checkpoints_resume(tmp_path):
    def run(total, resume):
        envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
        config = loop_config(tmp_path, "ck", total, asynchronous=True, save_every=1, resume=resume,
                             checkpoint_dir=str(tmp_path / "ckpt"))
        return run_online(envs, dap_agent(), config)

    first = run(8, resume=False)
    assert first.rounds == 2
    resumed = run(16, resume=True)
    assert resumed.rounds == 4 and resumed.queries == 16


def test_oat_train_asynchronous_options():
    from oat_agents.cli.train import TrainConfig, check_config

    config = TrainConfig(algo="dr_grpo")
    config = dataclasses.replace(config, loop=dataclasses.replace(config.loop, asynchronous=True))
    checked, *_ = check_config(config)
    assert checked.rl.pg.tis_cap == 2.0
    with pytest.raises(ValueError, match="apl"):
        check_config(dataclasses.replace(config, algo="apl"))
    with pytest.raises(ValueError, match="multi-turn"):
        check_config(dataclasses.replace(config, algo="ppo"))


def test_a_learner_with_dropout_warns(tmp_path):
    agent = dap_agent()
    agent.learner.module.config.attention_dropout = 0.1
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    with pytest.warns(UserWarning, match="dropout"):
        run_online(envs, agent, loop_config(tmp_path, "dropout", 8, asynchronous=True))


def test_oat_train_asynchronous_checks_a_user_registered_env_once_its_kind_is_known(monkeypatch):
    """A user id whose registration does not tell its kind (an untyped factory) is checked once the env is built:
    the multi-turn refusal still comes before any model is built."""
    from oat_agents.cli import build
    from oat_agents.cli.train import TrainConfig, train

    def factory(num_envs: int = 1, **kwargs):  # no return annotation: the kind is unknown until built
        return gym.make_vec("oat/MathMultiTurn-v0", num_envs=num_envs, **kwargs)

    gym.register(id="test17/UntypedMultiTurn-v0", vector_entry_point=factory)
    monkeypatch.setattr(build, "build_models", lambda *a, **k: pytest.fail("a model was built"))
    try:
        config = TrainConfig(algo="reinforce", env_id="test17/UntypedMultiTurn-v0", num_envs=2)
        config = dataclasses.replace(config, loop=dataclasses.replace(config.loop, asynchronous=True))
        with pytest.raises(ValueError, match="not supported for multi-turn"):
            train(config)
    finally:
        gym.registry.pop("test17/UntypedMultiTurn-v0")
