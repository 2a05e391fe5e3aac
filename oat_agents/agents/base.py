"""What every agent shares (DESIGN.md §4): the sampling options, sampling and greedy evaluation through the policy,
weight sync learner → policy, pad ids and the state of the common parts. Each agent adds only its own
``act``/``observe``/``learn`` (and the state of its buffer).

* :class:`AgentConfig` — one block of sampling and training-pass options that every agent config extends
  (:class:`~oat_agents.agents.dap.DAPAgentConfig`, :class:`~oat_agents.agents.group_rl.GroupRLAgentConfig`, ...),
  so ``--agent.temperature`` and ``--rl.temperature`` mean the same thing.
* :class:`Agent` — policy + learner with :meth:`~Agent.sampling_params` (round ``t`` samples with seed
  ``seed + t``), :meth:`~Agent.generate` (wakes a collocated policy for the call and puts it back to sleep),
  :meth:`~Agent.sync_weights`, :meth:`~Agent.load_policy_weights`, :meth:`~Agent.generate_greedy` and the
  ``round``/RNG part of :meth:`~Agent.state_dict`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oat_agents.policies.base import Generations, SamplingParams


@dataclass
class AgentConfig:
    """Sampling and training-pass options every agent has (each agent's config extends it)."""

    num_samples: int = 2
    """Responses sampled per prompt (the duel's candidates, or the group of group RL)."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold."""
    max_new_tokens: int = 64
    """Longest response (one turn), in tokens (training and evaluation)."""
    stop: tuple[str, ...] = ()
    """Stop strings ending a response early."""
    max_seq_length: int = 1024
    """Longest prompt + response trained on; longer rows lose response tokens from the end."""
    learn_epochs: int = 1
    """Passes over the buffer per ``learn()``."""
    seed: int = 0
    """Base seed of sampling (round ``t`` samples with seed ``seed + t``) and of the shuffling of the buffer."""

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_new_tokens", "max_seq_length", "learn_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        self.stop = tuple(self.stop)  # a list from the command line or JSON


class Agent:
    """Policy (actor) + learner, the parts every agent shares.

    Args:
        policy: generates responses (``HFPolicy`` or ``VLLMPolicy``); its tokenizer gives the pad id.
        learner: a :class:`~oat_agents.learners.LearnerEngine` holding the trainable model.
        config: the agent's config (an :class:`AgentConfig`).
        collocate: the policy shares the accelerator with the learner and sleeps between generations
            (``VLLMPolicy(enable_sleep_mode=True)``: level 1 keeps the weights on CPU and frees the KV cache);
            it is woken for every generation and weight load.
    """

    overlaps_act_and_learn: bool = True
    """Whether :meth:`act` may run in an actor thread while :meth:`learn` runs (``LoopConfig.asynchronous``):
    ``act`` touches only the policy and its own pending round, never the learner, the buffer or the metrics
    ``learn`` returns. An agent that breaks this sets it False and asynchronous loops refuse it."""

    def __init__(self, policy: Any, learner: Any, config: AgentConfig, collocate: bool = False):
        if collocate and not (callable(getattr(policy, "sleep", None)) and callable(getattr(policy, "wake_up", None))):
            raise TypeError(f"collocate=True needs a policy with sleep()/wake_up(), got {type(policy).__name__}")
        self.policy = policy
        self.learner = learner
        self.config = config
        self.collocate = collocate
        self.round = 0
        """Rounds observed so far (the sampling seed of the next one is ``seed + round``)."""
        self._rng = np.random.default_rng(config.seed)  # shuffling of the buffer, and the agents' own draws
        tokenizer = policy.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    # -- acting ----------------------------------------------------------------------------
    def sampling_params(self, greedy: bool = False) -> SamplingParams:
        """This round's sampling (seed ``seed + round``), or greedy decoding (no seed needed)."""
        c = self.config
        return SamplingParams(
            temperature=0.0 if greedy else c.temperature,
            top_p=1.0 if greedy else c.top_p,
            max_new_tokens=c.max_new_tokens,
            stop=c.stop,
            seed=None if greedy else c.seed + self.round,
        )

    def generate(self, prompts: list[Any], n: int, sampling: SamplingParams) -> Generations:
        """``policy.generate``, waking a collocated policy first and putting it back to sleep afterwards."""
        if self.collocate:
            self.policy.wake_up()
        gens = self.policy.generate(prompts, n=n, sampling=sampling)
        if self.collocate:
            self.policy.sleep(level=1)
        return gens

    # -- weights ---------------------------------------------------------------------------
    def sync_weights(self) -> float:
        """Push the learner's weights into the policy; returns the seconds it took."""
        start = time.perf_counter()
        self.load_policy_weights(self.learner.state_dict_for_sync())
        return time.perf_counter() - start

    def load_policy_weights(self, weights: Any) -> None:
        """Load weights into the policy (e.g. restore a lagging actor after an evaluation); a collocated policy is
        woken for the reload (level-1 sleep keeps the weights on CPU) and put back to sleep."""
        if self.collocate:
            self.policy.wake_up()
        self.policy.load_weights(weights)
        if self.collocate:
            self.policy.sleep(level=1)

    # -- evaluation ------------------------------------------------------------------------
    def generate_greedy(self, prompts: Sequence[Any]) -> list[str]:
        """Greedy responses of the policy (as currently synced)."""
        gens = self.generate(list(prompts), 1, self.sampling_params(greedy=True))
        return [t[0] for t in gens.texts]

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The common state: the round counter and the RNG (each agent adds its buffer)."""
        return {"round": self.round, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (each agent restores its buffer first, then calls this)."""
        self.round = int(state["round"])
        self._rng.bit_generator.state = state["rng"]
