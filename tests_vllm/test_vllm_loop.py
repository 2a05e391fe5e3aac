"""A few online rounds of the full DAP loop with the vLLM backend as the actor."""

import copy
import json

import gymnasium as gym
import pytest
import torch
from transformers import AutoModelForCausalLM

import oat_env  # noqa: F401  (registers the oat/* environments)
from oat_agents.agents import DAPAgent, DAPAgentConfig
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.loops.bookkeeping import LoopConfig
from oat_agents.loops.duel import run_online
from oat_agents.policies.base import SamplingParams


def test_three_online_rounds_with_vllm_policy(vllm_policy, model_dir, tmp_path, restore_weights, monkeypatch):
    # vLLM's in-process engine already created the (world size 1, gloo) process group; init_distributed
    # reuses it, but DeepSpeed also wants the launcher variables, which nothing set in this process.
    for name, value in (("LOCAL_RANK", "0"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        monkeypatch.setenv(name, value)
    init_distributed()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    learner = LearnerEngine(
        model,
        LearnerConfig(zero_stage=0, learning_rate=1e-2, micro_batch_size=4, seed=0),
        ref_model=copy.deepcopy(model),
    )
    agent = DAPAgent(vllm_policy, learner, DAPAgentConfig(max_new_tokens=4, seed=0))
    envs = gym.make_vec("oat/Arithmetic-Duel-v0", num_envs=4, template="bare")
    version = vllm_policy.weights_version
    greedy = SamplingParams(temperature=0, max_new_tokens=8)
    prompts = ["1+2=", "7*3=", "hello"]
    before = vllm_policy.generate(prompts, sampling=greedy).token_ids
    config = LoopConfig(
        total_queries=12,
        sync_params_every=1,
        eval_query_interval=4,
        num_eval_prompts=4,
        log_dir=str(tmp_path / "run"),
        progress=False,
        tensorboard=False,
    )
    result = run_online(envs, agent, config)
    assert result.rounds == 3 and result.queries == 12
    assert [e["misc/queries"] for e in result.evals] == [0, 4, 8, 12]
    assert all(0.0 <= e["eval/win_rate"] <= 1.0 for e in result.evals)
    assert vllm_policy.weights_version == version + 3  # one sync per round
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train/loss" in x]
    assert len(train) == 3 and all(x["train/pairs"] == 4 for x in train)
    # The actor now holds the learner's weights: same greedy tokens as the learner's HF model.
    after = vllm_policy.generate(prompts, sampling=greedy)
    assert after.token_ids != before
    hf_model = learner.hf_model().eval()
    for i, ids in enumerate(after.prompt_token_ids):
        seq = torch.tensor([ids])
        with torch.no_grad():
            out = hf_model.generate(
                seq,
                attention_mask=torch.ones_like(seq),
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=2,
                pad_token_id=0,
            )
        expected = out[0, len(ids) :].tolist()
        expected = expected[: expected.index(2) + 1] if 2 in expected else expected
        assert after.token_ids[i][0] == expected
    with pytest.raises(RuntimeError, match="preceding act"):
        agent.observe([1.0])
