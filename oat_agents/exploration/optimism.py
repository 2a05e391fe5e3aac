r"""XPO exploration term (Xie et al. 2024, "Exploratory Preference Optimization: Harnessing Implicit
Q*-Approximation for Sample-Efficient RLHF", arXiv 2405.21046).

XPO's policy update (their Alg. 1) is

    π_{t+1} = argmin_π  α · Σ_i log π(ỹ_i | x_i)  −  Σ_i log σ( β·log[π(y⁺_i|x_i)/π_ref(y⁺_i|x_i)]
                                                            − β·log[π(y⁻_i|x_i)/π_ref(y⁻_i|x_i)] )

where ``ỹ_i ∼ π_ref(·|x_i)`` is a response sampled from the **reference** policy. The first term is the
optimism bonus: it is *added* to the minimised loss with a **positive** sign, so minimising it lowers
the policy's likelihood of what the reference model would say and pushes probability mass to responses
outside the reference's support (implicit optimism for exploration). TRL's ``XPOTrainer`` computes the
same ``xpo_losses = alpha * model_logprobs_ref_data_sum`` and ``loss = (dpo_losses + xpo_losses).mean()``.

Per pair ``i``: ``ℓ_i = ℓ^DPO_i + α·S^π(ỹ_i)`` with ``S^π(ỹ) = Σ_t log π(ỹ_t | x, ỹ_<t)`` (summed
response log-prob under the trained policy, with gradient). Reduction matches
:func:`oat_agents.algorithms.dap_loss`: ``Σ_i m_i ℓ_i / max(1, Σ_i m_i)``.
"""

from __future__ import annotations

import torch


def xpo_exploration_term(policy_logps_ref_samples: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-pair XPO bonus ``α · log π(ỹ|x)`` (to be **added** to the per-pair DPO loss).

    Args:
        policy_logps_ref_samples: ``(B,)`` summed log-probs under the trained policy of responses
            sampled from the reference policy (keeps its graph).
        alpha: ``α ≥ 0``; 0 recovers DPO.
    """
    if not isinstance(policy_logps_ref_samples, torch.Tensor):
        raise TypeError(f"policy_logps_ref_samples must be a torch.Tensor, got {type(policy_logps_ref_samples)}")
    if policy_logps_ref_samples.dim() != 1:
        raise ValueError(f"policy_logps_ref_samples must be (B,), got {tuple(policy_logps_ref_samples.shape)}")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return alpha * policy_logps_ref_samples


def xpo_loss(
    dpo_losses: torch.Tensor,
    policy_logps_ref_samples: torch.Tensor,
    alpha: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``Σ_i m_i (ℓ^DPO_i + α·log π(ỹ_i|x_i)) / max(1, Σ_i m_i)`` and metrics.

    Args:
        dpo_losses: ``(B,)`` per-pair DAP losses (e.g. :func:`oat_agents.algorithms.dpo_losses`).
        policy_logps_ref_samples: ``(B,)`` ``log π(ỹ_i|x_i)`` for ``ỹ_i ∼ π_ref(·|x_i)``.
        alpha: XPO α (``≥ 0``).
        mask: optional ``(B,)`` bool validity mask (False pairs are skipped).

    Returns:
        ``(loss, metrics)`` with ``train/xpo_term`` and ``train/dpo_term`` (detached masked means).
    """
    term = xpo_exploration_term(policy_logps_ref_samples, alpha)
    if dpo_losses.shape != term.shape:
        raise ValueError(f"dpo_losses {tuple(dpo_losses.shape)} and policy_logps_ref_samples "
                         f"{tuple(term.shape)} must both be (B,)")
    weights = torch.ones_like(dpo_losses) if mask is None else mask.to(dpo_losses.dtype)
    if weights.shape != dpo_losses.shape:
        raise ValueError(f"mask must be (B,) = {tuple(dpo_losses.shape)}, got {tuple(weights.shape)}")
    denom = weights.sum().clamp(min=1.0)
    loss = ((dpo_losses + term) * weights).sum() / denom
    metrics = {
        "train/xpo_term": float((term.detach() * weights).sum() / denom),
        "train/dpo_term": float((dpo_losses.detach() * weights).sum() / denom),
    }
    return loss, metrics
