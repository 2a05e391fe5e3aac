r"""The group RL agent for single-turn verifiable rewards (GRPO, Dr.GRPO, RLOO, REINFORCE): sample a group of
responses per prompt, get their rewards, learn with a policy-gradient objective.

The env serves ``B·G`` observations per round in contiguous groups of ``G`` identical prompts
(``G = num_samples``; :func:`oat_agents.loops.group_rl.make_grouped_vec` builds such an env), so the verifier
grades every group member in ONE batched ``step``:

1. ``act(obs)``: for each of the ``B`` distinct prompts the policy samples ``G`` responses (token ids,
   per-token sampler log-probs ``log μ``, finish reasons); the ``B·G`` texts are the actions.
2. ``observe(rewards)`` stores the rollouts.
3. ``learn()`` — every round — estimates advantages over the groups
   (:func:`~oat_agents.algorithms.pg.compute_advantages`) and minimises
   :func:`~oat_agents.algorithms.pg.pg_loss` on the learner (:class:`~oat_agents.agents.policy_gradient.PGAgent`).
4. ``sync_weights()`` copies the learner weights into the policy (the loop decides how often).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from oat_agents.agents.policy_gradient import PGAgent, PGAgentConfig, Rollout
from oat_agents.algorithms.pg import GROUP_ESTIMATORS, PGConfig


def _dr_grpo() -> PGConfig:
    # Dr.GRPO (arXiv 2503.20783): group-mean baseline, no std division, constant normaliser.
    return PGConfig(advantage_estimator="dr_grpo", loss_agg="constant")


@dataclass
class GroupRLAgentConfig(PGAgentConfig):
    """Options of :class:`GroupRLAgent` (:class:`~oat_agents.agents.policy_gradient.PGAgentConfig`)."""

    num_samples: int = 8
    """G: responses per prompt (the group size of grpo/dr_grpo/rloo)."""
    pg: PGConfig = field(default_factory=_dr_grpo)
    """The policy-gradient objective (estimator, clipping, TIS, KL, aggregation, truncation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pg.advantage_estimator == "ppo":
            raise ValueError("single-turn token-level ppo is not supported; use a group estimator "
                             "(grpo/dr_grpo/rloo), or MultiTurnAgent for turn-level ppo")
        if self.pg.advantage_estimator in GROUP_ESTIMATORS and self.num_samples < 2:
            raise ValueError(f"{self.pg.advantage_estimator} needs num_samples >= 2 (a group to compare within)")
        if self.pg.group_size is not None and self.pg.group_size != self.num_samples:
            raise ValueError(f"pg.group_size={self.pg.group_size} disagrees with num_samples={self.num_samples}")


class GroupRLAgent(PGAgent):
    """Policy (actor) + learner for group-based RL on a single-turn verifiable-reward env (module docstring).

    Args:
        policy: generates responses (``HFPolicy`` or ``VLLMPolicy``); must report per-token log-probs.
        learner: a :class:`~oat_agents.learners.LearnerEngine` (frozen reference needed for KL terms).
        config: :class:`GroupRLAgentConfig`.
    """

    config: GroupRLAgentConfig

    def __init__(self, policy: Any, learner: Any, config: GroupRLAgentConfig | None = None):
        super().__init__(policy, learner, config or GroupRLAgentConfig())

    def act(self, observations: Sequence[str]) -> list[str]:
        """``B·G`` observations in contiguous groups of ``G = num_samples`` identical prompts → ``B·G`` sampled
        responses in the same order (one generate call, ``n = G``)."""
        g = self.config.num_samples
        obs = list(observations)
        if not obs:
            raise ValueError("act() needs at least one observation")
        if len(obs) % g != 0:
            raise ValueError(f"{len(obs)} observations do not split into groups of num_samples={g}")
        prompts = obs[::g]
        for i, prompt in enumerate(prompts):
            if any(o != prompt for o in obs[i * g : (i + 1) * g]):
                raise ValueError(
                    f"observations {i * g}..{(i + 1) * g - 1} are not one group of identical prompts: serve each "
                    f"prompt num_samples={g} times in a row (oat_agents.loops.group_rl.make_grouped_vec)"
                )
        gens = self.generate(prompts, g, self.sampling_params())
        self._check_generations(gens, len(prompts), g)
        self._pending = {"gens": gens}
        return gens.flat_texts()

    def observe(self, rewards: Sequence[float] | np.ndarray) -> int:
        """Store the rollouts of the last :meth:`act` with their ``B·G`` rewards. Returns rollouts added."""
        if self._pending is None:
            raise RuntimeError("observe() needs a preceding act()")
        rows = self._flat_rollouts(self._pending["gens"])
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        if rewards.shape != (len(rows),):
            raise ValueError(f"got {rewards.size} rewards for {len(rows)} responses")
        if not np.all(np.isfinite(rewards)):
            raise ValueError("rewards must be finite")
        for row, r in zip(rows, rewards):
            row.reward = float(r)
        self.buffer.extend(rows)
        self._pending = None
        self.round += 1
        return len(rows)

    def _sequence_signal(self, rows: list[Rollout]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The estimator sees each response's reward."""
        return torch.tensor([r.reward for r in rows], dtype=torch.float32), {}

    def _estimator_config(self, n: int) -> PGConfig:
        """The objective with its group size: contiguous groups of ``num_samples`` rows."""
        g = self.config.num_samples
        if self.pg.advantage_estimator in GROUP_ESTIMATORS and n % g != 0:
            raise ValueError(f"{n} rollouts do not form groups of num_samples={g}")
        return dataclasses.replace(self.pg, group_size=g)
