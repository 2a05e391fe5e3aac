r"""Active Preference Learning (APL; Muldrew et al. 2024, "Active Preference Learning for Large Language
Models", arXiv 2402.08114): pure acquisition functions over tensors.

APL acquires data in two stages (their Alg. 1):

1. **Prompt selection by predictive entropy.** From a pool of ``P`` prompts, sample ``K`` responses
   each and estimate the policy's predictive entropy ``H(x) = −E_{y∼π(·|x)} log π(y|x)`` by Monte
   Carlo: ``Ĥ(x) = −(1/K) Σ_k log π(y_k|x)`` with ``log π(y_k|x)`` the summed token log-probs of
   sample ``k``. Keep the ``n`` prompts with the **highest** ``Ĥ`` (most uncertain policy). Optionally
   normalise by length (``−(1/K) Σ_k log π(y_k|x) / |y_k|``: per-token entropy) so long samples do not
   dominate.
2. **Pair selection by implicit-reward margin ("preference certainty").** With the DPO implicit reward
   ``r̂(x, y) = β·(log π(y|x) − log π_ref(y|x))``, choose per prompt the pair
   ``(i, j) = argmax_{i<j} |r̂(x, y_i) − r̂(x, y_j)|``. The certainty-only variant instead ranks
   prompts (with two samples each) by that margin and keeps the top ``n`` (:func:`select_prompts_by_margin`).

Ties go to the lowest index everywhere (e.g. all margins are 0 before the first update, when
``π = π_ref``: the pair ``(0, 1)``). Note: oat's reference code averages ``+log π`` (cumulative
log-probs) as its "entropy" and keeps the largest values, i.e. the *lowest*-entropy prompts; here
``Ĥ`` has the textbook sign and the highest-entropy prompts are kept, as the APL paper specifies.
"""

from __future__ import annotations

import torch


def _check_2d(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be (B, K), got shape {tuple(x.shape)}")


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-token log-probs ``(..., T)`` over ``mask`` (bool, same shape) → ``(sums, lengths)``, each
    ``(...)``."""
    if token_logps.shape != mask.shape:
        raise ValueError(f"token_logps {tuple(token_logps.shape)} and mask {tuple(mask.shape)} must match")
    m = mask.bool()
    sums = torch.where(m, token_logps, torch.zeros_like(token_logps)).sum(-1)
    return sums, m.sum(-1)


def predictive_entropy(
    seq_logps: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Monte-Carlo predictive entropy per prompt: ``(B, K)`` sampled-response log-probs → ``(B,)``.

    ``Ĥ_b = −(1/K) Σ_k seq_logps[b, k]``; with ``lengths`` ``(B, K)`` each term is divided by its
    response length first (per-token entropy; zero-length responses count as length 1).
    """
    _check_2d("seq_logps", seq_logps)
    logps = seq_logps.float()
    if lengths is not None:
        if lengths.shape != seq_logps.shape:
            raise ValueError(f"lengths must match seq_logps {tuple(seq_logps.shape)}, got {tuple(lengths.shape)}")
        logps = logps / lengths.float().clamp(min=1.0)
    return -logps.mean(dim=1)


def _top_indices(scores: torch.Tensor, num_select: int, name: str) -> torch.Tensor:
    if scores.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one score per prompt), got shape {tuple(scores.shape)}")
    if not isinstance(num_select, int) or not 0 <= num_select <= scores.shape[0]:
        raise ValueError(f"num_select must be an int in [0, {scores.shape[0]}], got {num_select!r}")
    if bool(torch.isnan(scores).any()):
        raise ValueError(f"{name} contains NaN")
    # Stable descending sort: equal scores keep pool order.
    return torch.sort(scores, descending=True, stable=True).indices[:num_select]


def select_high_entropy_prompts(entropy: torch.Tensor, num_select: int) -> torch.Tensor:
    """Indices of the ``num_select`` highest-entropy prompts of the pool, highest first."""
    return _top_indices(entropy, num_select, "entropy")


def implicit_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO implicit reward ``β·(log π(y|x) − log π_ref(y|x))``, elementwise."""
    if policy_logps.shape != ref_logps.shape:
        raise ValueError(
            f"policy_logps {tuple(policy_logps.shape)} and ref_logps {tuple(ref_logps.shape)} must match"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return beta * (policy_logps.float() - ref_logps.float())


def implicit_reward_margin_pairs(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prompt, the candidate pair with the largest implicit-reward margin.

    Args:
        policy_logps, ref_logps: ``(B, K)`` summed response log-probs under π and π_ref (``K ≥ 2``).
        beta: the DPO β.

    Returns:
        ``(indices (B, 2) long with i < j, margins (B,) = |r̂_i − r̂_j|)``.
    """
    _check_2d("policy_logps", policy_logps)
    rewards = implicit_rewards(policy_logps, ref_logps, beta)
    B, K = rewards.shape
    if K < 2:
        raise ValueError(f"need at least 2 candidates per prompt, got K={K}")
    margins = (rewards.unsqueeze(2) - rewards.unsqueeze(1)).abs()  # (B, K, K)
    upper = torch.ones(K, K, dtype=torch.bool).triu(diagonal=1)
    flat = margins.masked_fill(~upper, float("-inf")).reshape(B, K * K)
    best = flat.argmax(dim=1)
    indices = torch.stack([best // K, best % K], dim=1)
    return indices, flat.gather(1, best.unsqueeze(1)).squeeze(1)


def select_prompts_by_margin(margins: torch.Tensor, num_select: int) -> torch.Tensor:
    """APL certainty-only variant: indices of the ``num_select`` prompts with the largest margin."""
    return _top_indices(margins, num_select, "margins")
