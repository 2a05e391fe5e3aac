r"""The multi-turn agent: turn-level policy gradient on multi-turn episodes (REINFORCE, PPO with a critic).

Each sub-env of a vector env runs its own episode; episodes have different lengths. A *turn* ``k`` is one
(state ``s_k`` = conversation so far, action ``a_k`` = response) pair with reward ``r_k``. ``act(obs)`` samples one
response per sub-env; ``observe(rewards, dones)`` records the turn, and when an episode ends its turns become
training rows with the per-turn discounted return ``G_k = r_k + γ_turn · G_{k+1}``
(:func:`~oat_agents.algorithms.pg.discounted_turn_returns`). Advantages (the same for every token of turn ``k``):

* ``reinforce``: ``A_k = G_k − mean(G)`` over the turns of the batch (or ``G_k`` without baseline);
* ``ppo`` (needs a critic): turn-level GAE with the critic's ``V(s_k)``, read at the **last token of
  the state** (:class:`~oat_agents.learners.critic.Critic`): ``δ_k = r_k + γ_turn V(s_{k+1}) − V(s_k)``
  (``V = 0`` after the final turn), ``A_k = δ_k + γ_turn λ A_{k+1}``; the critic regresses
  ``R_k = A_k + V(s_k)``, one critic step after each policy mini-batch.

Group estimators (grpo/dr_grpo/rloo) need groups of identical prompts, which episodes do not have: the config
refuses them. The loss and its optimisation are :class:`~oat_agents.agents.policy_gradient.PGAgent`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.agents.policy_gradient import PGAgent, PGAgentConfig, Rollout
from oat_agents.algorithms.pg import GROUP_ESTIMATORS, PGConfig, discounted_turn_returns


def _reinforce() -> PGConfig:
    return PGConfig(advantage_estimator="reinforce", loss_agg="token_mean")


@dataclass
class MultiTurnAgentConfig(PGAgentConfig):
    """Options of :class:`MultiTurnAgent` (:class:`~oat_agents.agents.policy_gradient.PGAgentConfig` plus the
    turn discount and when to learn)."""

    num_samples: int = 1
    """Responses per sub-env and turn: 1 (an episode follows one response per turn)."""
    turn_gamma: float = 1.0
    """γ between turns of an episode (returns and turn-level GAE)."""
    min_turns_to_learn: int = 1
    """``learn()`` waits until at least this many finished turns are buffered."""
    pg: PGConfig = field(default_factory=_reinforce)
    """The policy-gradient objective: ``reinforce`` or ``ppo`` (with a critic), clipping, TIS, KL, aggregation."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples != 1:
            raise ValueError(f"a multi-turn episode follows one response per turn: num_samples must be 1, "
                             f"got {self.num_samples}")
        if self.pg.advantage_estimator in GROUP_ESTIMATORS:
            raise ValueError(
                f"{self.pg.advantage_estimator} needs groups of identical prompts; multi-turn episodes "
                "have none: use advantage_estimator='reinforce' or 'ppo' (with a critic)"
            )
        if int(self.min_turns_to_learn) < 1:
            raise ValueError(f"min_turns_to_learn must be >= 1, got {self.min_turns_to_learn}")
        if not 0.0 <= self.turn_gamma <= 1.0:
            raise ValueError(f"turn_gamma must be in [0, 1], got {self.turn_gamma}")


class MultiTurnAgent(PGAgent):
    """Policy (actor) + learner (+ critic for ppo) for turn-level RL on multi-turn episodes (module docstring).

    Args:
        policy: generates responses (``HFPolicy`` or ``VLLMPolicy``); must report per-token log-probs.
        learner: a :class:`~oat_agents.learners.LearnerEngine` (frozen reference needed for KL terms).
        config: :class:`MultiTurnAgentConfig`.
        critic: a :class:`~oat_agents.learners.critic.CriticTrainer`; required by ``advantage_estimator="ppo"``.
    """

    overlaps_act_and_learn = False  # its loop steps the env per turn and learns when episodes end: nothing to overlap

    config: MultiTurnAgentConfig

    def __init__(self, policy: Any, learner: Any, config: MultiTurnAgentConfig | None = None, critic: Any = None):
        config = config or MultiTurnAgentConfig()
        if config.pg.advantage_estimator == "ppo" and critic is None:
            raise ValueError("advantage_estimator='ppo' needs a critic (oat_agents.learners.critic.CriticTrainer)")
        super().__init__(policy, learner, config)
        self.critic = critic
        self.episodes_done = 0
        self._open: list[list[Rollout]] | None = None  # the turns of each sub-env's episode in progress

    # -- acting ----------------------------------------------------------------------------
    def act(self, observations: Sequence[Any]) -> list[str]:
        """One response per sub-env's current observation (conversation so far)."""
        obs = list(observations)
        if not obs:
            raise ValueError("act() needs at least one observation")
        if self._open is None:
            self._open = [[] for _ in obs]
        if len(obs) != len(self._open):
            raise ValueError(f"got {len(obs)} observations, but the episodes in progress are {len(self._open)}")
        gens = self.generate(obs, 1, self.sampling_params())
        self._check_generations(gens, len(obs), 1)
        self._pending = {"gens": gens}
        return [t[0] for t in gens.texts]

    def observe(self, rewards: Sequence[float] | np.ndarray, dones: Sequence[bool] | np.ndarray) -> int:
        """Record one turn per sub-env; ``dones[i]`` (terminated or truncated) closes sub-env ``i``'s
        episode, whose turns then enter the buffer. Returns the number of episodes finished."""
        if self._pending is None or self._open is None:
            raise RuntimeError("observe() needs a preceding act()")
        rows = self._flat_rollouts(self._pending["gens"])
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        dones = np.asarray(dones, dtype=bool).reshape(-1)
        if rewards.shape != (len(rows),) or dones.shape != (len(rows),):
            raise ValueError(f"got {rewards.size} rewards and {dones.size} dones for {len(rows)} sub-envs")
        if not np.all(np.isfinite(rewards)):
            raise ValueError("rewards must be finite")
        finished = 0
        for i, row in enumerate(rows):
            row.reward = float(rewards[i])
            row.turn = len(self._open[i])
            self._open[i].append(row)
            if dones[i]:
                episode = self._open[i]
                for turn in episode:
                    turn.episode = self.episodes_done
                    turn.last = False
                episode[-1].last = True
                self.buffer.extend(episode)
                self.episodes_done += 1
                finished += 1
                self._open[i] = []
        self._pending = None
        self.round += 1
        return finished

    # -- learning --------------------------------------------------------------------------
    def ready_to_learn(self) -> bool:
        """Whether :meth:`learn` has ``min_turns_to_learn`` finished turns."""
        return len(self.buffer) >= self.config.min_turns_to_learn

    def _state_values(self, rows: list[Rollout]) -> torch.Tensor:
        """``V(s)`` of each row's state (the prompt tokens), read at its last token."""
        values = []
        for chunk in self._chunks(np.arange(len(rows))):
            prompts = [rows[i].prompt_ids for i in chunk]
            ids, attn, _ = collate_responses(prompts, [[] for _ in prompts], self.pad_token_id)
            values.append(self.critic.predict(ids, attn).cpu())
        return torch.cat(values)

    def _turn_gae(self, rows: list[Rollout], values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn-level GAE over each episode's turns (buffer order keeps an episode's turns contiguous)."""
        gamma, lam = self.config.turn_gamma, self.pg.lam
        adv = torch.zeros(len(rows))
        next_v, next_a = 0.0, 0.0
        for i in range(len(rows) - 1, -1, -1):
            if rows[i].last:
                next_v, next_a = 0.0, 0.0
            delta = rows[i].reward + gamma * next_v - float(values[i])
            next_a = delta + gamma * lam * next_a
            adv[i] = next_a
            next_v = float(values[i])
        return adv, adv + values

    def _sequence_signal(self, rows: list[Rollout]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Discounted turn returns (reinforce), or turn-level GAE advantages (ppo, baseline already subtracted)."""
        rewards = torch.tensor([r.reward for r in rows], dtype=torch.float32)
        dones = torch.tensor([r.last for r in rows])
        returns = discounted_turn_returns(rewards, dones, self.config.turn_gamma)
        if self.pg.advantage_estimator == "ppo":
            values = self._state_values(rows)
            adv, targets = self._turn_gae(rows, values)
            return adv, {"values": values, "targets": targets, "returns": returns}
        return returns, {"returns": returns}

    def _estimator_config(self, n: int) -> PGConfig:
        """reinforce: ``A = G − mean(G)``. ppo: the turn-level GAE advantages are final (no further baseline)."""
        if self.pg.advantage_estimator == "reinforce":
            return self.pg
        return dataclasses.replace(self.pg, advantage_estimator="reinforce", reinforce_baseline=False)

    def _after_mini_batch(self, rows: list[Rollout], mb: np.ndarray,
                          extra: dict[str, torch.Tensor]) -> dict[str, float]:
        """ppo: one critic step on the mini-batch's states."""
        if self.critic is None or "targets" not in extra:
            return {}
        return self._critic_step(rows, mb, extra)

    def _learn_metrics(self, rows: list[Rollout], extra: dict[str, torch.Tensor]) -> dict[str, float]:
        episodes = float(len({r.episode for r in rows}))
        return {"train/episodes": episodes, "train/turns_per_episode": len(rows) / max(episodes, 1.0),
                "train/return_mean": float(extra["returns"].mean())}

    def _critic_step(self, rows: list[Rollout], mb: np.ndarray, extra: dict[str, torch.Tensor]) -> dict[str, float]:
        """One critic AdamW step on a mini-batch of states toward the turn-level GAE targets."""
        prompts = [rows[i].prompt_ids for i in mb]
        ids, attn, _ = collate_responses(prompts, [[] for _ in prompts], self.pad_token_id)
        idx = torch.as_tensor(mb, dtype=torch.long)
        loss, ms = self.critic.loss(ids, attn, extra["targets"][idx], old_values=extra["values"][idx])
        loss.backward()
        ms.update(self.critic.step())
        return ms

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The buffer and the episodes in progress, plus the round counter and RNG."""
        return {
            **super().state_dict(),
            "open": None if self._open is None else [[asdict(r) for r in ep] for ep in self._open],
            "episodes_done": self.episodes_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._open = None if state["open"] is None else [[Rollout(**r) for r in ep] for ep in state["open"]]
        self.episodes_done = int(state["episodes_done"])
        super().load_state_dict(state)
