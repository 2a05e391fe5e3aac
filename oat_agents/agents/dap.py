"""The direct-alignment (DAP) agent: sample candidates, duel a pair, learn from the preference.

One round with a dueling env (DESIGN.md §4):

1. ``act(prompts)``: the policy samples ``num_samples`` responses per prompt; the explorer (or, without
   one, the first two samples) picks the pair ``(a, b)`` to show the oracle.
2. The env's batched ``step`` returns the labels (``1`` = ``a`` preferred).
3. ``observe(...)`` stores ``(prompt, chosen, rejected)`` pairs, as the token ids the policy sampled.
4. ``learn()`` runs the DAP loss (DPO, IPO, SLiC, SimPO, LD-DPO, ...) over the buffer on the learner.
5. ``sync_weights()`` copies the learner's weights into the policy (every ``sync_params_every`` rounds:
   1 = online, k = iterative, never = offline -- the loop decides).

Optimisation: each shuffled pass over the buffer is cut into optimizer steps of
``micro_batch_size · gradient_accumulation_steps`` pairs (the last may be smaller), and each step is
computed in exactly ``gradient_accumulation_steps`` micro-batches
(:func:`~oat_agents.agents.batching.accumulation_chunks`, as the policy-gradient agents do), so ``learn()`` never leaves
a gradient accumulated into the next round. Identical responses (ties) carry no preference and are
masked out; with ``V`` the step's valid pairs (over all ranks) the step's loss is
``Σ_{valid i} ℓ_i / V``: a micro-batch whose loss is the mean over its own ``v`` valid pairs weighs
``v / V`` (``LearnerEngine.backward(loss, share=...)``), so tie-only micro-batches add nothing and do not
dilute the others. A step with ``V = 0`` is skipped: no AdamW step and no LR-schedule step. Metrics from
the loss are means over the valid pairs of the whole ``learn()``; ``train/grad_norm``/``train/lr`` are
means over its optimizer steps (``train/optimizer_steps``). Data-parallel, every rank must hold the same
number of pairs (one collective per pass counts the valid pairs of each step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from oat_agents.agents.base import Agent, AgentConfig
from oat_agents.agents.batching import accumulation_chunks, collate_responses
from oat_agents.algorithms.dap import METRIC_KEYS, DAPConfig, TokenLogps, dap_loss
from oat_agents.algorithms.logprobs import sequence_logprobs
from oat_agents.learners import dist
from oat_agents.policies.base import Generations


@dataclass
class DAPAgentConfig(AgentConfig):
    """Options of :class:`DAPAgent`: the sampling block of :class:`~oat_agents.agents.base.AgentConfig`, the
    buffer and the loss."""

    num_samples: int = 2
    """Candidate responses sampled per prompt; the explorer picks the pair to duel (>= 2)."""
    buffer_size: int = 100_000
    """Most preference pairs kept; the oldest are dropped first."""
    clear_buffer_after_learn: bool = True
    """Online learning trains on the freshest pairs only; False replays the whole buffer every learn()."""
    dap: DAPConfig = field(default_factory=DAPConfig)
    """The loss (DPO/IPO/SLiC/SimPO/LD-DPO) and its options."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 to form a pair, got {self.num_samples}")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {self.buffer_size}")


@dataclass
class PreferencePair:
    """A labelled duel, kept as the exact tokens the policy produced."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def is_tie(self) -> bool:
        """Identical responses carry no preference signal; the loss masks them out."""
        return self.chosen_ids == self.rejected_ids


class Explorer(Protocol):
    """Picks which two of ``num_samples`` candidates to duel (see ``oat_agents.exploration``)."""

    def select(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
        """``(B, 2)`` indices into each prompt's candidates."""
        ...


class DAPAgent(Agent):
    """Policy (actor) + learner (+ optional explorer) for online preference learning.

    Args:
        policy: generates candidates (``HFPolicy`` or ``VLLMPolicy``).
        learner: a :class:`~oat_agents.learners.LearnerEngine` holding the trainable model and the
            frozen reference.
        config: :class:`DAPAgentConfig`.
        explorer: optional pair selector; without one the first two samples duel.
    """

    config: DAPAgentConfig

    def __init__(self, policy: Any, learner: Any, config: DAPAgentConfig | None = None, explorer: Any = None):
        super().__init__(policy, learner, config or DAPAgentConfig())
        self.explorer = explorer
        self.buffer: list[PreferencePair] = []
        self._pending: dict[str, Any] | None = None

    # -- acting ----------------------------------------------------------------------------
    def act(self, prompts: Sequence[str]) -> tuple[list[str], list[str]]:
        """Sample candidates and choose the duel: ``(responses_a, responses_b)``."""
        if not prompts:
            raise ValueError("act() needs at least one prompt")
        gens = self.generate(list(prompts), n=self.config.num_samples, sampling=self.sampling_params())
        if self.explorer is not None:
            pairs = np.asarray(self.explorer.select(prompts, gens.texts), dtype=np.int64)
            if pairs.shape != (len(prompts), 2):
                raise ValueError(f"explorer returned indices of shape {pairs.shape}, expected ({len(prompts)}, 2)")
        else:
            pairs = np.tile(np.array([0, 1]), (len(prompts), 1))
        self._pending = {"prompts": list(prompts), "gens": gens, "pairs": pairs}
        a = [gens.texts[i][pairs[i, 0]] for i in range(len(prompts))]
        b = [gens.texts[i][pairs[i, 1]] for i in range(len(prompts))]
        return a, b

    def observe(self, labels: Sequence[float] | np.ndarray) -> int:
        """Store the pairs of the last ``act`` with their labels (1 = ``a`` preferred). Returns pairs added."""
        if self._pending is None:
            raise RuntimeError("observe() needs a preceding act()")
        labels = np.asarray(labels, dtype=np.float64)
        gens: Generations = self._pending["gens"]
        pairs = self._pending["pairs"]
        if labels.shape != (len(pairs),):
            raise ValueError(f"got {labels.shape[0] if labels.ndim else 'scalar'} labels for {len(pairs)} duels")
        for i, (ia, ib) in enumerate(pairs):
            a_ids, b_ids = gens.token_ids[i][ia], gens.token_ids[i][ib]
            chosen, rejected = (a_ids, b_ids) if labels[i] >= 0.5 else (b_ids, a_ids)
            self.buffer.append(PreferencePair(list(gens.prompt_token_ids[i]), list(chosen), list(rejected)))
        overflow = len(self.buffer) - self.config.buffer_size
        if overflow > 0:
            del self.buffer[:overflow]
        self._pending = None
        self.round += 1
        return len(pairs)

    # -- learning --------------------------------------------------------------------------
    def _pair_loss(self, pairs: list[PreferencePair]) -> tuple[torch.Tensor, dict[str, float]]:
        """DAP loss of a micro-batch, the mean over its valid (non-tie) pairs: chosen and rejected go
        through the model as one batch."""
        b = len(pairs)
        prompts = [p.prompt_ids for p in pairs] * 2
        responses = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
        input_ids, attention_mask, response_mask = collate_responses(
            prompts, responses, self.pad_token_id, self.config.max_seq_length
        )
        device = self.learner.device
        input_ids, attention_mask, response_mask = input_ids.to(device), attention_mask.to(device), response_mask.to(device)
        dap = self.config.dap
        # policy_tokens[:, t] scores input_ids[:, t] (0 off the response).
        policy_sum, lengths, policy_tokens = sequence_logprobs(
            self.learner.engine, input_ids, attention_mask, response_mask, share_prompt=self.learner.config.share_prompt
        )
        ref_sum = ref_tokens = None
        if dap.loss_type != "simpo":
            ref_tokens = self.learner.ref_logps(input_ids, attention_mask, response_mask=response_mask)  # (2B, L)
            ref_sum = ref_tokens.sum(-1)
        token_logps = None
        if dap.loss_type == "lr_dpo":
            assert ref_tokens is not None
            token_logps = TokenLogps(
                policy_chosen=policy_tokens[:b],
                policy_rejected=policy_tokens[b:],
                reference_chosen=ref_tokens[:b],
                reference_rejected=ref_tokens[b:],
                chosen_mask=response_mask[:b],
                rejected_mask=response_mask[b:],
            )
        mask = torch.tensor([not p.is_tie for p in pairs], device=device)
        return dap_loss(
            dap,
            policy_sum[:b],
            policy_sum[b:],
            None if ref_sum is None else ref_sum[:b],
            None if ref_sum is None else ref_sum[b:],
            lengths[:b],
            lengths[b:],
            mask=mask,
            token_logps=token_logps,
        )

    def learn(self) -> dict[str, float]:
        """Train on the buffer: ``learn_epochs`` shuffled passes, in complete optimizer steps whose loss is
        the mean over their valid pairs (module docstring). Returns averaged metrics."""
        if not self.buffer:
            return {}
        start = time.perf_counter()
        micro = int(self.learner.config.micro_batch_size)
        gas = int(self.learner.config.gradient_accumulation_steps)
        world = dist.world_size()
        loss_sums: dict[str, float] = {}
        loss_weights: dict[str, float] = {}
        step_sums: dict[str, float] = {}
        steps_taken = 0
        self.learner.train()
        for _ in range(self.config.learn_epochs):
            order = self._rng.permutation(len(self.buffer))
            steps = [order[s : s + micro * gas] for s in range(0, len(order), micro * gas)]
            # Global counts: every rank weighs its pairs by the same denominator and skips the same steps
            # (a rank skipping a forward/backward that another runs would hang the collectives).
            valid_per_step = dist.all_reduce_sum([sum(not self.buffer[i].is_tie for i in step) for step in steps])
            for step, step_valid in zip(steps, valid_per_step):
                if step_valid == 0:
                    continue  # no preference anywhere: an AdamW step would only decay weights and move the LR
                boundary: dict[str, float] = {}
                for chunk in accumulation_chunks(step, gas):
                    if len(chunk) == 0:
                        self.learner.step()  # fewer pairs than micro-steps: empty ones come first, never the boundary
                        continue
                    batch = [self.buffer[i] for i in chunk]
                    chunk_valid = sum(not p.is_tie for p in batch)
                    loss, metrics = self._pair_loss(batch)
                    # `loss` is the mean over this chunk's valid pairs; DeepSpeed averages the ranks, hence · world.
                    self.learner.backward(loss, share=chunk_valid * world / step_valid)
                    boundary = self.learner.step()
                    if chunk_valid:
                        for k, v in metrics.items():
                            loss_sums[k] = loss_sums.get(k, 0.0) + chunk_valid * float(v)
                            loss_weights[k] = loss_weights.get(k, 0.0) + chunk_valid
                for k, v in boundary.items():
                    step_sums[k] = step_sums.get(k, 0.0) + float(v)
                steps_taken += 1
        if loss_sums:
            result = {k: v / loss_weights[k] for k, v in loss_sums.items()}
        else:
            result = dict.fromkeys(METRIC_KEYS, 0.0)  # dap_loss's convention when no pair is valid
        result.update({k: v / steps_taken for k, v in step_sums.items()})
        result["train/optimizer_steps"] = float(steps_taken)
        result["train/pairs"] = float(len(self.buffer))
        result["train/tie_fraction"] = float(np.mean([p.is_tie for p in self.buffer]))
        result["train/step_s"] = time.perf_counter() - start
        if self.config.clear_buffer_after_learn:
            self.buffer.clear()
        return result

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The buffer of pairs, plus the round counter and RNG (:meth:`Agent.state_dict`)."""
        return {**super().state_dict(), "buffer": [asdict(p) for p in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [PreferencePair(**p) for p in state["buffer"]]
        super().load_state_dict(state)
