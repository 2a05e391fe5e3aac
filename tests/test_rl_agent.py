"""The policy-gradient agents (GroupRLAgent, MultiTurnAgent), grouped envs, the RL loops and the critic on tiny
models (fast)."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import oat_env  # noqa: F401
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.agents.multiturn import MultiTurnAgent, MultiTurnAgentConfig
from oat_agents.agents.policy_gradient import Rollout
from oat_agents.algorithms.pg import PGConfig
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.learners.critic import Critic, CriticConfig, CriticTrainer
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.group_rl import make_grouped_vec, run_online_rl
from oat_agents.loops.multiturn import evaluate_multiturn, find_multiturn_task, run_multiturn_rl
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama
from oat_env.envs.grouped import GroupedTask
from oat_env.envs.tools import PythonToolWrapper

ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare", "eval_fraction": 0.4}
MT_KWARGS = {**ENV_KWARGS, "max_turns": 3, "feedback_wrong": "wrong", "feedback_unformatted": "wrong"}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def make_agent(seed: int = 0, lr: float = 1e-3, gas: int = 1, ref: bool = False, critic: bool = False,
               multiturn: bool = False, **config_kwargs) -> GroupRLAgent | MultiTurnAgent:
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=seed)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    trainer = CriticTrainer(Critic(copy.deepcopy(model)), CriticConfig(learning_rate=1e-3)) if critic else None
    learner = LearnerEngine(
        model,
        LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=4, gradient_accumulation_steps=gas, seed=seed),
        ref_model=copy.deepcopy(model) if ref else None,
    )
    config_kwargs.setdefault("max_new_tokens", 3)
    if multiturn:
        return MultiTurnAgent(policy, learner, MultiTurnAgentConfig(seed=seed, **config_kwargs), critic=trainer)
    config_kwargs.setdefault("num_samples", 4)
    return GroupRLAgent(policy, learner, GroupRLAgentConfig(seed=seed, **config_kwargs))


def weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------------------------------
# Config and grouped env
# ----------------------------------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError, match="num_samples >= 2"):
        GroupRLAgentConfig(num_samples=1)  # dr_grpo needs a group
    with pytest.raises(ValueError, match="disagrees"):
        GroupRLAgentConfig(num_samples=4, pg=PGConfig(advantage_estimator="grpo", group_size=2))
    with pytest.raises(ValueError, match="single-turn token-level ppo"):
        GroupRLAgentConfig(pg=PGConfig(advantage_estimator="ppo"))
    with pytest.raises(ValueError, match="turn_gamma"):
        MultiTurnAgentConfig(turn_gamma=1.5)
    with pytest.raises(ValueError, match="one response per turn"):
        MultiTurnAgentConfig(num_samples=2)
    for cls in (GroupRLAgentConfig, MultiTurnAgentConfig):
        with pytest.raises(ValueError, match="temperature"):
            cls(temperature=0.0)
    with pytest.raises(ValueError, match="needs a critic"):
        make_agent(multiturn=True, pg=PGConfig(advantage_estimator="ppo"))
    with pytest.raises(ValueError, match="reference model"):
        make_agent(pg=PGConfig(advantage_estimator="dr_grpo", kl_mode="loss", kl_coef=0.1))
    assert GroupRLAgentConfig(num_samples=1, pg=PGConfig(advantage_estimator="reinforce")).num_samples == 1


def test_grouped_env_serves_groups_and_grades_all_members_in_one_step():
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=3, group_size=4, **ENV_KWARGS)
    assert env.num_envs == 12
    obs, _ = env.reset(seed=0)
    groups = [obs[i * 4 : (i + 1) * 4] for i in range(3)]
    assert all(len(set(g)) == 1 for g in groups)
    answers = [str(eval(p[:-1])) for p in obs]  # "a+b=" -> the right answer
    actions = [a if i % 2 == 0 else "x" for i, a in enumerate(answers)]
    calls = []
    verifier = env.unwrapped.task.inner.verifier
    original = verifier.reward
    verifier.reward = lambda *a, **k: calls.append(len(a[1])) or original(*a, **k)
    next_obs, rewards, term, trunc, info = env.step(actions)
    assert calls == [12]  # one batched verifier call for every group member
    assert rewards.tolist() == [1.0, 0.0] * 6
    assert term.all() and not trunc.any()
    assert env.unwrapped.num_queries == 12
    assert all(len(set(next_obs[i * 4 : (i + 1) * 4])) == 1 for i in range(3))
    with pytest.raises(ValueError, match="groups of 4"):
        GroupedTask(env.unwrapped.task.inner, 4).next_prompts(6, np.random.default_rng(0))
    with pytest.raises(TypeError, match="takes no group_size=.*single-turn verifiable ids"):
        make_grouped_vec("oat/MathMultiTurn-v0", 2, 2, **MT_KWARGS)
    # The same env straight from Gymnasium: the grouping is the env's own.
    direct = gym.make_vec("oat/Arithmetic-v0", num_envs=12, group_size=4, **ENV_KWARGS)
    assert direct.reset(seed=0)[0] == obs
    with pytest.raises(ValueError, match="num_envs=10 is not a multiple of group_size=4"):
        gym.make_vec("oat/Arithmetic-v0", num_envs=10, group_size=4, **ENV_KWARGS)
    # single envs (gym.make, the sync vector mode) cannot be grouped: the error says where group_size= belongs
    with pytest.raises(TypeError, match="option of oat/Arithmetic-v0's own vector env.*default vectorization_mode"):
        gym.make_vec("oat/Arithmetic-v0", num_envs=4, group_size=2, vectorization_mode="sync", **ENV_KWARGS)


# ----------------------------------------------------------------------------------------------------
# Single-turn acting and learning
# ----------------------------------------------------------------------------------------------------


def test_act_observe_learn_sync_round():
    agent = make_agent()
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4, **ENV_KWARGS)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="not one group"):
        agent.act(["1+1=", "1+1=", "1+1=", "2+2="])
    with pytest.raises(ValueError, match="groups of num_samples=4"):
        agent.act(obs[:6])
    responses = agent.act(obs)
    assert len(responses) == 8 and all(isinstance(r, str) for r in responses)
    with pytest.raises(ValueError, match="got 3 rewards for 8"):
        agent.observe([1.0, 0.0, 1.0])
    _, rewards, *_ = env.step(responses)
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # force signal in both groups
    assert agent.observe(rewards) == 8 and len(agent.buffer) == 8
    assert [r.reward for r in agent.buffer] == rewards.tolist()
    assert all(len(r.sampler_logprobs) == len(r.response_ids) for r in agent.buffer)
    before = weights(agent.learner.module)
    metrics = agent.learn()
    assert agent.buffer == []
    assert metrics["actor/reward_mean"] == pytest.approx(0.5)
    assert metrics["train/rollouts"] == 8 and np.isfinite(metrics["train/loss"])
    # policy == learner at sampling time: the sampler's and learner's log-probs agree (TIS weight 1)
    assert metrics["train/logprob_mismatch"] < 1e-4
    assert metrics["train/tis_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    assert metrics["train/ratio_mean"] == pytest.approx(1.0)
    assert "train/entropy" in metrics and "train/grad_norm" in metrics
    after = weights(agent.learner.module)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    agent.sync_weights()
    assert all(torch.equal(v, after[k]) for k, v in weights(agent.policy.model).items())


def test_learning_raises_the_logprob_of_rewarded_responses():
    agent = make_agent(lr=1e-2)
    prompts = ["3+4="] * 4
    agent.act(prompts)
    agent.observe([1.0, 0.0, 0.0, 0.0])
    good = agent.buffer[0]
    bad = [r for r in agent.buffer[1:] if r.response_ids != good.response_ids]
    rows = [good] + bad[:1]

    def seq_logp(row: Rollout) -> float:
        batch = agent._collate([row])
        with torch.no_grad():
            logps, _ = agent._forward(batch, with_entropy=False)
        return float(logps.sum())

    before = [seq_logp(r) for r in rows]
    agent.learn()
    after = [seq_logp(r) for r in rows]
    assert after[0] > before[0]
    if len(rows) > 1:
        assert after[1] < before[1]


def test_empty_groups_give_no_gradient():
    agent = make_agent()
    agent.act(["3+4="] * 4)
    agent.observe([1.0] * 4)  # a constant group carries no Dr.GRPO signal
    before = weights(agent.learner.module)
    metrics = agent.learn()
    assert metrics["actor/all_one_groups"] == 1.0 and metrics["train/grad_norm"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in weights(agent.learner.module).items())


@pytest.mark.parametrize("loss_agg", ["constant", "token_mean", "seq_mean_token_mean"])
def test_gradient_accumulation_chunks_give_the_full_batch_step(loss_agg):
    pg = PGConfig(advantage_estimator="grpo", loss_agg=loss_agg)
    one = make_agent(gas=1, pg=pg)
    two = make_agent(gas=2, pg=pg)
    rollouts = [
        Rollout([1, 5, 6], [7, 8, 2], [-1.0, -1.0, -1.0], "stop", 1.0),
        Rollout([1, 5, 6], [9, 2], [-1.0, -1.0], "stop", 0.0),
        Rollout([1, 5, 6], [7], [-1.0], "length", 0.0),
        Rollout([1, 5, 6], [7, 7, 7, 2], [-1.0] * 4, "stop", 1.0),
    ]
    # Compare the gradient the optimizer step applies, not the weights after it: AdamW divides by sqrt(v), so a
    # float-rounding difference in a near-zero gradient element becomes a weight difference of up to 2·lr, and
    # which elements those are depends on the CPU's kernels (measured here: gradients agree to 3e-8 of 0.31,
    # weights only to 1.4e-6).
    applied = {}
    for agent in (one, two):
        step = agent.learner.optimizer.step

        def recording_step(*args, _agent=agent, _step=step, **kwargs):
            applied[id(_agent)] = [p.grad.detach().clone() for p in _agent.learner.module.parameters()]
            return _step(*args, **kwargs)

        agent.learner.optimizer.step = recording_step
        agent.buffer = copy.deepcopy(rollouts)
        agent.learn()
    g1, g2 = applied[id(one)], applied[id(two)]
    assert len(g1) == len(g2) > 0
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(g1, g2))
    with pytest.raises(ValueError, match="cannot fill gradient_accumulation_steps"):
        agent = make_agent(gas=2, num_samples=2, pg=PGConfig(advantage_estimator="rloo", loss_agg=loss_agg))
        agent.buffer = copy.deepcopy(rollouts[:2])
        agent.config.num_mini_batches = 2
        agent.learn()


def test_kl_to_reference_and_multiple_updates_use_old_logprobs():
    agent = make_agent(ref=True, learn_epochs=2, num_mini_batches=2,
                       pg=PGConfig(advantage_estimator="dr_grpo", loss_agg="constant", kl_mode="loss", kl_coef=0.05))
    agent.act(["3+4="] * 4 + ["1+2="] * 4)
    agent.observe([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    metrics = agent.learn()
    assert metrics["train/kl"] >= 0.0
    # 4 optimizer steps: after the first the learner moved, so some ratios differ from 1
    assert agent.learner.global_step == 4
    assert metrics["train/ratio_mean"] != pytest.approx(1.0, abs=1e-7)


def test_state_dict_round_trip():
    agent = make_agent()
    agent.act(["3+4="] * 4)
    agent.observe([1.0, 0.0, 0.0, 0.0])
    state = json.loads(json.dumps(agent.state_dict()))
    other = make_agent()
    other.load_state_dict(state)
    assert other.buffer == agent.buffer and other.round == 1
    with pytest.raises(RuntimeError, match="preceding act"):
        other.observe([1.0])


# ----------------------------------------------------------------------------------------------------
# Loops
# ----------------------------------------------------------------------------------------------------


def test_run_online_rl_logs_evaluates_and_checkpoints(tmp_path):
    agent = make_agent()
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4, **ENV_KWARGS)
    config = LoopConfig(total_queries=24, eval_query_interval=8, num_eval_prompts=5, log_dir=str(tmp_path / "run"),
                        progress=False)
    result = run_online_rl(env, agent, config)
    assert result.queries == 24 and result.rounds == 3
    assert [e["misc/queries"] for e in result.evals] == [0, 8, 16, 24]
    assert all(0.0 <= e["eval/accuracy"] <= 1.0 for e in result.evals)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    assert {"train/loss", "actor/reward_mean", "actor/accuracy", "misc/weight_sync_s", "eval/accuracy"} <= keys
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    with pytest.raises(ValueError, match="multiple of the agent's num_samples"):
        run_online_rl(make_grouped_vec("oat/Arithmetic-v0", 1, 3, **ENV_KWARGS), agent, config)


def _rl_run(tmp_path, name, total, resume=False):
    agent = make_agent()
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=2, group_size=4, **ENV_KWARGS)
    config = LoopConfig(total_queries=total, eval_query_interval=8, num_eval_prompts=5, log_dir=str(tmp_path / name),
                        checkpoint_dir=str(tmp_path / "ckpt" / name), save_every=1, resume=resume, progress=False)
    return agent, run_online_rl(env, agent, config)


def test_run_online_rl_resume_matches_uninterrupted_run(tmp_path):
    import shutil

    full_agent, full = _rl_run(tmp_path, "full", total=32)
    _rl_run(tmp_path, "part", total=16)
    shutil.copytree(tmp_path / "ckpt" / "part", tmp_path / "ckpt" / "resumed")
    agent, resumed = _rl_run(tmp_path, "resumed", total=32, resume=True)
    assert resumed.queries == full.queries == 32 and resumed.rounds == full.rounds == 4
    assert [e["eval/accuracy"] for e in resumed.evals] == [e["eval/accuracy"] for e in full.evals]
    final_full, final_resumed = weights(full_agent.learner.module), weights(agent.learner.module)
    assert all(torch.allclose(final_full[k], final_resumed[k], atol=1e-6) for k in final_full)


def test_multiturn_episodes_of_different_lengths_enter_the_buffer_when_done():
    agent = make_agent(multiturn=True, turn_gamma=0.5)
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=3, **MT_KWARGS)
    obs, _ = env.reset(seed=0)
    answers = lambda o: [str(eval(x.split("=")[0])) for x in o]  # noqa: E731
    # env 0 solves at turn 1, env 1 at turn 2, env 2 fails all 3 turns
    plans = [["A"], ["x", "A"], ["x", "x", "x"]]
    for step in range(3):
        agent.act(obs)  # the policy's texts are replaced below: observe only needs the rewards
        actions = []
        for i, o in enumerate(obs):
            plan = plans[i][step] if step < len(plans[i]) else "x"
            actions.append(answers([o])[0] if plan == "A" else "x")
        obs, rewards, term, trunc, _ = env.step(actions)
        finished = agent.observe(rewards, term | trunc)
        if step == 0:
            assert finished == 1 and len(agent.buffer) == 1
    assert agent.episodes_done >= 3
    by_episode = {}
    for r in agent.buffer:
        by_episode.setdefault(r.episode, []).append(r)
    lengths = sorted(len(v) for v in by_episode.values())[:3]
    assert lengths == [1, 2, 3]
    two_turn = next(v for v in by_episode.values() if len(v) == 2)
    assert [r.reward for r in two_turn] == [0.0, 1.0] and [r.last for r in two_turn] == [False, True]
    signal, extra = agent._sequence_signal(two_turn)
    assert signal.tolist() == pytest.approx([0.5, 1.0])  # G_0 = r_0 + γ G_1 with γ = 0.5
    metrics = agent.learn()
    assert metrics["train/episodes"] >= 3 and np.isfinite(metrics["train/loss"])
    with pytest.raises(ValueError, match="episodes in progress are 3"):
        agent.act(["1+1="])  # one observation per sub-env whose episode is in progress


def test_multiturn_rejects_group_estimators():
    for estimator in ("grpo", "dr_grpo", "rloo"):
        with pytest.raises(ValueError, match="groups of identical prompts"):
            MultiTurnAgentConfig(pg=PGConfig(advantage_estimator=estimator))


def test_run_multiturn_rl_with_critic_reading_the_last_token(tmp_path):
    agent = make_agent(multiturn=True, critic=True, min_turns_to_learn=4,
                       pg=PGConfig(advantage_estimator="ppo", loss_agg="token_mean", lam=1.0))
    # failures cost -1, so the returns (critic targets) are never all zero
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=4, failure_reward=-1.0, **MT_KWARGS)
    head_before = agent.critic.critic.head.weight.detach().clone()
    config = LoopConfig(total_queries=24, eval_query_interval=12, num_eval_prompts=4, log_dir=str(tmp_path / "mt"),
                        progress=False)
    result = run_multiturn_rl(env, agent, config)
    assert result.queries == 24 and result.rounds == 6
    assert [e["misc/queries"] for e in result.evals] == [0, 12, 24]
    assert all(0.0 <= e["eval/accuracy"] <= e["eval/success_rate"] <= 1.0 for e in result.evals)
    lines = [json.loads(x) for x in (tmp_path / "mt" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    assert {"critic/value_loss", "train/return_mean", "actor/episode_success", "misc/learns"} <= keys
    assert not torch.equal(head_before, agent.critic.critic.head.weight)


def test_run_multiturn_rl_through_the_python_tool_wrapper(tmp_path):
    agent = make_agent(multiturn=True, min_turns_to_learn=2)
    kwargs = {**MT_KWARGS, "max_turns": 2}
    env = SyncVectorEnv([lambda: PythonToolWrapper(gym.make("oat/MathMultiTurn-v0", **kwargs), max_tool_calls=1)
                         for _ in range(2)], autoreset_mode=AutoresetMode.SAME_STEP)
    assert find_multiturn_task(env) is not None
    config = LoopConfig(total_queries=8, eval_query_interval=0, log_dir=str(tmp_path / "tool"), progress=False)
    result = run_multiturn_rl(env, agent, config)
    assert result.queries == 8 and result.evals == []


def test_evaluate_multiturn_spends_no_training_queries():
    agent = make_agent(multiturn=True)
    env = gym.make_vec("oat/MathMultiTurn-v0", num_envs=2, **MT_KWARGS)
    task = env.unwrapped.task
    out = evaluate_multiturn(task, agent, num_prompts=5)
    assert task.budget.used == 0
    assert 0.0 <= out["eval/accuracy"] <= out["eval/success_rate"] <= 1.0
    assert 1.0 <= out["eval/mean_turns"] <= 3.0


# ----------------------------------------------------------------------------------------------------
# Critic
# ----------------------------------------------------------------------------------------------------


def test_critic_reads_the_last_token_of_the_state_for_any_padding():
    tok = CharTokenizer()
    critic = Critic(build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0))
    torch.nn.init.normal_(critic.head.weight)
    critic.eval()
    a, b = [1, 10, 11, 12], [1, 10, 11, 13]  # same prefix, different last token
    with torch.no_grad():
        single = critic.state_values(torch.tensor([a, b]), torch.ones(2, 4, dtype=torch.long))
        assert single[0] != pytest.approx(float(single[1]))  # position 0 could not tell them apart
        left = critic.state_values(torch.tensor([[0, 0] + a, [0, 0] + b]), torch.tensor([[0, 0, 1, 1, 1, 1]] * 2))
        right = critic.state_values(torch.tensor([a + [0, 0], b + [0, 0]]), torch.tensor([[1, 1, 1, 1, 0, 0]] * 2))
    assert torch.allclose(single, left, atol=1e-5) and torch.allclose(single, right, atol=1e-5)


def test_critic_trainer_fits_returns_and_turn_gae_with_lambda_one_is_return_minus_value():
    tok = CharTokenizer()
    trainer = CriticTrainer(Critic(build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0)),
                            CriticConfig(learning_rate=1e-2))
    ids = torch.tensor([[1, 10, 11], [1, 12, 13]])
    attn = torch.ones_like(ids)
    targets = torch.tensor([1.0, -1.0])
    first = None
    for _ in range(30):
        loss, ms = trainer.loss(ids, attn, targets)
        loss.backward()
        trainer.step()
        first = ms["critic/value_loss"] if first is None else first
    assert ms["critic/value_loss"] < 0.1 * first
    agent = make_agent(multiturn=True, critic=True, turn_gamma=0.9, pg=PGConfig(advantage_estimator="ppo", lam=1.0))
    rows = [Rollout([1], [5], [0.0], "stop", 0.0, 0, 0, False), Rollout([1], [5], [0.0], "stop", 1.0, 0, 1, True)]
    values = torch.tensor([0.3, 0.5])
    adv, ret = agent._turn_gae(rows, values)
    assert adv.tolist() == pytest.approx([0.9 - 0.3, 1.0 - 0.5])  # G_k − V(s_k)
    assert ret.tolist() == pytest.approx([0.9, 1.0])
    with pytest.raises(TypeError, match="Critic"):
        CriticTrainer(torch.nn.Linear(2, 2))


class SleepyPolicy:
    """HFPolicy with vLLM-like sleep()/wake_up() that refuses to work while asleep."""

    def __init__(self, inner: HFPolicy):
        self.inner, self.tokenizer, self.sleeping, self.calls = inner, inner.tokenizer, False, []

    def sleep(self, level: int = 1) -> None:
        self.calls.append(f"sleep{level}")
        self.sleeping = True

    def wake_up(self) -> None:
        self.calls.append("wake")
        self.sleeping = False

    def generate(self, *args, **kwargs):
        assert not self.sleeping, "generate while asleep"
        self.calls.append("generate")
        return self.inner.generate(*args, **kwargs)

    def load_weights(self, weights) -> None:
        assert not self.sleeping, "load_weights while asleep"
        self.calls.append("load")
        self.inner.load_weights(weights)


def test_collocated_policy_sleeps_while_the_learner_trains(tmp_path):
    base = make_agent()
    with pytest.raises(TypeError, match="sleep"):
        GroupRLAgent(base.policy, base.learner, GroupRLAgentConfig(num_samples=4, collocate=True))
    agent = GroupRLAgent(SleepyPolicy(base.policy), base.learner,
                         GroupRLAgentConfig(num_samples=4, max_new_tokens=3, collocate=True))
    env = make_grouped_vec("oat/Arithmetic-v0", num_prompts=1, group_size=4, **ENV_KWARGS)
    config = LoopConfig(total_queries=8, eval_query_interval=4, num_eval_prompts=3, log_dir=str(tmp_path / "c"),
                        progress=False)
    run_online_rl(env, agent, config)
    calls = agent.policy.calls
    assert calls.count("generate") == 2 + 3  # two rounds, three evaluations
    assert calls.count("load") == 2
    assert agent.policy.sleeping  # asleep between rounds: the learner has the accelerator
    assert calls[:3] == ["wake", "generate", "sleep1"]
