r"""APL agent (Muldrew et al. 2024, arXiv 2402.08114): duel the candidate pair the policy is most *certain*
about, by the DPO implicit reward margin.

Per round, for each of the ``B`` env prompts the policy samples ``K = num_samples`` candidates; the
learner scores them with the implicit reward ``r̂(x, y) = β·(log π_θ(y|x) − log π_ref(y|x))`` (summed
response log-probs of the *learner's* current weights and of the frozen reference) and the pair
``argmax_{i<j} |r̂_i − r̂_j|`` is dueled (:func:`~oat_agents.exploration.prompt_entropy.implicit_reward_margin_pairs`).

APL's first stage chooses *which prompts* to query. With ``prompt_pool_size = P > 0`` the loop asks the
env for a pool of ``P`` candidate prompts each round (``env.prompt_pool``: the served prompts plus fresh
draws, free of queries) and :meth:`APLAgent.choose_prompts` samples ``K`` responses for every pool prompt,
estimates the policy's Monte-Carlo predictive entropy ``Ĥ(x) = −(1/K) Σ_k log π(y_k|x)`` (from the
sampler's log-probs; per token with ``entropy_per_token``) and keeps the ``B`` *highest*-entropy prompts
(:func:`~oat_agents.exploration.prompt_entropy.select_high_entropy_prompts`), which the env then serves
(``env.serve_prompts``) and the oracle answers. The samples of the kept prompts are reused by ``act``,
so selection costs ``P − B`` extra prompts of generation, not a second pass. With ``P = 0`` every served
prompt is dueled (pair choice only). Metrics: ``explorer/apl_entropy`` (mean ``Ĥ`` of the dueled prompts),
``explorer/apl_pool_entropy`` (of the whole pool) and ``explorer/apl_margin`` (mean chosen margin).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
from oat_agents.exploration.prompt_entropy import (
    implicit_reward_margin_pairs,
    predictive_entropy,
    select_high_entropy_prompts,
)
from oat_agents.policies.base import Generations


@dataclass
class APLAgentConfig(DAPAgentConfig):
    """:class:`DAPAgentConfig` plus APL's prompt selection."""

    prompt_pool_size: int = 0
    """Candidate prompts per round from which the ``num_envs`` highest-entropy ones are queried
    (must exceed ``num_envs``); 0 = no prompt selection, duel every served prompt."""
    entropy_per_token: bool = False
    """Rank prompts by per-token entropy (each sample's log-prob divided by its length) instead of the
    sequence entropy, so long samples do not dominate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_pool_size < 0:
            raise ValueError(f"prompt_pool_size must be >= 0, got {self.prompt_pool_size}")


def _subset(gens: Generations, rows: Sequence[int]) -> Generations:
    """The generations of the given prompt rows, in that order."""
    return Generations(
        texts=[gens.texts[i] for i in rows],
        token_ids=[gens.token_ids[i] for i in rows],
        logprobs=[gens.logprobs[i] for i in rows],
        finish_reasons=[gens.finish_reasons[i] for i in rows],
        prompt_token_ids=[gens.prompt_token_ids[i] for i in rows] if gens.prompt_token_ids else [],
    )


def _entropy(gens: Generations, per_token: bool) -> torch.Tensor:
    """``(P,)`` Monte-Carlo predictive entropy of each prompt from its samples' log-probs."""
    sums = torch.tensor([[float(sum(lp)) for lp in per_prompt] for per_prompt in gens.logprobs])
    lengths = torch.tensor([[len(lp) for lp in per_prompt] for per_prompt in gens.logprobs]) if per_token else None
    return predictive_entropy(sums, lengths)


class APLAgent(DAPAgent):
    """:class:`DAPAgent` that queries the highest-entropy prompts of a pool (when ``prompt_pool_size > 0``)
    and duels the pair with the largest implicit-reward margin (module docstring)."""

    overlaps_act_and_learn = False  # act() scores candidates with the learner (implicit reward margins)

    def __init__(self, policy: Any, learner: Any, config: APLAgentConfig | DAPAgentConfig | None = None):
        config = config or APLAgentConfig()
        if not isinstance(config, APLAgentConfig):  # a plain DAP config: pair choice only
            config = APLAgentConfig(**{k: getattr(config, k) for k in DAPAgentConfig.__dataclass_fields__})
        super().__init__(policy, learner, config, explorer=None)
        self.config: APLAgentConfig = config
        self._round_metrics: dict[str, float] = {}
        self._chosen: tuple[tuple[str, ...], Generations] | None = None

    @property
    def prompt_pool_size(self) -> int:
        """Read by the loop: > 0 makes it call :meth:`choose_prompts` on a pool of this size each round."""
        return self.config.prompt_pool_size

    def choose_prompts(self, pool: Sequence[str], num_select: int) -> np.ndarray:
        """Indices of the ``num_select`` highest-entropy prompts of ``pool`` (highest first)."""
        if num_select > len(pool):
            raise ValueError(f"cannot choose {num_select} prompts from a pool of {len(pool)}")
        gens = self.policy.generate(list(pool), n=self.config.num_samples, sampling=self.sampling_params())
        entropy = _entropy(gens, self.config.entropy_per_token)
        chosen = select_high_entropy_prompts(entropy, num_select).tolist()
        self._chosen = (tuple(pool[i] for i in chosen), _subset(gens, chosen))
        self._round_metrics["explorer/apl_pool_entropy"] = float(entropy.mean())
        return np.asarray(chosen, dtype=np.int64)

    @torch.no_grad()
    def candidate_logps(self, prompt_ids: Sequence[Sequence[int]], token_ids: Sequence[Sequence[Sequence[int]]]):
        """``(B, K)`` summed response log-probs under the learner and under the reference."""
        k = len(token_ids[0])
        prompts = [p for p in prompt_ids for _ in range(k)]
        responses = [r for per_prompt in token_ids for r in per_prompt]
        input_ids, attention, response_mask = collate_responses(
            prompts, responses, self.pad_token_id, self.config.max_seq_length
        )
        policy = self.learner.policy_logps(input_ids, attention, response_mask=response_mask).sum(-1)  # (B·K,)
        ref = self.learner.ref_logps(input_ids, attention, response_mask=response_mask).sum(-1)
        return policy.reshape(-1, k).cpu(), ref.reshape(-1, k).cpu()

    def act(self, prompts: Sequence[str]) -> tuple[list[str], list[str]]:
        if not prompts:
            raise ValueError("act() needs at least one prompt")
        if self._chosen is not None and self._chosen[0] == tuple(prompts):
            gens = self._chosen[1]  # sampled by choose_prompts this round
        else:
            gens = self.policy.generate(list(prompts), n=self.config.num_samples, sampling=self.sampling_params())
        self._chosen = None
        policy_logps, ref_logps = self.candidate_logps(gens.prompt_token_ids, gens.token_ids)
        indices, margins = implicit_reward_margin_pairs(policy_logps, ref_logps, self.config.dap.beta)
        pairs = indices.numpy().astype(np.int64)
        self._round_metrics.update({
            "explorer/apl_entropy": float(_entropy(gens, self.config.entropy_per_token).mean()),
            "explorer/apl_margin": float(margins.mean()),
        })
        self._pending = {"prompts": list(prompts), "gens": gens, "pairs": pairs}
        a = [gens.texts[i][pairs[i, 0]] for i in range(len(prompts))]
        b = [gens.texts[i][pairs[i, 1]] for i in range(len(prompts))]
        return a, b

    def learn(self) -> dict[str, float]:
        metrics = super().learn()
        metrics.update(self._round_metrics)
        self._round_metrics = {}
        return metrics
