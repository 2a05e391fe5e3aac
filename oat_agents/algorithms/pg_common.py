"""The policy-gradient objectives' options and shared pieces: :class:`PGConfig`, :class:`Advantages`, the
masked reductions and the loss aggregation (the math: :mod:`oat_agents.algorithms.pg`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

AdvantageEstimator = Literal["ppo", "grpo", "dr_grpo", "reinforce", "rloo"]
LossAgg = Literal["token_mean", "seq_mean_token_mean", "constant"]
KLMode = Literal["loss", "reward", "none"]
TruncationMode = Literal["none", "penalty", "mask"]

ADVANTAGE_ESTIMATORS: tuple[str, ...] = ("ppo", "grpo", "dr_grpo", "reinforce", "rloo")
LOSS_AGGS: tuple[str, ...] = ("token_mean", "seq_mean_token_mean", "constant")
KL_MODES: tuple[str, ...] = ("loss", "reward", "none")
TRUNCATION_MODES: tuple[str, ...] = ("none", "penalty", "mask")
GROUP_ESTIMATORS: tuple[str, ...] = ("grpo", "dr_grpo", "rloo")


@dataclass
class PGConfig:
    """Options of the policy-gradient objectives (formulas in the module docstring)."""

    advantage_estimator: AdvantageEstimator = "grpo"
    """Advantage estimator: "ppo" (GAE with a learned critic), "grpo", "dr_grpo", "reinforce" or "rloo"."""
    group_size: int | None = None
    """G, responses per prompt (contiguous rows). Needed by grpo/dr_grpo/rloo when rewards are 1-D
    (inferred from (B, G) rewards); also groups the actor/all_*_groups metrics. None = infer / 1."""
    gamma: float = 1.0
    """γ: discount between consecutive response tokens (ppo/GAE). 1 = undiscounted (usual for LLMs)."""
    lam: float = 0.95
    """λ: GAE bias/variance trade-off (ppo). 1 = Monte-Carlo returns minus V, 0 = one-step TD."""
    clip_eps_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − clip_eps_low."""
    clip_eps_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + clip_eps_high (> clip_eps_low = DAPO clip-higher, e.g. 0.28)."""
    tis_cap: float | None = None
    """C: cap of the truncated importance weight min(exp(logp_old − logp_sampler), C) that corrects the
    sampler/learner mismatch; None = no correction (w = 1)."""
    loss_agg: LossAgg = "seq_mean_token_mean"
    """How per-token losses are reduced, which is what tells the papers' losses apart:
    "seq_mean_token_mean" (each response's token mean, then the mean over responses: GRPO, arXiv
    2402.03300 Eq. 3; the default, so that the default ``grpo`` estimator is the GRPO paper's loss),
    "token_mean" (every token of the batch weighs the same: DAPO's token-level loss, arXiv 2503.14476
    Eq. 8) or "constant" (the token sum over ``N · C``, a constant normaliser: Dr.GRPO, arXiv 2503.20783)."""
    constant_normalizer: float | None = None
    """C of loss_agg="constant" (Dr.GRPO): sum / (N · C). None = the per-token tensors' width T, which is
    the max generation length when responses are laid out (N, max_new_tokens)."""
    kl_coef: float = 0.0
    """β_KL: weight of the KL to the reference policy (k3 as a loss term, k1 as a per-token reward penalty)."""
    kl_mode: KLMode = "none"
    """Where the KL goes: "loss" (β_KL·agg(k3) added to the loss), "reward" (−β_KL·k1 per token folded
    into the rewards, detached), "none"."""
    entropy_coef: float = 0.0
    """c_H: entropy bonus weight (loss −= c_H · agg(H)); entropy is logged whenever it is given."""
    truncation: TruncationMode = "none"
    """Responses cut by the length limit (no EOS): "none" (keep), "penalty" (reward := truncation_penalty),
    "mask" (the response is excluded from the loss; its reward still enters its group's baseline)."""
    truncation_penalty: float = 0.0
    """The reward given to truncated responses when truncation="penalty"."""
    whiten_advantages: bool = False
    """Whiten advantages over the valid tokens (masked mean/std) after estimation; usual for ppo."""
    value_clip: float | None = 0.2
    """c: the value prediction may move at most c from the old value before the loss stops pulling it
    (PPO value clipping); None = unclipped squared error."""
    vf_coef: float = 0.5
    """c_V: weight of the value loss in the total loss (ppo with a critic)."""
    std_eps: float = 1e-6
    """ε of the grpo std division (A = (r − μ)/(σ + ε))."""
    reinforce_baseline: bool = True
    """reinforce only: subtract the batch-mean reward as a baseline (False = raw rewards)."""

    def __post_init__(self) -> None:
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"advantage_estimator must be one of {ADVANTAGE_ESTIMATORS}, got {self.advantage_estimator!r}"
            )
        if self.loss_agg not in LOSS_AGGS:
            raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, got {self.loss_agg!r}")
        if self.kl_mode not in KL_MODES:
            raise ValueError(f"kl_mode must be one of {KL_MODES}, got {self.kl_mode!r}")
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {self.truncation!r}")
        if self.group_size is not None and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"group_size must be an int >= 1 or None, got {self.group_size!r}")
        if self.advantage_estimator == "rloo" and self.group_size is not None and self.group_size < 2:
            raise ValueError("rloo needs group_size >= 2 (the leave-one-out baseline divides by G − 1)")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if not 0.0 <= self.clip_eps_low < 1.0:
            raise ValueError(f"clip_eps_low must be in [0, 1), got {self.clip_eps_low}")
        if not self.clip_eps_high >= 0.0:
            raise ValueError(f"clip_eps_high must be >= 0, got {self.clip_eps_high}")
        if self.tis_cap is not None and not self.tis_cap > 0:
            raise ValueError(f"tis_cap must be > 0 or None, got {self.tis_cap}")
        if self.constant_normalizer is not None and not self.constant_normalizer > 0:
            raise ValueError(f"constant_normalizer must be > 0 or None, got {self.constant_normalizer}")
        for name in ("kl_coef", "entropy_coef", "vf_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.kl_mode != "none" and self.kl_coef == 0:
            raise ValueError(f"kl_mode={self.kl_mode!r} needs kl_coef > 0 (or set kl_mode='none')")
        if self.value_clip is not None and not self.value_clip > 0:
            raise ValueError(f"value_clip must be > 0 or None, got {self.value_clip}")
        if not self.std_eps >= 0:
            raise ValueError(f"std_eps must be >= 0, got {self.std_eps}")


class Advantages(NamedTuple):
    """Output of :func:`compute_advantages`.

    ``advantages`` ``(N, T)`` (0 off ``loss_mask``); ``returns`` ``(N, T)`` critic targets (ppo, else
    None); ``loss_mask`` ``(N, T)`` bool — the response mask with excluded (truncated, mode "mask") rows
    cleared: pass it to :func:`pg_loss`; ``rewards`` ``(N,)`` the scalar rewards after the truncation
    penalty (sequence-level estimators: plus the summed per-token terms, i.e. what they normalised; ppo:
    the reward placed at the last token); ``metrics`` float ``actor/*`` metrics.
    """

    advantages: torch.Tensor
    returns: torch.Tensor | None
    loss_mask: torch.Tensor
    rewards: torch.Tensor
    metrics: dict[str, float]


# ----------------------------------------------------------------------------------------------------
# Masked reductions
# ----------------------------------------------------------------------------------------------------


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``Σ m x`` (all elements or along ``dim``); ``where`` keeps non-finite values off the mask out."""
    x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``Σ m x / max(Σ m, 1)``: 0 (connected to the graph) when nothing is valid."""
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``(x − μ_m) / sqrt(var_m + 1e-8)`` with the masked mean and unbiased masked variance (TRL's
    ``masked_whiten``); ``shift_mean=False`` adds ``μ_m`` back. Off-mask entries become 0. With fewer
    than 2 valid entries the variance is taken as 0."""
    m = mask.bool()
    n = int(m.sum())
    mean = masked_mean(x, m)
    centered = x - mean
    if n >= 2:
        var = masked_sum(centered**2, m) / (n - 1)
    else:
        var = torch.zeros((), dtype=x.dtype, device=x.device)
    out = centered * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros_like(out))


def aggregate_loss(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: LossAgg,
    constant_normalizer: float | None = None,
) -> torch.Tensor:
    """Reduce per-token values ``(N, T)`` to a scalar with one of the modes of the module docstring:
    ``token_mean`` ``Σ m x / Σ m``; ``seq_mean_token_mean`` ``mean_i(Σ_t m x / |y_i|)`` over non-empty
    rows; ``constant`` ``Σ m x / (N · C)`` with ``C = constant_normalizer`` or ``T`` when None."""
    if per_token.dim() != 2 or mask.shape != per_token.shape:
        raise ValueError(
            f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must both be (N, T)"
        )
    m = mask.bool()
    if mode == "token_mean":
        return masked_mean(per_token, m)
    if mode == "seq_mean_token_mean":
        seq = masked_mean(per_token, m, dim=-1)
        return masked_mean(seq, m.any(-1))
    if mode == "constant":
        norm = float(per_token.shape[-1]) if constant_normalizer is None else float(constant_normalizer)
        if not norm > 0:
            raise ValueError(f"constant_normalizer must be > 0, got {norm}")
        return masked_sum(per_token, m) / (per_token.shape[0] * norm)
    raise ValueError(f"loss aggregation must be one of {LOSS_AGGS}, got {mode!r}")
