"""Advantages of policy gradient: the group, REINFORCE and GAE estimators, discounted turn returns, truncation
handling and :func:`compute_advantages` (the math: :mod:`oat_agents.algorithms.pg`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oat_agents.algorithms.pg_common import (
    GROUP_ESTIMATORS,
    TRUNCATION_MODES,
    Advantages,
    PGConfig,
    TruncationMode,
    masked_mean,
    masked_whiten,
)
from oat_agents.algorithms.pg_losses import k1_kl

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


