"""The per-token quantities and losses of policy gradient: k1/k3 KL estimators, truncated importance weights, the
clipped policy loss, the clipped value loss and :func:`pg_loss` (the math: :mod:`oat_agents.algorithms.pg`)."""

from __future__ import annotations

import torch

from oat_agents.algorithms.logprobs import token_entropy
from oat_agents.algorithms.pg_common import PGConfig, aggregate_loss, masked_mean

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
