"""Regression tests of issue 15: SEA's model rollouts label oat's *confident* pairs (not the selector's
least certain ones), and XPO duels a policy sample against the reference sample its bonus uses."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import oat_env  # noqa: F401
from oat_agents.agents.batching import collate_responses
from oat_agents.agents.sea import SEAAgent, SEAAgentConfig, training_prompt_sampler
from oat_agents.agents.xpo import XPOAgent, XPOAgentConfig, XPOPair
from oat_agents.algorithms.logprobs import sequence_logprobs
from oat_agents.exploration.explorer import Explorer, ExplorerConfig
from oat_agents.exploration.features import policy_hidden_state_features
from oat_agents.exploration.selectors import select_pairs
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.policies.base import Generations
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare"}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def parts(seed=0):
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=seed)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(model, LearnerConfig(zero_stage=0, learning_rate=1e-3, micro_batch_size=8, seed=seed),
                            ref_model=copy.deepcopy(model))
    return model, tok, policy, learner


# ------------------------------------------------------------------------------- 1. confident rollouts


def _agreeing_rewards(num_prompts, num_members=4):
    """Every member ranks candidate 0 best and 1 worst; candidate 2 is the uncertain one, so ``bai_ts``
    duels (0, 2) (its duel with 0 has the largest variance) while the confident pair is (0, 1)."""
    c = torch.tensor([0.5, 2.5, 1.0, 2.0])[:num_members]
    per_member = torch.stack([torch.tensor([3.0, 0.0, float(v)]) for v in c])  # (E, K)
    return per_member[:, None, :].expand(num_members, num_prompts, 3).clone()


def test_confident_pairs_are_the_sampled_members_max_margin_pair():
    feats = policy_hidden_state_features(parts()[0], CharTokenizer())
    explorer = Explorer(feats, ExplorerConfig(method="bai_ts", num_members=2, hidden_dim=8, seed=0))
    # prompt 0: members agree on best/worst, candidate 2 uncertain; prompt 1: members disagree entirely.
    rewards = torch.tensor([
        [[3.0, 0.0, 2.5], [2.0, 0.0, 1.0]],  # member 0
        [[3.0, 0.0, 0.5], [0.0, 2.0, 1.0]],  # member 1
    ])
    selector_pair = select_pairs("bai_ts", rewards, torch.Generator().manual_seed(0)).indices
    assert selector_pair[0].tolist() == [0, 2]  # the max-variance duel ...
    seen = set()
    for _ in range(20):
        pairs, labels, members = explorer.confident_pairs(rewards)
        assert pairs.shape == (2, 2) and labels.tolist() == [1.0, 1.0]
        assert pairs[0].tolist() == [0, 1]  # ... is not the confident one
        for b in range(2):
            r_e = rewards[members[b], b]
            i, j = pairs[b]
            # the sampled member's largest margin, ordered so that member prefers arm 0 (label 1)
            assert float(r_e[i] - r_e[j]) == pytest.approx(float(r_e.max() - r_e.min()))
            assert r_e[i] > r_e[j]
        seen.add(int(members[1]))
        assert pairs[1].tolist() == ([0, 1] if members[1] == 0 else [1, 0])
    assert seen == {0, 1}  # the member is drawn at random, per prompt


def _sea(rollout_pair, monkeypatch):
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    model, tok, policy, learner = parts()
    feats = policy_hidden_state_features(copy.deepcopy(model), tok)
    explorer = Explorer(feats, ExplorerConfig(method="bai_ts", num_members=4, hidden_dim=16, seed=0))
    kwargs = {} if rollout_pair is None else {"rollout_pair": rollout_pair}
    config = SEAAgentConfig(num_samples=3, max_new_tokens=3, seed=0, rollout_fraction=0.5, rollout_min_queries=0,
                            **kwargs)
    agent = SEAAgent(policy, learner, config, explorer, rollout_prompts=training_prompt_sampler(env))
    monkeypatch.setattr(explorer, "rewards", lambda prompts, candidates: _agreeing_rewards(len(prompts)))
    return env, agent


def test_sea_rollouts_label_the_confident_pair_by_default(monkeypatch):
    env, agent = _sea(None, monkeypatch)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    pairs, gens = agent._pending["pairs"], agent._pending["gens"]
    assert pairs.shape == (8, 2)  # 4 env prompts + 4 rollout prompts
    assert pairs[:4].tolist() == [[0, 2]] * 4  # the oracle still sees the exploration (bai_ts) duel
    assert pairs[4:].tolist() == [[0, 1]] * 4  # rollouts: best vs worst of the sampled member
    assert agent._pending["model_labels"].tolist() == [1.0] * 4
    _, labels, *_ = env.step((a, b))
    assert agent.observe(labels) == 8
    for i, p in enumerate(agent.buffer[4:], start=4):
        assert p.chosen_ids == list(gens.token_ids[i][0]) and p.rejected_ids == list(gens.token_ids[i][1])
    assert agent.config.rollout_pair == "confident"


def test_sea_rollout_pair_selector_keeps_the_former_behaviour(monkeypatch):
    env, agent = _sea("selector", monkeypatch)
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    assert agent._pending["pairs"][4:].tolist() == [[0, 2]] * 4
    assert agent._pending["model_labels"].tolist() == [1.0] * 4  # ensemble mean: 3 > mean(c)
    with pytest.raises(ValueError, match="rollout_pair"):
        SEAAgentConfig(rollout_pair="mean")


# ---------------------------------------------------------------------------- 2. XPO duels (y, ỹ_ref)


class RecognisableRef:
    """A reference policy whose every sample is ``"#ref<i>"`` (prompt ``i``); records its calls."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = []

    def generate(self, prompts, n=None, sampling=None):
        self.calls.append({"prompts": list(prompts), "n": n, "sampling": sampling})
        n = n or 1
        texts = [[f"#ref{i}"] * n for i in range(len(prompts))]
        ids = [[self.tokenizer.encode(t[0], add_special_tokens=False)] * n for t in texts]
        prompt_ids = [self.tokenizer.encode(p) for p in prompts]
        return Generations(texts=texts, token_ids=ids, logprobs=[[[0.0] * len(x[0])] * n for x in ids],
                           finish_reasons=[["length"] * n for _ in texts], prompt_token_ids=prompt_ids)


class RecordingPolicy:
    """Wraps a policy and keeps what it generated."""

    def __init__(self, inner):
        self.inner, self.tokenizer, self.calls = inner, inner.tokenizer, []

    def generate(self, prompts, n=None, sampling=None):
        gens = self.inner.generate(prompts, n=n, sampling=sampling)
        self.calls.append(gens)
        return gens

    def load_weights(self, weights):
        self.inner.load_weights(weights)


def test_xpo_duels_a_policy_sample_against_the_reference_sample_of_the_bonus():
    _, tok, inner, learner = parts()
    policy, ref = RecordingPolicy(inner), RecognisableRef(tok)
    alpha = 0.5
    agent = XPOAgent(policy, learner, XPOAgentConfig(max_new_tokens=3, xpo_alpha=alpha), ref_policy=ref)
    env = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    obs, _ = env.reset(seed=0)
    a, b = agent.act(obs)
    pol_gens = policy.calls[-1]
    ref_texts = [f"#ref{i}" for i in range(4)]
    # what goes to env.step: per prompt one policy sample (a) and the reference's sample (b)
    assert a == [t[0] for t in pol_gens.texts] and b == ref_texts
    assert len(ref.calls) == 1 and ref.calls[0]["prompts"] == list(obs)
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    env.step((a, b))
    assert agent.observe(labels) == 4
    ref_ids = [tok.encode(t, add_special_tokens=False) for t in ref_texts]
    for i, p in enumerate(agent.buffer):
        assert isinstance(p, XPOPair) and p.ref_sample_ids == ref_ids[i]
        y = list(pol_gens.token_ids[i][0])
        # the label trains DPO on the dueled (y, ỹ) pair
        assert (p.chosen_ids, p.rejected_ids) == ((y, ref_ids[i]) if labels[i] == 1 else (ref_ids[i], y))
    # the bonus is α · mean log π(ỹ) over exactly the dueled reference samples
    loss, metrics = agent._pair_loss(agent.buffer)
    ids, att, mask = collate_responses([p.prompt_ids for p in agent.buffer], ref_ids, agent.pad_token_id,
                                       agent.config.max_seq_length)
    with torch.no_grad():
        logps, _, _ = sequence_logprobs(learner.engine, ids, att, mask)
    assert metrics["train/xpo_term"] == pytest.approx(alpha * float(logps.mean()), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(metrics["train/dpo_term"] + metrics["train/xpo_term"], rel=1e-5)
