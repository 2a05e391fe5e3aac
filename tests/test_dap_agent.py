"""DAPAgent + online loop on a tiny model: acting, learning, syncing, evaluation, logging, resume."""

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import oat_env  # noqa: F401
from oat_agents.agents import DAPAgent, DAPAgentConfig
from oat_agents.agents.batching import collate_responses
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.duel import run_online
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

ENV_KWARGS = {"min_digits": 1, "max_digits": 1, "operators": "+", "template": "bare"}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def make_agent(seed: int = 0, lr: float = 1e-3, **agent_kwargs) -> DAPAgent:
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=seed)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(
        model, LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=4, seed=seed),
        ref_model=copy.deepcopy(model),
    )
    config = DAPAgentConfig(max_new_tokens=4, seed=seed, **agent_kwargs)
    return DAPAgent(policy, learner, config)


def weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_collate_right_pads_and_masks_responses():
    ids, attn, resp = collate_responses([[1, 2], [1]], [[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[1, 2, 5, 6, 7], [1, 8, 0, 0, 0]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert resp.tolist() == [[False, False, True, True, True], [False, True, False, False, False]]
    ids, _, resp = collate_responses([[1, 2]], [[5, 6, 7]], pad_token_id=0, max_length=3)
    assert ids.tolist() == [[1, 2, 5]] and resp.tolist() == [[False, False, True]]
    with pytest.raises(ValueError, match="does not fit"):
        collate_responses([[1, 2, 3]], [[4]], 0, max_length=3)
    with pytest.raises(ValueError, match="empty prompt"):
        collate_responses([[]], [[4]], 0)


def test_act_observe_learn_sync_round():
    agent = make_agent()
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    obs, _ = envs.reset(seed=0)
    a, b = agent.act(obs)
    assert len(a) == len(b) == 4 and all(isinstance(x, str) for x in a + b)
    with pytest.raises(ValueError, match="got 1 labels for 4 duels"):
        agent.observe([1.0])  # a wrong count is rejected and the pending duels are kept
    _, labels, *_ = envs.step((a, b))
    assert agent.observe(labels) == 4 and len(agent.buffer) == 4
    for pair, label, ra, rb in zip(agent.buffer, labels, a, b):
        chosen_text = agent.policy.tokenizer.decode(pair.chosen_ids, skip_special_tokens=True)
        assert chosen_text.startswith(ra if label == 1.0 else rb)
    before = weights(agent.learner.module)
    metrics = agent.learn()
    assert np.isfinite(metrics["train/loss"]) and metrics["train/pairs"] == 4
    assert "train/grad_norm" in metrics and metrics["train/step_s"] > 0
    assert agent.buffer == []  # online: trained on the freshest pairs only
    after = weights(agent.learner.module)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    policy_before = weights(agent.policy.model)
    agent.sync_weights()
    policy_after = weights(agent.policy.model)
    assert all(torch.equal(policy_after[k], after[k]) for k in after)
    assert any(not torch.equal(policy_before[k], policy_after[k]) for k in policy_before)


def test_observe_errors():
    agent = make_agent()
    with pytest.raises(RuntimeError, match="preceding act"):
        agent.observe([1.0])
    agent.act(["1+1="])
    with pytest.raises(ValueError, match="labels for 1 duels"):
        agent.observe([1.0, 0.0])
    with pytest.raises(ValueError, match="num_samples"):
        DAPAgentConfig(num_samples=1)


def test_identical_responses_are_masked():
    agent = make_agent(lr=1e-2)
    from oat_agents.agents.dap import PreferencePair

    agent.buffer = [PreferencePair([1, 5], [6, 2], [6, 2])] * 4
    metrics = agent.learn()
    assert metrics["train/tie_fraction"] == 1.0 and metrics["train/loss"] == 0.0


def _run(tmp_path, name, total, resume=False, sync=1, **kw):
    agent = make_agent()
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, **ENV_KWARGS)
    config = LoopConfig(
        total_queries=total, sync_params_every=sync, eval_query_interval=4, num_eval_prompts=6,
        log_dir=str(tmp_path / name), checkpoint_dir=str(tmp_path / "ckpt" / name), save_every=1,
        resume=resume, progress=False, **kw,
    )
    return agent, envs, run_online(envs, agent, config)


def test_loop_logs_evaluates_and_checkpoints(tmp_path):
    agent, envs, result = _run(tmp_path, "run", total=12)
    assert result.queries == 12 and result.rounds == 3
    assert [e["misc/queries"] for e in result.evals] == [0, 4, 8, 12]
    assert all(0.0 <= e["eval/win_rate"] <= 1.0 and "eval/anytime_regret" in e for e in result.evals)
    assert result.cumulative_regret is not None and result.cumulative_regret > 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "actor/generate_s", "oracle/s", "misc/weight_sync_s", "regret/cumulative"} <= set().union(*lines)
    dumps = sorted((tmp_path / "run" / "eval").glob("queries_*.json"))
    assert len(dumps) == 4
    sample = json.loads(dumps[-1].read_text())["samples"][0]
    assert {"prompt", "response", "prob_wins"} <= set(sample)
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert (tmp_path / "ckpt" / "run" / "latest").exists()


def test_resuming_a_checkpoint_without_loop_state_is_a_clear_error(tmp_path):
    from oat_agents.learners import save_checkpoint

    agent = make_agent()
    # As a program other than run_online (or an older version) would leave it: no per-rank loop state.
    save_checkpoint(agent.learner, tmp_path / "ckpt" / "foreign", extra_state={"env": {}, "agent": {}}, tag="t")
    with pytest.raises(ValueError, match="no per-rank loop state"):
        _run(tmp_path, "foreign", total=8, resume=True)


def test_offline_mode_never_changes_the_actor(tmp_path):
    agent = make_agent()
    initial = weights(agent.policy.model)
    _, _, result = _run(tmp_path, "offline", total=12, sync=0)
    assert len(result.evals) == 4
    # a fresh agent: the loop restored the actor's (initial) weights after every evaluation
    agent2, _, _ = _run(tmp_path, "offline2", total=8, sync=0)
    final = weights(agent2.policy.model)
    assert all(torch.equal(initial[k], final[k]) for k in initial)
    assert any(not torch.equal(initial[k], v) for k, v in weights(agent2.learner.module).items())


def test_resume_matches_uninterrupted_run(tmp_path):
    _, _, full = _run(tmp_path, "full", total=16)
    _run(tmp_path, "part", total=8)  # "interrupted" after 2 rounds (checkpoint per round)
    import shutil

    shutil.copytree(tmp_path / "ckpt" / "part", tmp_path / "ckpt" / "resumed")
    _, _, resumed = _run(tmp_path, "resumed", total=16, resume=True)
    assert resumed.queries == full.queries == 16 and resumed.rounds == full.rounds
    assert [e["misc/queries"] for e in resumed.evals] == [e["misc/queries"] for e in full.evals]
    for a, b in zip(full.evals, resumed.evals):
        assert a["eval/win_rate"] == pytest.approx(b["eval/win_rate"], abs=1e-9)
    assert resumed.cumulative_regret == pytest.approx(full.cumulative_regret, abs=1e-9)
