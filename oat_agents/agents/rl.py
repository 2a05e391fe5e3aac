r"""The RL agent for verifiable rewards: sample, get rewards, learn with a policy-gradient objective.

**Single-turn, group-based** (GRPO, Dr.GRPO, RLOO, REINFORCE). The env serves ``B·G`` observations per round in contiguous groups of ``G``
identical prompts (``G = num_samples``; :func:`oat_agents.loops.group_rl.make_grouped_vec` builds such an env),
so the verifier grades every group member in ONE batched ``step``:

1. ``act(obs)``: for each of the ``B`` distinct prompts the policy samples ``G`` responses (token ids,
   per-token sampler log-probs ``log μ``, finish reasons); the ``B·G`` texts are the actions.
2. ``observe(rewards)`` stores the rollouts.
3. ``learn()`` — every round — estimates advantages over the groups
   (:func:`~oat_agents.algorithms.pg.compute_advantages`) and minimises
   :func:`~oat_agents.algorithms.pg.pg_loss` on the learner.
4. ``sync_weights()`` copies the learner weights into the policy (the loop decides how often).

**Multi-turn** (``act_turns``/``observe_turns``). Each sub-env of a vector env runs its own episode;
episodes have different lengths. A *turn* ``k`` is one (state ``s_k`` = conversation so far, action
``a_k`` = response) pair with reward ``r_k``. When an episode ends its turns become training rows with
the per-turn discounted return ``G_k = r_k + γ_turn · G_{k+1}`` (:func:`discounted_turn_returns`).
Advantages (the same for every token of turn ``k``):

* ``reinforce``: ``A_k = G_k − mean(G)`` over the turns of the batch (or ``G_k`` without baseline);
* ``ppo`` (needs a critic): turn-level GAE with the critic's ``V(s_k)``, read at the **last token of
  the state** (:class:`~oat_agents.critic.Critic`): ``δ_k = r_k + γ_turn V(s_{k+1}) − V(s_k)``
  (``V = 0`` after the final turn), ``A_k = δ_k + γ_turn λ A_{k+1}``; the critic regresses
  ``R_k = A_k + V(s_k)``.

Group estimators (grpo/dr_grpo/rloo) need groups of identical prompts and are rejected in multi-turn
mode. Learner and reference log-probs use the sampling temperature (``log softmax(z / T)``), the same
distribution ``HFPolicy`` reports, so ``ρ``, the TIS weights and the KL to the reference compare like with
like (an unchanged policy has zero KL at any ``T``).

Optimisation: the buffer is split into ``num_mini_batches`` shuffled mini-batches, ``learn_epochs``
times; each mini-batch is ONE optimizer step, computed in exactly ``gradient_accumulation_steps``
chunks of the learner (memory; :func:`~oat_agents.agents.batching.accumulation_chunks`), each chunk's loss
weighted by its share of the mini-batch (``LearnerEngine.backward(loss, share=...)``) so that the
accumulated gradient equals the gradient of the loss over the whole mini-batch (with Dr.GRPO's
``constant`` aggregation ``Σ m ℓ / (N · C)``, ``C = max_new_tokens`` unless set). With more than one
optimizer step per ``learn()``, ``π_old`` is the learner before the first step (an extra forward).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from oat_agents.agents.base import Agent, AgentConfig
from oat_agents.agents.batching import accumulation_chunks, collate_responses
from oat_agents.algorithms.logprobs import token_logprobs
from oat_agents.algorithms.pg import (
    GROUP_ESTIMATORS,
    PGConfig,
    compute_advantages,
    discounted_turn_returns,
    masked_mean,
    pg_loss,
)
from oat_agents.policies.base import Generations


def _default_pg() -> PGConfig:
    # Dr.GRPO (arXiv 2503.20783): group-mean baseline, no std division, constant normaliser.
    return PGConfig(advantage_estimator="dr_grpo", loss_agg="constant")


@dataclass
class RLAgentConfig(AgentConfig):
    """Options of :class:`RLAgent`: the sampling block of :class:`~oat_agents.agents.base.AgentConfig` (its
    ``temperature`` is also the learner's log-prob temperature), the optimisation and the objective."""

    num_samples: int = 8
    """G: responses per prompt (the group size of grpo/dr_grpo/rloo). Multi-turn acting samples 1."""
    num_mini_batches: int = 1
    """Optimizer steps per pass: the buffer is split into this many shuffled mini-batches."""
    turn_gamma: float = 1.0
    """γ between turns of a multi-turn episode (returns and turn-level GAE)."""
    min_turns_to_learn: int = 1
    """Multi-turn: ``learn()`` waits until at least this many finished turns are buffered."""
    collocate: bool = False
    """The policy engine shares the accelerator with the learner: it sleeps (vLLM sleep mode, level 1:
    weights to CPU, KV cache freed) after every generation and wakes up before the next generation or
    weight sync. Needs a policy with ``sleep()``/``wake_up()`` (``VLLMPolicy(enable_sleep_mode=True)``)."""
    log_entropy: bool = True
    """Log the policy's per-token entropy (a (tokens, vocab) softmax; turn off for large vocabularies)."""
    pg: PGConfig = field(default_factory=_default_pg)
    """The policy-gradient objective (estimator, clipping, TIS, KL, aggregation, truncation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.pg, PGConfig):
            raise TypeError(f"pg must be a PGConfig, got {type(self.pg).__name__}")
        if self.pg.advantage_estimator in GROUP_ESTIMATORS and self.num_samples < 2:
            raise ValueError(f"{self.pg.advantage_estimator} needs num_samples >= 2 (a group to compare within)")
        if self.pg.group_size is not None and self.pg.group_size != self.num_samples:
            raise ValueError(f"pg.group_size={self.pg.group_size} disagrees with num_samples={self.num_samples}")
        for name in ("num_mini_batches", "min_turns_to_learn"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.turn_gamma <= 1.0:
            raise ValueError(f"turn_gamma must be in [0, 1], got {self.turn_gamma}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for RL sampling, got {self.temperature}")


@dataclass
class Rollout:
    """One trained-on response: the exact tokens the policy produced and what they earned.

    ``reward`` is the scalar reward (single-turn) or the turn's raw reward (multi-turn, where
    ``episode``/``turn``/``last`` place it in its episode).
    """

    prompt_ids: list[int]
    response_ids: list[int]
    sampler_logprobs: list[float]
    finish_reason: str
    reward: float = 0.0
    episode: int = -1
    turn: int = 0
    last: bool = True


class RLAgent(Agent):
    """Policy (actor) + learner (+ optional critic) for RL with verifiable rewards.

    Args:
        policy: generates responses (``HFPolicy`` or ``VLLMPolicy``); must report per-token log-probs.
        learner: a :class:`~oat_agents.learners.LearnerEngine` (frozen reference needed for KL terms).
        config: :class:`RLAgentConfig`.
        critic: optional :class:`~oat_agents.critic.CriticTrainer`; required by ``advantage_estimator="ppo"``.
    """

    config: RLAgentConfig

    def __init__(self, policy: Any, learner: Any, config: RLAgentConfig | None = None, critic: Any = None):
        config = config or RLAgentConfig()
        super().__init__(policy, learner, config, collocate=config.collocate)
        self.critic = critic
        if self.config.pg.advantage_estimator == "ppo" and critic is None:
            raise ValueError("advantage_estimator='ppo' needs a critic (oat_agents.critic.CriticTrainer)")
        if self.config.pg.kl_mode != "none" and getattr(learner, "ref_model", None) is None and not getattr(
            learner, "is_lora", False
        ):
            raise ValueError("a KL term needs a reference model: build the LearnerEngine with ref_model=")
        pg = self.config.pg
        if pg.loss_agg == "constant" and pg.constant_normalizer is None:
            # Rows are laid out (N, prompt + response), so the width is not the generation budget.
            pg = dataclasses.replace(pg, constant_normalizer=float(self.config.max_new_tokens))
        self.pg = pg
        self.buffer: list[Rollout] = []
        self.episodes_done = 0
        self._pending: dict[str, Any] | None = None
        self._open: list[list[Rollout]] | None = None
        self._mode: str | None = None

    # -- acting ----------------------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        if self._mode is not None and self._mode != mode:
            raise RuntimeError(f"this agent acts in {self._mode} mode; do not mix act() and act_turns()")
        if mode == "multi-turn" and self.config.pg.advantage_estimator in GROUP_ESTIMATORS:
            raise ValueError(
                f"{self.config.pg.advantage_estimator} needs groups of identical prompts; multi-turn episodes "
                "have none: use advantage_estimator='reinforce' or 'ppo' (with a critic)"
            )
        self._mode = mode

    def act(self, observations: Sequence[str]) -> list[str]:
        """Single-turn: ``B·G`` observations in contiguous groups of ``G = num_samples`` identical prompts
        → ``B·G`` sampled responses in the same order (one generate call, ``n = G``)."""
        self._set_mode("single-turn")
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

    @staticmethod
    def _check_generations(gens: Generations, n_prompts: int, n: int) -> None:
        if len(gens.texts) != n_prompts or any(len(t) != n for t in gens.texts):
            raise RuntimeError(f"the policy returned a wrong number of samples (expected {n_prompts} x {n})")
        if not gens.prompt_token_ids:
            raise RuntimeError("the policy must report prompt_token_ids (the tokens it conditioned on)")

    def _flat_rollouts(self, gens: Generations) -> list[Rollout]:
        out = []
        for i, per_prompt in enumerate(gens.token_ids):
            for j, ids in enumerate(per_prompt):
                lps = gens.logprobs[i][j]
                if len(lps) != len(ids):
                    raise RuntimeError("the policy must report one log-prob per generated token")
                out.append(Rollout(list(gens.prompt_token_ids[i]), list(ids), list(lps), gens.finish_reasons[i][j]))
        return out

    def observe(self, rewards: Sequence[float] | np.ndarray) -> int:
        """Store the rollouts of the last :meth:`act` with their ``B·G`` rewards. Returns rollouts added."""
        if self._pending is None or self._mode != "single-turn":
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

    def act_turns(self, observations: Sequence[Any]) -> list[str]:
        """Multi-turn: one response per sub-env's current observation (conversation so far)."""
        self._set_mode("multi-turn")
        obs = list(observations)
        if not obs:
            raise ValueError("act_turns() needs at least one observation")
        if self._open is None:
            self._open = [[] for _ in obs]
        if len(obs) != len(self._open):
            raise ValueError(f"got {len(obs)} observations, but the episodes in progress are {len(self._open)}")
        gens = self.generate(obs, 1, self.sampling_params())
        self._check_generations(gens, len(obs), 1)
        self._pending = {"gens": gens}
        return [t[0] for t in gens.texts]

    def observe_turns(self, rewards: Sequence[float] | np.ndarray, dones: Sequence[bool] | np.ndarray) -> int:
        """Record one turn per sub-env; ``dones[i]`` (terminated or truncated) closes sub-env ``i``'s
        episode, whose turns then enter the buffer. Returns the number of episodes finished."""
        if self._pending is None or self._mode != "multi-turn" or self._open is None:
            raise RuntimeError("observe_turns() needs a preceding act_turns()")
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
        """Whether :meth:`learn` has enough data (any rollouts; multi-turn: ``min_turns_to_learn`` turns)."""
        if self._mode == "multi-turn":
            return len(self.buffer) >= self.config.min_turns_to_learn
        return bool(self.buffer)

    def _collate(self, rows: Sequence[Rollout]) -> dict[str, torch.Tensor]:
        """Right-padded tensors of a chunk, with the sampler log-probs aligned to the response tokens."""
        input_ids, attention_mask, response_mask = collate_responses(
            [r.prompt_ids for r in rows], [r.response_ids for r in rows], self.pad_token_id, self.config.max_seq_length
        )
        sampler = torch.zeros(response_mask.shape, dtype=torch.float32)
        for i, r in enumerate(rows):
            start = len(r.prompt_ids)
            kept = int(response_mask[i].sum())  # max_seq_length may have cut the tail
            sampler[i, start : start + kept] = torch.tensor(r.sampler_logprobs[:kept], dtype=torch.float32)
        device = self.learner.device
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "response_mask": response_mask.to(device),
            "sampler_logprobs": sampler.to(device),
        }

    def _forward(self, batch: dict[str, torch.Tensor], with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token learner log-probs ``(B, L)`` (0 off the response) and optionally entropies."""
        return token_logprobs(  # (B, L) each, at the sampling temperature (the sampler's log-probs are too)
            self.learner.engine, batch["input_ids"], batch["attention_mask"], self.config.temperature,
            batch["response_mask"], with_entropy=with_entropy, entropy_grad=self.pg.entropy_coef > 0,
        )

    def _ref_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # At the sampling temperature, like the policy and sampler log-probs: k1/k3 are 0 when π = π_ref.
        return self.learner.ref_logps(  # (B, L), 0 off the response
            batch["input_ids"], batch["attention_mask"], temperature=self.config.temperature,
            response_mask=batch["response_mask"],
        )

    def _chunks(self, idx: np.ndarray) -> list[np.ndarray]:
        gas = int(self.learner.config.gradient_accumulation_steps)
        if len(idx) < gas:
            raise ValueError(
                f"a mini-batch of {len(idx)} rollouts cannot fill gradient_accumulation_steps={gas} chunks: "
                "collect more rollouts per learn() or lower num_mini_batches / gradient_accumulation_steps"
            )
        return accumulation_chunks(idx, gas)

    @torch.no_grad()
    def _precompute(self, rows: list[Rollout], need_old: bool, need_ref: bool) -> dict[int, dict[str, torch.Tensor]]:
        """Per-row tensors that are fixed for the whole learn(): π_old and π_ref log-probs (CPU)."""
        out: dict[int, dict[str, torch.Tensor]] = {i: {} for i in range(len(rows))}
        if not (need_old or need_ref):
            return out
        self.learner.train(False)
        for chunk in self._chunks(np.arange(len(rows))):
            batch = self._collate([rows[i] for i in chunk])
            old = self._forward(batch, with_entropy=False)[0] if need_old else None
            ref = self._ref_logps(batch) if need_ref else None
            for k, i in enumerate(chunk):
                if old is not None:
                    out[int(i)]["old"] = old[k].cpu()
                if ref is not None:
                    out[int(i)]["ref"] = ref[k].cpu()
        return out

    @staticmethod
    def _row_tensor(pre: dict[int, dict[str, torch.Tensor]], chunk: np.ndarray, key: str, width: int,
                    device: torch.device) -> torch.Tensor:
        rows = [pre[int(i)][key][:width] for i in chunk]
        out = torch.zeros((len(rows), width), dtype=torch.float32)
        for k, r in enumerate(rows):
            out[k, : r.shape[0]] = r
        return out.to(device)

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
        """The scalar per row that the estimator sees: rewards (single-turn) or, multi-turn, discounted
        returns (reinforce) / turn-level GAE advantages (ppo, baseline already subtracted)."""
        rewards = torch.tensor([r.reward for r in rows], dtype=torch.float32)
        if self._mode != "multi-turn":
            return rewards, {}
        dones = torch.tensor([r.last for r in rows])
        returns = discounted_turn_returns(rewards, dones, self.config.turn_gamma)
        if self.pg.advantage_estimator == "ppo":
            values = self._state_values(rows)
            adv, targets = self._turn_gae(rows, values)
            return adv, {"values": values, "targets": targets, "returns": returns}
        return returns, {"returns": returns}

    def _chunk_weight(self, chunk_mask: torch.Tensor, mb_mask: torch.Tensor, mb_rows: int, chunk_rows: int) -> float:
        """Share of the mini-batch loss carried by a chunk, so that Σ_chunks (share · chunk loss) equals
        the mini-batch loss under the configured aggregation."""
        if self.pg.loss_agg == "token_mean":
            return float(chunk_mask.sum()) / max(float(mb_mask.sum()), 1.0)
        if self.pg.loss_agg == "seq_mean_token_mean":
            return float(chunk_mask.any(-1).sum()) / max(float(mb_mask.any(-1).sum()), 1.0)
        return chunk_rows / mb_rows

    def learn(self) -> dict[str, float]:
        """Train on the buffer (see the module docstring), then clear it. Returns averaged metrics."""
        if not self.ready_to_learn():
            return {}
        start = time.perf_counter()
        c, pg = self.config, self.pg
        if pg.advantage_estimator == "ppo" and self._mode != "multi-turn":
            raise ValueError("single-turn token-level ppo is not supported; use a group estimator (grpo/dr_grpo/rloo)")
        rows = list(self.buffer)
        n = len(rows)
        signal, extra = self._sequence_signal(rows)
        multi = self._mode == "multi-turn"
        if multi:
            # reinforce: A = G − mean(G). ppo: the turn-level GAE advantages are final (no further baseline).
            est_pg = pg if pg.advantage_estimator == "reinforce" else dataclasses.replace(
                pg, advantage_estimator="reinforce", reinforce_baseline=False
            )
        else:
            est_pg = dataclasses.replace(pg, group_size=c.num_samples)
            if pg.advantage_estimator in GROUP_ESTIMATORS and n % c.num_samples != 0:
                raise ValueError(f"{n} rollouts do not form groups of num_samples={c.num_samples}")
        need_old = c.learn_epochs * c.num_mini_batches > 1
        need_ref = pg.kl_mode != "none"
        pre = self._precompute(rows, need_old, need_ref)

        # Advantages over the whole buffer (groups must be complete): one row of width W per rollout.
        full = collate_responses([r.prompt_ids for r in rows], [r.response_ids for r in rows], self.pad_token_id,
                                 c.max_seq_length)
        full_mask = full[2]
        width = full_mask.shape[1]
        kwargs: dict[str, Any] = {"finish_reasons": [r.finish_reason for r in rows]}
        if pg.kl_mode == "reward":
            sampler = torch.zeros(full_mask.shape)
            for i, r in enumerate(rows):
                s = len(r.prompt_ids)
                kept = int(full_mask[i].sum())
                sampler[i, s : s + kept] = torch.tensor(r.sampler_logprobs[:kept])
            kwargs["logprobs"] = sampler
            kwargs["ref_logprobs"] = self._row_tensor(pre, np.arange(n), "ref", width, torch.device("cpu"))
        advs = compute_advantages(est_pg, signal, full_mask, **kwargs)
        metrics_sum: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(ms: dict[str, float]) -> None:
            for k, v in ms.items():
                metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1

        self.learner.train()
        for _ in range(c.learn_epochs):
            order = self._rng.permutation(n)
            for mb in np.array_split(order, c.num_mini_batches):
                if len(mb) == 0:
                    continue
                mb_mask = advs.loss_mask[torch.as_tensor(mb)]
                for chunk in self._chunks(mb):
                    batch = self._collate([rows[i] for i in chunk])
                    w = batch["response_mask"].shape[1]
                    # Rows of a chunk are narrower than the full layout: both are right-padded from 0.
                    rows_idx = torch.as_tensor(chunk)
                    loss_mask = advs.loss_mask[rows_idx][:, :w].to(batch["response_mask"].device)
                    adv = advs.advantages[rows_idx][:, :w].to(loss_mask.device)
                    logps, entropy = self._forward(batch, with_entropy=c.log_entropy or pg.entropy_coef > 0)
                    old = self._row_tensor(pre, chunk, "old", w, loss_mask.device) if need_old else None
                    ref = self._row_tensor(pre, chunk, "ref", w, loss_mask.device) if need_ref else None
                    loss, ms = pg_loss(
                        pg, logps, adv, loss_mask, old_logprobs=old, sampler_logprobs=batch["sampler_logprobs"],
                        ref_logprobs=ref, entropy=entropy,
                    )
                    share = self._chunk_weight(loss_mask, mb_mask, len(mb), len(chunk))
                    self.learner.backward(loss, share=share)
                    ms.update(self.learner.step())
                    add(ms)
                if multi and self.critic is not None and "targets" in extra:
                    add(self._critic_step(rows, mb, extra))
        result = {k: v / counts[k] for k, v in metrics_sum.items()}
        result.update(advs.metrics)
        result["train/rollouts"] = float(n)
        result["train/response_tokens"] = float(full_mask.sum()) / n
        result["train/advantage_abs_mean"] = float(masked_mean(advs.advantages.abs(), advs.loss_mask))
        if multi:
            result["train/episodes"] = float(len({r.episode for r in rows}))
            result["train/turns_per_episode"] = n / max(result["train/episodes"], 1.0)
            result["train/return_mean"] = float(extra["returns"].mean())
        result["train/step_s"] = time.perf_counter() - start
        self.buffer.clear()
        return result

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
        """The buffer, the episodes in progress and the mode, plus the round counter and RNG."""
        return {
            **super().state_dict(),
            "buffer": [asdict(r) for r in self.buffer],
            "open": None if self._open is None else [[asdict(r) for r in ep] for ep in self._open],
            "episodes_done": self.episodes_done,
            "mode": self._mode,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [Rollout(**r) for r in state["buffer"]]
        self._open = None if state["open"] is None else [[Rollout(**r) for r in ep] for ep in state["open"]]
        self.episodes_done = int(state["episodes_done"])
        self._mode = state["mode"]
        super().load_state_dict(state)
