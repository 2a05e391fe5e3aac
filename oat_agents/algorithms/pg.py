r"""Policy-gradient objectives for LLM RL as pure torch functions (PPO, GRPO, Dr.GRPO, REINFORCE, RLOO).

Layout. A batch holds ``N`` sampled responses. Per-token tensors are ``(N, T)`` and aligned with a bool
``response_mask`` (True at response tokens; any left/right padding, e.g. the ``per_token_logps`` of
:func:`oat_agents.algorithms.logprobs.sequence_logprobs`). Scalar rewards are ``(N,)`` or ``(B, G)``;
group estimators need the ``G`` responses of one prompt **contiguous**: rows ``[g·G, (g+1)·G)`` of the
flattened batch form group ``g``. ``m_{i,t}`` is the response mask, ``|y_i| = Σ_t m_{i,t}``.

Advantages (:func:`compute_advantages`), with ``r_i`` the sequence reward and ``μ_g, σ_g`` the mean and
unbiased (Bessel-corrected, as in TRL) std of the rewards of ``i``'s group:

====================  ==================================================================================
``grpo``              ``A_i = (r_i − μ_g) / (σ_g + ε)`` (arXiv 2402.03300); a constant group has A = 0.
``dr_grpo``           ``A_i = r_i − μ_g`` (Dr.GRPO, arXiv 2503.20783: no std division — the question-level
                      difficulty bias fix; pair it with ``loss_agg="constant"`` — the length-bias fix).
``reinforce``         ``A_i = r_i − b``, ``b = (1/N) Σ_j r_j`` (batch-mean baseline) or ``b = 0``.
``rloo``              ``A_i = r_i − (Σ_{j∈g} r_j − r_i)/(G − 1)`` (leave-one-out baseline, arXiv 2402.14740).
``ppo``               token-level GAE over the response tokens, skipping padding (arXiv 1506.02438):
                      ``δ_t = r_t + γ V_{t'} − V_t``, ``A_t = δ_t + γλ A_{t'}`` where ``t'`` is the next
                      response token (``V_{t'} = A_{t'} = 0`` after the last one: the episode ends);
                      ``r_t`` is the sequence reward at the last response token plus any per-token
                      rewards. Returns ``R_t = A_t + V_t`` are the critic's targets.
====================  ==================================================================================

Sequence advantages are broadcast to every response token. Optional whitening:
``A ← (A − mean_m(A)) / sqrt(var_m(A) + 1e-8)`` over the valid tokens (unbiased variance).

Policy loss (:func:`pg_loss`) per valid token, with ratio ``ρ_t = exp(log π_θ − log π_old)``:

``ℓ_t = w_t · max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε_low, 1 + ε_high))``
(PPO clip, arXiv 1707.06347; ``ε_high > ε_low`` is DAPO's "clip-higher", arXiv 2503.14476), where
``w_t = min(exp(log π_old,t − log μ_t), C)`` (detached) is the truncated importance weight correcting
for the sampler ``μ`` (e.g. vLLM) differing numerically from the learner (``C = tis_cap``; off when
None). Total loss: ``agg(ℓ) + β_KL·agg(k3) − c_H·agg(H) + c_V·L_V`` (the k3 term with ``kl_mode="loss"``
only) with

* ``k3_t = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1`` (Schulman's unbiased, non-negative KL
  estimator) as a loss term (``kl_mode="loss"``: its gradient is that of the KL);
* or, with ``kl_mode="reward"``, the KL as a reward penalty ``r_t −= β_KL·k1_t``,
  ``k1_t = log π_θ,t − log π_ref,t`` on the sampled tokens (detached; summed over tokens for the
  sequence-level estimators), folded in before the advantages. ``k1`` is the estimator whose REINFORCE
  gradient is ``∇KL``: ``∇_θ E_π[Σ_t k1_t] = E_π[(Σ_t k1_t)·∇ log π]`` because ``E_π[∇ log π] = 0``; a
  detached ``k3`` in the reward has no such gradient. (oat's and TRL's PPO shape rewards with ``k1`` too.)
* ``H_t = −Σ_v p_v log p_v`` the per-token entropy of the policy (logged; a bonus when ``c_H > 0``).
* ``L_V = ½ · mean_m max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)`` the clipped value loss.

Aggregation ``agg`` of per-token values ``x_{i,t}`` over the ``N`` rows:

* ``seq_mean_token_mean``: ``mean_i (Σ_t m x / |y_i|)`` over rows with ``|y_i| > 0`` (original GRPO; the
  default of :class:`PGConfig`).
* ``token_mean``: ``Σ_{i,t} m x / Σ_{i,t} m`` (every token weighs the same; DAPO).
* ``constant``: ``Σ_{i,t} m x / (N · C)`` with ``C = constant_normalizer`` (default: the width ``T`` of
  the per-token tensors, i.e. the max generation length when responses are laid out ``(N, max_new_tokens)``)
  — Dr.GRPO's length-unbiased form.

An all-masked batch yields a zero loss that is still connected to the graph (zero gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from oat_agents.algorithms.logprobs import token_entropy

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


# ----------------------------------------------------------------------------------------------------
# Per-token quantities
# ----------------------------------------------------------------------------------------------------


def k1_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimator of ``KL(π_θ ‖ π_ref)`` on samples from ``π_θ``: ``logp − ref`` (unbiased, may
    be negative per token). The estimator to put in a reward: ``E_π[(Σ_t k1_t) ∇ log π] = ∇ KL``."""
    return logprobs - ref_logprobs


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of ``KL(π_θ ‖ π_ref)`` on samples from ``π_θ``:
    ``exp(ref − logp) − (ref − logp) − 1`` (≥ 0, unbiased; http://joschu.net/blog/kl-approx.html).
    The log-ratio is clamped to ±20 so a far-off token cannot overflow ``exp``."""
    log_ratio = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def tis_weights(
    old_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, cap: float | None
) -> torch.Tensor:
    """Truncated importance weights ``w_t = min(exp(log π_old,t − log μ_t), C)``, detached (they
    re-weight the gradient, never receive one). ``cap=None`` gives ``w = 1``."""
    if cap is None:
        return torch.ones_like(old_logprobs).detach()
    log_w = (old_logprobs.detach() - sampler_logprobs.detach()).clamp(max=20.0)
    return torch.exp(log_w).clamp(max=cap)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps_low: float,
    clip_eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token PPO clipped surrogate ``max(−A ρ, −A clip(ρ, 1 − ε_low, 1 + ε_high))`` with
    ``ρ = exp(logp − logp_old)``. Returns ``(loss, ratio, clipped)`` where ``clipped`` (bool) marks the
    tokens whose clipped branch is active (its gradient is zero)."""
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped_obj = -advantages * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    return torch.maximum(unclipped, clipped_obj), ratio, clipped_obj > unclipped


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor | None,
    returns: torch.Tensor,
    mask: torch.Tensor,
    value_clip: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped critic loss ``½ · mean_m max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²)``; with
    ``value_clip=None`` (or no ``old_values``) ``½ · mean_m (V − R)²``. Returns ``(loss, clip_frac)``,
    ``clip_frac`` the fraction of valid tokens where the clipped branch is larger."""
    returns = returns.detach()
    err = (values - returns) ** 2
    if value_clip is None or old_values is None:
        return 0.5 * masked_mean(err, mask), torch.zeros((), device=values.device)
    old_values = old_values.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    err_clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    frac = masked_mean((err_clipped > err).float(), mask)
    return loss, frac.detach()


# ----------------------------------------------------------------------------------------------------
# Advantage estimators
# ----------------------------------------------------------------------------------------------------


def _as_groups(rewards: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View rewards as ``(B, G)``: 2-D input as is (``group_size`` must agree), 1-D split contiguously."""
    if rewards.dim() == 2:
        if group_size is not None and rewards.shape[1] != group_size:
            raise ValueError(f"rewards have groups of {rewards.shape[1]}, but group_size={group_size}")
        return rewards
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (N,) or (B, G), got shape {tuple(rewards.shape)}")
    if group_size is None:
        raise ValueError("1-D rewards need group_size (responses per prompt, contiguous)")
    if rewards.shape[0] % group_size != 0:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def grpo_advantages(
    rewards: torch.Tensor, group_size: int | None = None, eps: float = 1e-6, scale_by_std: bool = True
) -> torch.Tensor:
    """GRPO: ``A_i = (r_i − μ_g) / (σ_g + ε)`` with the group mean and unbiased std (``σ = 0`` for
    ``G = 1``); ``scale_by_std=False`` gives Dr.GRPO's ``A_i = r_i − μ_g``. A group with equal
    rewards gets ``A = 0``. Returns the shape of ``rewards``."""
    groups = _as_groups(rewards, group_size).float()
    centered = groups - groups.mean(-1, keepdim=True)
    if scale_by_std:
        if groups.shape[1] > 1:
            std = groups.std(-1, keepdim=True, correction=1)
        else:
            std = torch.zeros_like(groups[:, :1])
        centered = centered / (std + eps)
    return centered.reshape(rewards.shape)


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """Dr.GRPO: ``A_i = r_i − μ_g`` (no std division). Returns the shape of ``rewards``."""
    return grpo_advantages(rewards, group_size, scale_by_std=False)


def rloo_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """RLOO: ``A_i = r_i − (Σ_{j∈g} r_j − r_i)/(G − 1)`` (each sample's baseline is the mean of the
    other ``G − 1`` samples of its group; ``G ≥ 2``). Returns the shape of ``rewards``."""
    groups = _as_groups(rewards, group_size).float()
    g = groups.shape[1]
    if g < 2:
        raise ValueError("rloo needs at least 2 responses per group")
    baseline = (groups.sum(-1, keepdim=True) - groups) / (g - 1)
    return (groups - baseline).reshape(rewards.shape)


def reinforce_advantages(rewards: torch.Tensor, baseline: bool = True) -> torch.Tensor:
    """REINFORCE: ``A_i = r_i − (1/N) Σ_j r_j`` with the batch-mean baseline, else ``A_i = r_i``."""
    r = rewards.float()
    return r - r.mean() if baseline else r.clone()


def gae_advantages(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level GAE over the valid tokens of each row (padding anywhere is skipped):
    ``δ_t = r_t + γ V_{t'} − V_t``, ``A_t = δ_t + γλ A_{t'}``, ``t'`` the next valid token
    (``V = A = 0`` past the last one). Returns ``(advantages, returns = A + V)``, 0 off the mask."""
    if not (token_rewards.shape == values.shape == mask.shape) or token_rewards.dim() != 2:
        raise ValueError(
            f"token_rewards {tuple(token_rewards.shape)}, values {tuple(values.shape)} and mask "
            f"{tuple(mask.shape)} must all be (N, T)"
        )
    m = mask.bool()
    rewards = token_rewards.detach().float()
    vals = values.detach().float()
    n, t_len = rewards.shape
    next_value = torch.zeros(n, device=rewards.device)
    next_adv = torch.zeros(n, device=rewards.device)
    adv = torch.zeros_like(rewards)
    for t in range(t_len - 1, -1, -1):
        valid = m[:, t]
        delta = rewards[:, t] + gamma * next_value - vals[:, t]
        a_t = delta + gamma * lam * next_adv
        # Padding positions pass the running (next value, next advantage) through unchanged.
        adv[:, t] = torch.where(valid, a_t, torch.zeros_like(a_t))
        next_value = torch.where(valid, vals[:, t], next_value)
        next_adv = torch.where(valid, a_t, next_adv)
    returns = torch.where(m, adv + vals, torch.zeros_like(adv))
    return adv, returns


def place_at_last_token(seq_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(N,)`` → ``(N, T)`` with ``seq_values[i]`` at row ``i``'s last valid token, 0 elsewhere (rows with
    no valid token get nothing)."""
    m = mask.bool()
    out = torch.zeros(m.shape, dtype=torch.float32, device=seq_values.device)
    has = m.any(-1)
    if bool(has.any()):
        last = last_token_index(m[has])
        rows = torch.nonzero(has).squeeze(-1)
        out[rows, last] = seq_values[has].float()
    return out


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` mask → ``(B,)`` long index of each row's LAST non-pad position, for left or right
    padding (e.g. where a critic/reward head reads the state's value). Raises on an all-pad row."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be (B, L), got shape {tuple(attention_mask.shape)}")
    m = attention_mask.bool()
    empty = ~m.any(-1)
    if bool(empty.any()):
        raise ValueError(f"rows {torch.nonzero(empty).squeeze(-1).tolist()} have no non-pad token")
    length = m.shape[1]
    # argmax returns the first True of the flipped row = the last True of the row.
    return (length - 1) - torch.flip(m, dims=[1]).to(torch.uint8).argmax(-1)


def discounted_turn_returns(
    turn_rewards: torch.Tensor | Sequence[float],
    turn_dones: torch.Tensor | Sequence[bool],
    gamma: float,
) -> torch.Tensor:
    """Per-turn discounted returns of multi-turn episodes: ``G_k = r_k + γ (1 − d_k) G_{k+1}``.

    Turns are laid out in time order along the last axis (``(K,)`` for consecutive episodes back to back,
    or ``(E, K)`` one episode per row); ``d_k = True`` marks an episode's last turn so returns never
    leak across episodes. Turns after the final ``done`` (an unfinished episode) are not bootstrapped:
    ``G_{K} = 0``. Returns float32 of the input shape."""
    r = torch.as_tensor(turn_rewards, dtype=torch.float32)
    d = torch.as_tensor(turn_dones).bool()
    if r.shape != d.shape:
        raise ValueError(f"turn_rewards {tuple(r.shape)} and turn_dones {tuple(d.shape)} must match")
    if r.dim() not in (1, 2):
        raise ValueError(f"turn arrays must be (K,) or (E, K), got shape {tuple(r.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = torch.zeros_like(r)
    running = torch.zeros(r.shape[:-1])
    for k in range(r.shape[-1] - 1, -1, -1):
        running = r[..., k] + gamma * (~d[..., k]).float() * running
        out[..., k] = running
    return out


# ----------------------------------------------------------------------------------------------------
# Truncation handling
# ----------------------------------------------------------------------------------------------------


def truncated_from_finish_reasons(finish_reasons: Sequence[str] | Sequence[Sequence[str]]) -> torch.Tensor:
    """``(N,)`` bool, True where the finish reason is ``"length"`` (cut by the token limit, no EOS).
    Accepts a flat list or the ``[prompt][sample]`` nesting of ``Generations.finish_reasons`` (flattened
    prompt-major, matching contiguous groups)."""
    flat: list[str] = []
    for item in finish_reasons:
        if isinstance(item, str):
            flat.append(item)
        else:
            flat.extend(item)
    for i, reason in enumerate(flat):
        if not isinstance(reason, str):
            raise TypeError(f"finish_reasons[{i}] must be a str, got {type(reason).__name__}")
    return torch.tensor([reason == "length" for reason in flat], dtype=torch.bool)


def apply_truncation(
    rewards: torch.Tensor,
    response_mask: torch.Tensor,
    is_truncated: torch.Tensor | Sequence[str] | Sequence[Sequence[str]],
    mode: TruncationMode,
    penalty: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adjust rewards/mask for truncated responses. ``rewards`` ``(N,)``, ``response_mask`` ``(N, T)``,
    ``is_truncated`` ``(N,)`` bool tensor or finish reasons (``"length"`` = truncated, see
    :func:`truncated_from_finish_reasons`). ``"none"``: unchanged; ``"penalty"``: ``r_i := penalty`` where
    truncated; ``"mask"``: row ``i`` of the mask is cleared (excluded from the loss). Returns new
    ``(rewards, response_mask)``; inputs are not modified."""
    if not isinstance(is_truncated, torch.Tensor):
        is_truncated = truncated_from_finish_reasons(is_truncated)
    if is_truncated.shape != rewards.shape or rewards.dim() != 1:
        raise ValueError(
            f"is_truncated {tuple(is_truncated.shape)} must match rewards {tuple(rewards.shape)}, both (N,)"
        )
    trunc = is_truncated.bool().to(rewards.device)
    if mode == "none":
        return rewards.clone(), response_mask.bool().clone()
    if mode == "penalty":
        return torch.where(trunc, torch.full_like(rewards, penalty), rewards), response_mask.bool().clone()
    if mode == "mask":
        return rewards.clone(), response_mask.bool() & ~trunc.unsqueeze(-1)
    raise ValueError(f"truncation mode must be one of {TRUNCATION_MODES}, got {mode!r}")


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------


def _group_metrics(raw: torch.Tensor, group_size: int) -> dict[str, float]:
    groups = raw.view(-1, group_size)
    return {
        "actor/reward_mean": float(raw.mean()),
        "actor/all_zero_groups": float((groups == 0).all(-1).float().mean()),
        "actor/all_one_groups": float((groups == 1).all(-1).float().mean()),
    }


def compute_advantages(
    config: PGConfig,
    rewards: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    values: torch.Tensor | None = None,
    token_rewards: torch.Tensor | None = None,
    logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    is_truncated: torch.Tensor | None = None,
    finish_reasons: Sequence[str] | Sequence[Sequence[str]] | None = None,
) -> Advantages:
    """Advantages for one batch of ``N`` responses (no gradient flows through this function).

    Order of operations: truncation handling → KL reward penalty (``kl_mode="reward"``:
    ``−β_KL·k1_t = −β_KL·(log π_t − log π_ref,t)`` per token) and ``token_rewards`` → estimator → optional
    whitening. For ``ppo`` the per-token terms enter GAE at their tokens and the sequence reward at the last
    valid token; the sequence-level estimators use ``r_i + Σ_t m_{i,t}(token_reward_t − β_KL·k1_t)``.

    Args:
        config: estimator and options.
        rewards: ``(N,)`` or ``(B, G)`` scalar rewards (groups contiguous).
        response_mask: ``(N, T)`` bool, True at response tokens.
        values: ``(N, T)`` critic values ``V(s_t)``, ``s_t`` the state in which response token ``t`` is
            generated (aligned with its log-prob; ppo only, required there).
        token_rewards: ``(N, T)`` extra per-token rewards (optional).
        logprobs, ref_logprobs: ``(N, T)`` behaviour-policy and reference log-probs, at the same
            (sampling) temperature (``kl_mode="reward"``).
        is_truncated: ``(N,)`` bool, True for responses cut by the length limit; or give
            ``finish_reasons`` (``"length"`` = truncated). Required unless ``truncation="none"``.

    Returns:
        :class:`Advantages` with metrics ``actor/reward_mean`` (raw rewards), ``actor/all_zero_groups``,
        ``actor/all_one_groups`` (fraction of groups of ``group_size`` — or of single responses when
        unknown — whose raw rewards are all 0 / all 1), ``actor/truncated_frac`` (when known),
        ``actor/kl_penalty`` (``kl_mode="reward"``: the mean ``k1`` over valid tokens).
    """
    if not isinstance(config, PGConfig):
        raise TypeError(f"config must be a PGConfig, got {type(config).__name__}")
    if rewards.dim() == 2:
        group_size = rewards.shape[1]
        if config.group_size is not None and config.group_size != group_size:
            raise ValueError(
                f"rewards have groups of {group_size}, but config.group_size={config.group_size}"
            )
    elif rewards.dim() == 1:
        group_size = config.group_size
    else:
        raise ValueError(f"rewards must be (N,) or (B, G), got shape {tuple(rewards.shape)}")
    flat = rewards.detach().reshape(-1).float()
    n = flat.shape[0]
    if response_mask.dim() != 2 or response_mask.shape[0] != n:
        raise ValueError(f"response_mask must be ({n}, T), got shape {tuple(response_mask.shape)}")
    mask = response_mask.bool().to(flat.device)
    algo = config.advantage_estimator
    if algo in GROUP_ESTIMATORS and group_size is None:
        raise ValueError(f"{algo} needs group_size (config.group_size or (B, G)-shaped rewards)")
    if group_size is not None and n % group_size != 0:
        raise ValueError(f"{n} rewards do not split into groups of {group_size}")

    metrics = _group_metrics(flat, group_size if group_size is not None else 1)

    if is_truncated is None and finish_reasons is not None:
        is_truncated = truncated_from_finish_reasons(finish_reasons)
    if is_truncated is not None:
        if is_truncated.shape != (n,):
            raise ValueError(f"is_truncated must be ({n},), got shape {tuple(is_truncated.shape)}")
        metrics["actor/truncated_frac"] = float(is_truncated.float().mean())
    if config.truncation != "none":
        if is_truncated is None:
            raise ValueError(f"truncation={config.truncation!r} needs is_truncated or finish_reasons")
        flat, mask = apply_truncation(flat, mask, is_truncated, config.truncation, config.truncation_penalty)

    per_token = torch.zeros(mask.shape, dtype=torch.float32, device=flat.device)
    if token_rewards is not None:
        if token_rewards.shape != mask.shape:
            raise ValueError(f"token_rewards must be {tuple(mask.shape)}, got {tuple(token_rewards.shape)}")
        per_token = per_token + token_rewards.detach().float()
    if config.kl_mode == "reward":
        if logprobs is None or ref_logprobs is None:
            raise ValueError("kl_mode='reward' needs logprobs and ref_logprobs")
        if logprobs.shape != mask.shape or ref_logprobs.shape != mask.shape:
            raise ValueError(f"logprobs and ref_logprobs must be {tuple(mask.shape)}")
        # k1, not k3: a detached reward only gets a REINFORCE gradient, which is ∇KL for k1 alone.
        kl = k1_kl(logprobs.detach().float(), ref_logprobs.detach().float())
        per_token = per_token - config.kl_coef * kl
        metrics["actor/kl_penalty"] = float(masked_mean(kl, mask))
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))

    returns: torch.Tensor | None = None
    if algo == "ppo":
        if values is None:
            raise ValueError("advantage_estimator='ppo' needs values (the critic's V at each response token)")
        if values.shape != mask.shape:
            raise ValueError(f"values must be {tuple(mask.shape)}, got {tuple(values.shape)}")
        token_r = per_token + place_at_last_token(flat, mask)
        adv, returns = gae_advantages(token_r, values, mask, config.gamma, config.lam)
    else:
        seq_r = flat + per_token.sum(-1)
        if algo == "grpo":
            seq_adv = grpo_advantages(seq_r, group_size, eps=config.std_eps)
        elif algo == "dr_grpo":
            seq_adv = dr_grpo_advantages(seq_r, group_size)
        elif algo == "rloo":
            seq_adv = rloo_advantages(seq_r, group_size)
        else:
            seq_adv = reinforce_advantages(seq_r, baseline=config.reinforce_baseline)
        flat = seq_r
        adv = torch.where(mask, seq_adv.unsqueeze(-1).expand_as(per_token), torch.zeros_like(per_token))

    if config.whiten_advantages:
        adv = masked_whiten(adv, mask)
    return Advantages(advantages=adv, returns=returns, loss_mask=mask, rewards=flat, metrics=metrics)


def pg_loss(
    config: PGConfig,
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    old_logprobs: torch.Tensor | None = None,
    sampler_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    old_values: torch.Tensor | None = None,
    returns: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The total policy-gradient loss (module docstring) and its metrics.

    Args:
        config: options.
        logprobs: ``(N, T)`` current learner log-probs of the sampled tokens (with grad).
        advantages: ``(N, T)`` from :func:`compute_advantages` (detached here).
        response_mask: ``(N, T)`` bool — pass ``Advantages.loss_mask``.
        old_logprobs: ``(N, T)`` learner log-probs at the weights that sampled (``π_old``); None = the
            current ones detached (first epoch of on-policy training: ``ρ = 1``, gradient unchanged).
        sampler_logprobs: ``(N, T)`` log-probs reported by the sampler (vLLM/HF); needed when
            ``tis_cap`` is set; also gives ``train/logprob_mismatch``.
        ref_logprobs: ``(N, T)`` reference log-probs (``kl_mode="loss"``; ``train/kl`` when given).
        logits: ``(N, T, V)`` logits whose softmax gave ``logprobs[:, t]`` at position ``t`` (for
            :func:`~oat_agents.algorithms.logprobs.sequence_logprobs`' layout, the model's logits shifted
            right by one), or ``entropy``: ``(N, T)`` per-token entropy; give at most one. Needed when
            ``entropy_coef > 0``.
        values, old_values, returns: ``(N, T)`` critic outputs now / at sampling and GAE returns; when
            ``values`` is given the value loss is added with weight ``vf_coef``.

    Returns:
        ``(loss, metrics)`` with ``train/loss``, ``train/pg_loss``, ``train/clip_frac``,
        ``train/ratio_mean`` always; ``train/tis_weight_mean`` and ``train/logprob_mismatch`` when
        ``sampler_logprobs`` is given; ``train/kl`` with ``ref_logprobs``; ``train/entropy`` with
        logits/entropy; ``train/value_loss`` and ``train/value_clip_frac`` with ``values``. Means are
        over valid tokens.
    """
    if not isinstance(config, PGConfig):
        raise TypeError(f"config must be a PGConfig, got {type(config).__name__}")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be (N, T), got shape {tuple(logprobs.shape)}")
    shape = logprobs.shape
    named = {
        "advantages": advantages,
        "response_mask": response_mask,
        "old_logprobs": old_logprobs,
        "sampler_logprobs": sampler_logprobs,
        "ref_logprobs": ref_logprobs,
        "entropy": entropy,
        "values": values,
        "old_values": old_values,
        "returns": returns,
    }
    for name, t in named.items():
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} must have shape {tuple(shape)} like logprobs, got {tuple(t.shape)}")
    if logits is not None and entropy is not None:
        raise ValueError("give logits or entropy, not both")
    if logits is not None and (logits.dim() != 3 or logits.shape[:2] != shape):
        raise ValueError(f"logits must be ({shape[0]}, {shape[1]}, V), got {tuple(logits.shape)}")
    if config.tis_cap is not None and sampler_logprobs is None:
        raise ValueError("tis_cap is set: pass sampler_logprobs (the sampler's per-token log-probs)")
    if config.kl_mode == "loss" and ref_logprobs is None:
        raise ValueError("kl_mode='loss' needs ref_logprobs")
    if config.entropy_coef > 0 and logits is None and entropy is None:
        raise ValueError("entropy_coef > 0 needs logits or entropy")
    if values is not None and returns is None:
        raise ValueError("values given without returns (the value loss needs GAE returns)")

    mask = response_mask.bool()
    agg_mode, norm = config.loss_agg, config.constant_normalizer
    old = logprobs.detach() if old_logprobs is None else old_logprobs.detach()
    adv = advantages.detach().float()

    per_token, ratio, clipped = clipped_policy_loss(
        logprobs, old, adv, config.clip_eps_low, config.clip_eps_high
    )
    metrics: dict[str, float] = {}
    if sampler_logprobs is not None:
        w = tis_weights(old, sampler_logprobs, config.tis_cap)
        per_token = per_token * w
        metrics["train/tis_weight_mean"] = float(masked_mean(w, mask))
        metrics["train/logprob_mismatch"] = float(masked_mean((old - sampler_logprobs.detach()).abs(), mask))
    pg = aggregate_loss(per_token, mask, agg_mode, norm)
    loss = pg
    metrics["train/pg_loss"] = float(pg.detach())
    metrics["train/clip_frac"] = float(masked_mean(clipped.float(), mask))
    metrics["train/ratio_mean"] = float(masked_mean(ratio.detach(), mask))

    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs.detach())
        metrics["train/kl"] = float(masked_mean(kl.detach(), mask))
        if config.kl_mode == "loss":
            loss = loss + config.kl_coef * aggregate_loss(kl, mask, agg_mode, norm)

    if logits is not None:
        entropy = token_entropy(logits)
    if entropy is not None:
        metrics["train/entropy"] = float(masked_mean(entropy.detach(), mask))
        if config.entropy_coef > 0:
            loss = loss - config.entropy_coef * aggregate_loss(entropy, mask, agg_mode, norm)

    if values is not None:
        assert returns is not None
        v_loss, v_frac = value_loss(values, old_values, returns, mask, config.value_clip)
        loss = loss + config.vf_coef * v_loss
        metrics["train/value_loss"] = float(v_loss.detach())
        metrics["train/value_clip_frac"] = float(v_frac)

    metrics["train/loss"] = float(loss.detach())
    return loss, metrics
