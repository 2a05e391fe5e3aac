r"""What the two policy-gradient agents share (:class:`~oat_agents.agents.group_rl.GroupRLAgent`, single-turn groups;
:class:`~oat_agents.agents.multiturn.MultiTurnAgent`, turn-level episodes): the rollout rows, their options, and
``learn()``: advantages from a per-row signal, then the clipped policy-gradient loss on the learner.

Each agent supplies the per-row signal the estimator sees (rewards, or turn returns / GAE advantages) and the
estimator's config; everything else is here, once. Learner and reference log-probs use the sampling temperature
(``log softmax(z / T)``), the same distribution ``HFPolicy`` reports, so ``ρ``, the TIS weights and the KL to the
reference compare like with like (an unchanged policy has zero KL at any ``T``).

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from oat_agents.agents.base import Agent, AgentConfig
from oat_agents.agents.batching import accumulation_chunks, collate_responses
from oat_agents.algorithms.logprobs import token_logprobs
from oat_agents.algorithms.pg import PGConfig, compute_advantages, masked_mean, pg_loss
from oat_agents.policies.base import Generations


@dataclass
class PGAgentConfig(AgentConfig):
    """Options of both policy-gradient agents: the sampling block of :class:`~oat_agents.agents.base.AgentConfig`
    (its ``temperature`` is also the learner's log-prob temperature), the optimisation and the objective."""

    num_mini_batches: int = 1
    """Optimizer steps per pass: the buffer is split into this many shuffled mini-batches."""
    collocate: bool = False
    """The policy engine shares the accelerator with the learner: it sleeps (vLLM sleep mode, level 1:
    weights to CPU, KV cache freed) after every generation and wakes up before the next generation or
    weight sync. Needs a policy with ``sleep()``/``wake_up()`` (``VLLMPolicy(enable_sleep_mode=True)``)."""
    log_entropy: bool = True
    """Log the policy's per-token entropy (a (tokens, vocab) softmax; turn off for large vocabularies)."""
    pg: PGConfig = field(default_factory=PGConfig)
    """The policy-gradient objective (estimator, clipping, TIS, KL, aggregation, truncation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.pg, PGConfig):
            raise TypeError(f"pg must be a PGConfig, got {type(self.pg).__name__}")
        if int(self.num_mini_batches) < 1:
            raise ValueError(f"num_mini_batches must be >= 1, got {self.num_mini_batches}")
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


class PGAgent(Agent):
    """Policy (actor) + learner for policy-gradient RL with verifiable rewards; subclasses act and observe.

    Args:
        policy: generates responses (``HFPolicy`` or ``VLLMPolicy``); must report per-token log-probs.
        learner: a :class:`~oat_agents.learners.LearnerEngine` (frozen reference needed for KL terms).
        config: a :class:`PGAgentConfig`.
    """

    config: PGAgentConfig

    def __init__(self, policy: Any, learner: Any, config: PGAgentConfig):
        super().__init__(policy, learner, config, collocate=config.collocate)
        if config.pg.kl_mode != "none" and getattr(learner, "ref_model", None) is None and not getattr(
            learner, "is_lora", False
        ):
            raise ValueError("a KL term needs a reference model: build the LearnerEngine with ref_model=")
        pg = config.pg
        if pg.loss_agg == "constant" and pg.constant_normalizer is None:
            # Rows are laid out (N, prompt + response), so the width is not the generation budget.
            pg = dataclasses.replace(pg, constant_normalizer=float(config.max_new_tokens))
        self.pg = pg
        self.buffer: list[Rollout] = []
        self._pending: dict[str, Any] | None = None

    # -- what each agent supplies ------------------------------------------------------------
    def ready_to_learn(self) -> bool:
        """Whether :meth:`learn` has enough data (any rollouts)."""
        return bool(self.buffer)

    def _sequence_signal(self, rows: list[Rollout]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The scalar per row that the estimator sees, and tensors the agent wants back in :meth:`_after_mini_batch`
        and :meth:`_learn_metrics`."""
        raise NotImplementedError

    def _estimator_config(self, n: int) -> PGConfig:
        """The :class:`PGConfig` :func:`compute_advantages` runs with on ``n`` rows."""
        raise NotImplementedError

    def _after_mini_batch(self, rows: list[Rollout], mb: np.ndarray,
                          extra: dict[str, torch.Tensor]) -> dict[str, float]:
        """After the policy's step on mini-batch ``mb``: e.g. a critic step; its metrics."""
        return {}

    def _learn_metrics(self, rows: list[Rollout], extra: dict[str, torch.Tensor]) -> dict[str, float]:
        """Agent-specific metrics of a ``learn()``."""
        return {}

    # -- acting helpers --------------------------------------------------------------------
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

    # -- learning --------------------------------------------------------------------------
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
            share_prompt=self.learner.config.share_prompt,
        )

    def _ref_logps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # At the sampling temperature, like the policy and sampler log-probs: k1/k3 are 0 when π = π_ref.
        return self.learner.ref_logps(  # (B, L), 0 off the response
            batch["input_ids"], batch["attention_mask"], temperature=self.config.temperature,
            response_mask=batch["response_mask"],
        )

    def _epoch_order(self, rows: list[Rollout]) -> np.ndarray:
        """The rows' order for one pass: a random permutation; with ``LearnerConfig.share_prompt`` a random permutation
        of whole prompt groups (the rows that share a prompt stay adjacent, so a mini-batch's chunks keep them
        together and pack them behind one copy of the prompt)."""
        if not self.learner.config.share_prompt:
            return self._rng.permutation(len(rows))
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(tuple(r.prompt_ids), []).append(i)
        members = list(groups.values())
        return np.array([i for g in self._rng.permutation(len(members)) for i in members[g]], dtype=np.int64)

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

    def _chunk_weight(self, chunk_mask: torch.Tensor, mb_mask: torch.Tensor, mb_rows: int, chunk_rows: int) -> float:
        """Share of the mini-batch loss carried by a chunk, so that Σ_chunks (share · chunk loss) equals
        the mini-batch loss under the configured aggregation."""
        if self.pg.loss_agg == "token_mean":
            return float(chunk_mask.sum()) / max(float(mb_mask.sum()), 1.0)
        if self.pg.loss_agg == "seq_mean_token_mean":
            return float(chunk_mask.any(-1).sum()) / max(float(mb_mask.any(-1).sum()), 1.0)
        return chunk_rows / mb_rows

    def _advantages(self, rows: list[Rollout], signal: torch.Tensor, est_pg: PGConfig,
                    pre: dict[int, dict[str, torch.Tensor]]) -> tuple[Any, torch.Tensor]:
        """Advantages over the whole buffer (groups must be complete), one row of width W per rollout, and the
        ``(N, W)`` response mask of that layout."""
        full = collate_responses([r.prompt_ids for r in rows], [r.response_ids for r in rows], self.pad_token_id,
                                 self.config.max_seq_length)
        full_mask = full[2]
        kwargs: dict[str, Any] = {"finish_reasons": [r.finish_reason for r in rows]}
        if self.pg.kl_mode == "reward":
            sampler = torch.zeros(full_mask.shape)  # (N, W), the sampler's log-probs at the response tokens
            for i, r in enumerate(rows):
                s = len(r.prompt_ids)
                kept = int(full_mask[i].sum())
                sampler[i, s : s + kept] = torch.tensor(r.sampler_logprobs[:kept])
            kwargs["logprobs"] = sampler
            kwargs["ref_logprobs"] = self._row_tensor(pre, np.arange(len(rows)), "ref", full_mask.shape[1],
                                                      torch.device("cpu"))
        return compute_advantages(est_pg, signal, full_mask, **kwargs), full_mask

    def learn(self) -> dict[str, float]:
        """Train on the buffer (see the module docstring), then clear it. Returns averaged metrics."""
        if not self.ready_to_learn():
            return {}
        start = time.perf_counter()
        c, pg = self.config, self.pg
        rows = list(self.buffer)
        n = len(rows)
        signal, extra = self._sequence_signal(rows)
        estimator_pg = self._estimator_config(n)
        need_old = c.learn_epochs * c.num_mini_batches > 1
        need_ref = pg.kl_mode != "none"
        pre = self._precompute(rows, need_old, need_ref)
        advs, full_mask = self._advantages(rows, signal, estimator_pg, pre)
        metrics_sum: dict[str, float] = {}
        counts: dict[str, int] = {}

        def add(ms: dict[str, float]) -> None:
            for k, v in ms.items():
                metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1

        self.learner.train()
        for _ in range(c.learn_epochs):
            order = self._epoch_order(rows)
            for mb in np.array_split(order, c.num_mini_batches):
                if len(mb) == 0:
                    continue
                mb_mask = advs.loss_mask[torch.as_tensor(mb)]
                for chunk in self._chunks(mb):
                    batch = self._collate([rows[i] for i in chunk])
                    w = batch["response_mask"].shape[1]
                    # Rows of a chunk are narrower than the full layout: both are right-padded from 0.
                    rows_idx = torch.as_tensor(chunk)
                    loss_mask = advs.loss_mask[rows_idx][:, :w].to(batch["response_mask"].device)  # (chunk, w)
                    adv = advs.advantages[rows_idx][:, :w].to(loss_mask.device)  # (chunk, w)
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
                add(self._after_mini_batch(rows, mb, extra))
        result = {k: v / counts[k] for k, v in metrics_sum.items()}
        result.update(advs.metrics)
        result["train/rollouts"] = float(n)
        result["train/response_tokens"] = float(full_mask.sum()) / n
        result["train/advantage_abs_mean"] = float(masked_mean(advs.advantages.abs(), advs.loss_mask))
        result.update(self._learn_metrics(rows, extra))
        result["train/step_s"] = time.perf_counter() - start
        self.buffer.clear()
        return result

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The buffer, plus the round counter and RNG (:meth:`Agent.state_dict`)."""
        return {**super().state_dict(), "buffer": [dataclasses.asdict(r) for r in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [Rollout(**r) for r in state["buffer"]]
        super().load_state_dict(state)
