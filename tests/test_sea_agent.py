"""SEA / APL / XPO agents on a tiny model: acting shapes, seeded determinism, model rollouts that cost no
oracle queries, ERM updates from the oracle, checkpoint round trips, and (slow) SEA learning."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import oat_env  # noqa: F401
from oat_agents.agents.apl import APLAgent, APLAgentConfig
from oat_agents.agents.dap import DAPAgentConfig
from oat_agents.agents.sea import SEAAgent, SEAAgentConfig, training_prompt_sampler
from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig, XPOPair
from oat_agents.exploration.explorer import Explorer, ExplorerConfig
from oat_agents.exploration.features import policy_hidden_state_features
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.duel import run_online
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare"}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def parts(seed=0, hidden=32):
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=hidden, layers=2, heads=2, seed=seed)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(model, LearnerConfig(zero_stage=0, learning_rate=1e-3, micro_batch_size=8, seed=seed),
                            ref_model=copy.deepcopy(model))
    return model, tok, policy, learner


def make_sea(env, seed=0, method="ee_ts", rollout_fraction=0.0, min_queries=0, num_samples=3):
    model, tok, policy, learner = parts(seed)
    feats = policy_hidden_state_features(copy.deepcopy(model), tok)
    explorer = Explorer(feats, ExplorerConfig(method=method, num_members=4, hidden_dim=16, seed=seed))
    config = SEAAgentConfig(num_samples=num_samples, max_new_tokens=3, seed=seed, rollout_fraction=rollout_fraction,
                            rollout_min_queries=min_queries)
    return SEAAgent(policy, learner, config, explorer, rollout_prompts=training_prompt_sampler(env))


def test_sea_round_trains_erm_on_oracle_labels():
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    agent = make_sea(env)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    assert len(a) == len(b) == 4 and agent._pending["pairs"].shape == (4, 2)
    assert (agent._pending["pairs"][:, 0] != agent._pending["pairs"][:, 1]).all()
    _, labels, *_ = env.step((a, b))
    assert agent.observe(labels) == 4 and len(agent.buffer) == 4
    assert agent.explorer.erm.num_queries == 4
    metrics = agent.learn()
    assert np.isfinite(metrics["train/loss"])
    assert metrics["explorer/model_data_ratio"] == 0.0 and "train/rm/loss_bt" in metrics
    assert "explorer/ts_agreement" in metrics
    with pytest.raises(ValueError, match="got 3 labels for 4 duels"):
        agent.act(obs)
        agent.observe([1.0, 0.0, 1.0])


def test_model_rollout_pairs_are_not_oracle_queries():
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    agent = make_sea(env, method="bai_ts", rollout_fraction=0.5, min_queries=4)
    obs, _ = env.reset(seed=0)
    for round_ in range(3):
        a, b = agent.act(obs)
        assert len(a) == 4  # the env only ever sees its own prompts
        obs, labels, _, _, _ = env.step((a, b))
        added = agent.observe(labels)
        metrics = agent.learn()
        expected_model = 0 if round_ == 0 else 4  # rollouts start after rollout_min_queries labels
        assert added == 4 + expected_model
        assert metrics["explorer/model_pairs"] == expected_model
        assert metrics["explorer/model_data_ratio"] == pytest.approx(expected_model / (4 + expected_model))
    assert env.unwrapped.num_queries == 12  # 3 rounds × 4 oracle queries; rollouts cost none
    assert agent.explorer.erm.num_queries == 12  # the ERM never trains on its own labels
    assert agent.model_pairs_total == 8


def test_rollout_sampler_draws_training_prompts_without_touching_the_env():
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=2, min_digits=2, max_digits=2, template="bare")
    env.reset(seed=0)
    before = env.unwrapped.state_dict()
    sample = training_prompt_sampler(env)
    prompts = sample(50, np.random.default_rng(0))
    assert len(prompts) == 50 and all(p.endswith("=") for p in prompts)
    held_out = set(env.unwrapped.eval_prompts(100))
    assert not held_out & set(prompts)
    assert env.unwrapped.state_dict() == before and env.unwrapped.num_queries == 0
    assert sample(5, np.random.default_rng(1)) == sample(5, np.random.default_rng(1))


def test_sea_runs_are_deterministic_given_seeds(tmp_path):
    results = []
    for i in range(2):
        env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
        agent = make_sea(env, seed=1, rollout_fraction=0.5, min_queries=4)
        loop = LoopConfig(total_queries=12, eval_query_interval=0, log_dir=str(tmp_path / str(i)), seed=1,
                          progress=False, tensorboard=False)
        result = run_online(env, agent, loop)
        results.append((result.cumulative_regret, agent.explorer.erm.rewards(torch.ones(2, 32)).tolist()))
    assert results[0] == results[1]


def test_sea_checkpoint_state_roundtrip():
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    agent = make_sea(env, rollout_fraction=0.5)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    _, labels, *_ = env.step((a, b))
    agent.observe(labels)
    state = agent.state_dict()
    other = make_sea(env, rollout_fraction=0.5)
    other.load_state_dict(state)
    assert other.model_pairs_total == agent.model_pairs_total == 4
    probe = torch.randn(3, 32)
    assert torch.equal(other.explorer.erm.rewards(probe), agent.explorer.erm.rewards(probe))


def test_sea_config_and_constructor_validation():
    with pytest.raises(ValueError, match="rollout_fraction"):
        SEAAgentConfig(rollout_fraction=1.0)
    with pytest.raises(ValueError, match="eval_best_of_n"):
        SEAAgentConfig(eval_best_of_n=1)
    _, _, policy, learner = parts()
    with pytest.raises(ValueError, match="needs an explorer"):
        SEAAgent(policy, learner, SEAAgentConfig())
    with pytest.raises(TypeError, match="SEAAgentConfig"):
        SEAAgent(policy, learner, DAPAgentConfig(), explorer=object())


def test_best_of_n_evaluation_uses_the_erm():
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    agent = make_sea(env)
    agent.config.eval_best_of_n = 3
    out = agent.generate_greedy(["1+2=", "3+4="])
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


def test_apl_picks_the_largest_implicit_reward_margin():
    _, _, policy, learner = parts()
    agent = APLAgent(policy, learner, DAPAgentConfig(num_samples=4, max_new_tokens=3))
    # Move the learner away from the reference so margins are non-zero.
    with torch.no_grad():
        for p in learner.module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    gens, pairs = agent._pending["gens"], agent._pending["pairs"]
    pol, ref = agent.candidate_logps(gens.prompt_token_ids, gens.token_ids)
    r = agent.config.dap.beta * (pol - ref)
    for i, (x, y) in enumerate(pairs):
        best = max(abs(float(r[i, u] - r[i, v])) for u in range(4) for v in range(u + 1, 4))
        assert abs(float(r[i, x] - r[i, y])) == pytest.approx(best)
    _, labels, *_ = env.step((a, b))
    agent.observe(labels)
    metrics = agent.learn()
    assert metrics["explorer/apl_margin"] > 0 and np.isfinite(metrics["explorer/apl_entropy"])


def test_apl_queries_the_highest_entropy_prompts_of_the_pool(tmp_path):
    from oat_agents.exploration.prompt_entropy import predictive_entropy

    _, _, policy, learner = parts()
    config = APLAgentConfig(num_samples=3, max_new_tokens=3, prompt_pool_size=10, seed=0)
    agent = APLAgent(policy, learner, config)
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    env.reset(seed=0)
    pool = env.unwrapped.prompt_pool(10)
    chosen = agent.choose_prompts(pool, 4)
    # Recompute the entropies from the same seeded samples: the chosen ones are the 4 largest.
    gens = agent.policy.generate(list(pool), n=3, sampling=agent.sampling_params())
    entropy = predictive_entropy(torch.tensor([[sum(lp) for lp in per] for per in gens.logprobs]))
    assert sorted(chosen.tolist()) == sorted(torch.topk(entropy, 4).indices.tolist())
    obs = env.unwrapped.serve_prompts(chosen)
    reused = agent._chosen[1]
    agent.act(obs)
    assert agent._pending["gens"] is reused  # act() reuses the selection's samples
    # Through the loop: the env answers only the chosen prompts, and the budget is exact.
    fresh = APLAgent(*parts()[2:], config)
    env2 = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    rounds, choose, act = [], fresh.choose_prompts, fresh.act

    def recording_choose(pool, n):
        rounds.append({"pool": list(pool), "chosen": choose(pool, n).tolist()})
        return np.asarray(rounds[-1]["chosen"])

    def recording_act(obs):
        rounds[-1]["served"] = list(obs)
        return act(obs)

    fresh.choose_prompts, fresh.act = recording_choose, recording_act
    result = run_online(env2, fresh, LoopConfig(total_queries=12, eval_query_interval=0, log_dir=str(tmp_path),
                                                progress=False, tensorboard=False))
    assert result.queries == 12 and result.rounds == 3 and len(rounds) == 3
    for r in rounds:  # every round: a pool of 10, and the duels are on the chosen prompts of that pool
        assert len(r["pool"]) == 10 and r["served"] == [r["pool"][i] for i in r["chosen"]]
    with pytest.raises(ValueError, match="prompt_pool_size"):
        APLAgentConfig(prompt_pool_size=-1)
    with pytest.raises(ValueError, match="from a pool of 2"):
        fresh.choose_prompts(["1+1=", "2+2="], 3)


def test_xpo_adds_the_reference_sample_term():
    model, tok, policy, learner = parts()
    ref_policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    agent = XPOAgent(policy, learner, XPOAgentConfig(max_new_tokens=3, xpo_alpha=0.5), ref_policy=ref_policy)
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    _, labels, *_ = env.step((a, b))
    agent.observe(labels)
    assert all(isinstance(p, XPOPair) and p.ref_sample_ids for p in agent.buffer)
    # XPO duels (policy sample, reference sample): the bonus's ỹ is one side of every labelled pair
    assert all(p.ref_sample_ids in (p.chosen_ids, p.rejected_ids) for p in agent.buffer)
    state = agent.state_dict()
    loss_with, metrics = agent._pair_loss(agent.buffer)
    valid = [p for p in agent.buffer if not p.is_tie]
    if valid:  # α·mean log π(ỹ) is negative, so the total is below the DPO term
        assert metrics["train/xpo_term"] < 0
        assert float(loss_with.detach()) == pytest.approx(metrics["train/dpo_term"] + metrics["train/xpo_term"], rel=1e-5)
    other = XPOAgent(*parts()[2:], XPOAgentConfig(max_new_tokens=3), ref_policy=ref_policy)
    other.load_state_dict(state)
    assert [p.ref_sample_ids for p in other.buffer] == [p.ref_sample_ids for p in agent.buffer]
    with pytest.raises(ValueError, match="ref_policy"):
        XPOAgent(policy, learner, XPOAgentConfig())
