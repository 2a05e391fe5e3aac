r"""XPO agent (Xie et al. 2024, arXiv 2405.21046): online DPO plus the XPO optimism term.

Per pair ``i`` the agent also keeps a response ``ỹ_i ∼ π_ref(·|x_i)`` sampled from the frozen
reference policy at acting time, and minimises (see :mod:`oat_agents.exploration.optimism`)

    L = mean_{i valid} ℓ^DAP_i  +  α · mean_{i valid} log π_θ(ỹ_i | x_i)

(the configured DAP loss — DPO by default — plus the positive-sign bonus that pushes probability mass
away from what the reference would say).

The duel is XPO's (Xie et al. 2024, Alg. 1; oat's ``XPOActor``; TRL's ``XPOTrainer``): per prompt the
oracle compares ``y_i ∼ π_t(·|x_i)`` (one policy sample) with ``ỹ_i ∼ π_ref(·|x_i)`` (one reference
sample): ``act`` returns ``(y, ỹ)`` as ``(responses_a, responses_b)``, the label orders that same pair
into ``(chosen, rejected)`` for the DAP term, and the bonus is ``α·log π_θ(ỹ_i|x_i)`` on exactly the dueled
``ỹ_i`` (kept as :attr:`XPOPair.ref_sample_ids`). One oracle query per prompt, as in passive DPO. The
reference is sampled with its own seed stream (``seed + round + REF_SEED_OFFSET``) so that, while the
policy still equals the reference (round 0), the two samples are not the same draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig, PreferencePair
from oat_agents.algorithms.logprobs import sequence_logprobs
from oat_agents.exploration.optimism import xpo_exploration_term
from oat_agents.policies.base import Generations


@dataclass
class XPOAgentConfig(DAPAgentConfig):
    """:class:`DAPAgentConfig` plus the XPO ``α``. ``num_samples`` is unused: XPO duels one policy sample
    against one reference sample per prompt."""

    xpo_alpha: float = 1e-3
    """Weight α of ``log π(ỹ|x)`` for reference samples ``ỹ`` (0 = plain DAP)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.xpo_alpha >= 0:
            raise ValueError(f"xpo_alpha must be >= 0, got {self.xpo_alpha}")


@dataclass
class XPOPair(PreferencePair):
    """A labelled ``(y, ỹ)`` duel; ``ref_sample_ids`` is the dueled reference sample ``ỹ`` (the bonus's)."""

    ref_sample_ids: list[int] | None = None


REF_SEED_OFFSET = 1_000_003
"""Added to the round's sampling seed for the reference sample ``ỹ`` (a stream distinct from ``y``'s)."""


class XPOAgent(DAPAgent):
    """Online DAP with XPO's exploration term (module docstring).

    Args:
        policy, learner: as :class:`DAPAgent`.
        config: :class:`XPOAgentConfig`.
        ref_policy: a policy holding the frozen reference weights (e.g. ``HFPolicy(copy.deepcopy(ref))``),
            used only to sample ``ỹ``.
    """

    def __init__(self, policy: Any, learner: Any, config: XPOAgentConfig | None = None, ref_policy: Any = None):
        config = config or XPOAgentConfig()
        if not isinstance(config, XPOAgentConfig):
            raise TypeError(f"config must be an XPOAgentConfig, got {type(config).__name__}")
        if ref_policy is None:
            raise ValueError("XPOAgent needs ref_policy (a policy with the reference weights) to sample ỹ")
        super().__init__(policy, learner, config)
        self.config: XPOAgentConfig = config
        self.ref_policy = ref_policy

    def act(self, prompts: Sequence[str]) -> tuple[list[str], list[str]]:
        """Duel one policy sample ``y`` against one reference sample ``ỹ`` per prompt: ``(y, ỹ)``."""
        if not prompts:
            raise ValueError("act() needs at least one prompt")
        sampling = self.sampling_params()
        gens = self.policy.generate(list(prompts), n=1, sampling=sampling)
        ref_sampling = replace(sampling, seed=None if sampling.seed is None else sampling.seed + REF_SEED_OFFSET)
        ref_gens = self.ref_policy.generate(list(prompts), n=1, sampling=ref_sampling)
        if len(gens.texts) != len(prompts) or len(ref_gens.texts) != len(prompts):
            raise RuntimeError("policy/reference returned a different number of prompts than requested")
        self._pending = {"prompts": list(prompts), "gens": gens, "ref_gens": ref_gens}
        return [t[0] for t in gens.texts], [t[0] for t in ref_gens.texts]

    def observe(self, labels: Sequence[float] | np.ndarray) -> int:
        """Store ``(chosen, rejected)`` of each ``(y, ỹ)`` duel (1 = ``y`` preferred) with ``ỹ`` for the bonus."""
        if self._pending is None:
            raise RuntimeError("observe() needs a preceding act()")
        labels = np.asarray(labels, dtype=np.float64)
        gens: Generations = self._pending["gens"]
        ref_gens: Generations = self._pending["ref_gens"]
        n = len(self._pending["prompts"])
        if labels.shape != (n,):
            raise ValueError(f"got {labels.shape[0] if labels.ndim else 'scalar'} labels for {n} duels")
        for i in range(n):
            y_ids, ref_ids = list(gens.token_ids[i][0]), list(ref_gens.token_ids[i][0])
            chosen, rejected = (y_ids, ref_ids) if labels[i] >= 0.5 else (ref_ids, y_ids)
            self.buffer.append(XPOPair(list(gens.prompt_token_ids[i]), chosen, rejected, ref_ids))
        overflow = len(self.buffer) - self.config.buffer_size
        if overflow > 0:
            del self.buffer[:overflow]
        self._pending = None
        self.round += 1
        return n

    def _pair_loss(self, pairs: list[PreferencePair]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super()._pair_loss(pairs)
        if self.config.xpo_alpha == 0:
            return loss, metrics
        with_ref = [p for p in pairs if isinstance(p, XPOPair) and p.ref_sample_ids is not None and not p.is_tie]
        if not with_ref:
            return loss, metrics
        input_ids, attention, response_mask = collate_responses(
            [p.prompt_ids for p in with_ref], [p.ref_sample_ids for p in with_ref], self.pad_token_id,
            self.config.max_seq_length,
        )
        device = self.learner.device
        logps, _, _ = sequence_logprobs(
            self.learner.engine, input_ids.to(device), attention.to(device), response_mask.to(device)
        )
        # mean over valid pairs, the same weighting as the DAP term (ties carry no preference).
        valid = sum(not p.is_tie for p in pairs)
        term = xpo_exploration_term(logps, self.config.xpo_alpha).sum() / max(1, valid)
        metrics["train/xpo_term"] = float(term.detach())
        metrics["train/dpo_term"] = float(loss.detach())
        return loss + term, metrics

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({**state, "buffer": []})
        self.buffer = [XPOPair(**p) for p in state["buffer"]]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["buffer"] = [asdict(p) for p in self.buffer]
        return state
