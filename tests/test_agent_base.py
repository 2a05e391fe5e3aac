"""The agent base (oat_agents.agents.base): one sampling block for every agent config, and the sampling, greedy
evaluation, weight sync and state that DAP and RL agents share."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from oat_agents.agents.apl import APLAgentConfig
from oat_agents.agents.base import Agent, AgentConfig
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.agents.multiturn import MultiTurnAgent, MultiTurnAgentConfig
from oat_agents.agents.sea import SEAAgentConfig
from oat_agents.agents.xpo import XPOAgentConfig
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

SAMPLING = {f.name for f in dataclasses.fields(AgentConfig)}


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


@pytest.mark.parametrize("cls", [DAPAgentConfig, SEAAgentConfig, APLAgentConfig, XPOAgentConfig, GroupRLAgentConfig,
                                 MultiTurnAgentConfig])
def test_every_agent_config_has_the_one_sampling_block(cls: type) -> None:
    assert issubclass(cls, AgentConfig) and SAMPLING <= {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        cls(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        cls(top_p=0.0)
    assert cls(stop=["\n"]).stop == ("\n",)


class SleepyPolicy(HFPolicy):
    """An HF policy that records the sleep/wake calls a collocated vLLM engine would get."""

    calls: list[str]

    def sleep(self, level: int = 1) -> None:
        self.calls.append("sleep")

    def wake_up(self) -> None:
        self.calls.append("wake")


def parts(policy_cls: type = HFPolicy) -> tuple[HFPolicy, LearnerEngine]:
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=1, heads=2, seed=0)
    policy = policy_cls(copy.deepcopy(model), tok, device="cpu")
    return policy, LearnerEngine(model, LearnerConfig(zero_stage=0, micro_batch_size=4))


def test_the_base_samples_per_round_and_decodes_greedily() -> None:
    policy, learner = parts()
    agent = Agent(policy, learner, AgentConfig(temperature=0.7, top_p=0.9, max_new_tokens=3, seed=5))
    assert agent.pad_token_id == policy.tokenizer.pad_token_id
    sampling = agent.sampling_params()
    assert (sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.seed) == (0.7, 0.9, 3, 5)
    agent.round = 2
    assert agent.sampling_params().seed == 7
    greedy = agent.sampling_params(greedy=True)
    assert (greedy.temperature, greedy.top_p, greedy.seed) == (0.0, 1.0, None)
    assert agent.generate_greedy(["1+2="]) == agent.generate_greedy(["1+2="])  # greedy: no seed needed
    state = agent.state_dict()
    other = Agent(*parts(), AgentConfig(seed=9))
    other.load_state_dict(state)
    assert other.round == 2 and other._rng.bit_generator.state == agent._rng.bit_generator.state


def test_a_collocated_policy_is_woken_for_every_generation_and_weight_load() -> None:
    policy, learner = parts(SleepyPolicy)
    policy.calls = []
    agent = Agent(policy, learner, AgentConfig(max_new_tokens=2), collocate=True)
    agent.generate_greedy(["1+1="])
    assert agent.sync_weights() >= 0
    assert policy.calls == ["wake", "sleep", "wake", "sleep"]
    with pytest.raises(TypeError, match="sleep"):
        Agent(*parts(), AgentConfig(), collocate=True)


def test_dap_and_rl_agents_are_agents_with_their_buffer_in_the_state() -> None:
    dap = DAPAgent(*parts(), DAPAgentConfig(max_new_tokens=2))
    group = GroupRLAgent(*parts(), GroupRLAgentConfig(num_samples=2, max_new_tokens=2))
    turns = MultiTurnAgent(*parts(), MultiTurnAgentConfig(max_new_tokens=2))
    for agent in (dap, group, turns):
        assert isinstance(agent, Agent)
        assert {"round", "rng", "buffer"} <= set(agent.state_dict())
