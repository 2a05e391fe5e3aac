r"""Pair selectors: which two of ``K`` candidate responses per prompt to send to the oracle.

Input: ensemble rewards ``R`` of shape ``(E, B, K)`` (members × prompts × candidates, e.g. from
:meth:`~oat_agents.exploration.enn.EpistemicRewardModel.rewards`) and a seeded ``torch.Generator``.
Output: :class:`Selection` with ``indices (B, 2)`` (long; columns = first and second arm) and metrics.

Notation: ``Δ_{b}(i, j) = R[:, b, i] − R[:, b, j]`` (a length-``E`` vector, the preference logit of
``i`` over ``j`` under each member); ``V_b(i, j) = Var_e Δ_b(i, j)`` its epistemic variance (unbiased,
correction 1; ``0`` when ``E = 1``). "A TS draw" samples one member ``e`` uniformly and takes
``argmax_k R[e, b, k]``. Ties in every argmax go to the lowest index.

==============  ======================================================================================
``passive``     two distinct candidates uniformly at random (online DPO); ignores ``R`` except shape.
``ee_ts``       E&E Thompson sampling (SEA Alg. 1, E&E; double TS). Per prompt, a random order of the
                members ``m_1, m_2, ...``: first arm ``i = argmax R[m_1]``; second arm ``argmax R[m_t]``
                for ``t = 2 .. max_tries``, the first one that differs from ``i``. If all clash,
                ``clash_fallback`` decides: ``"second_best"`` (default) takes the best candidate other
                than ``i`` under ``m_2`` (= its second best, since it clashed), ``"random"`` a uniform
                candidate ``≠ i``, ``"none"`` keeps ``j = i`` (the caller should mask the identical
                pair, as oat does without ``exp_allow_second_best``). oat's variant takes the second
                best of ``m_1`` instead; both give a distinct, high-reward second arm.
``bai_ts``      SEA's BAI selector: first arm by one TS draw, second arm
                ``j = argmax_{k ≠ i} V_b(k, i)`` — the candidate whose duel with ``i`` is most uncertain.
``uncertainty`` pure exploration: ``(i, j) = argmax_{i < j} V_b(i, j)``.
``random``      the "random is hard to beat" control (arXiv 2604.02766): an unordered pair drawn
                uniformly among the pairs ``i < j`` the ensemble can tell apart
                (``max_e |R[e, b, i] − R[e, b, j]| > 0``, i.e. distinct features; identical candidates
                carry no preference), in a random order; uniform distinct indices when no pair qualifies.
                It spends the same ``K`` candidates as the uncertainty selectors, without using ``R``'s values.
``ids``         information-directed sampling (Russo & Van Roy 2014/2018, deterministic variant; the
                exploration of arXiv 2603.17378): ``(i, j) = argmin_{i < j, g > 0} Δ_b(i, j)² / g_b(i, j)``
                with the definitions below; arm 0 is the one of higher ensemble-mean reward.
``best_of_n``   for evaluation: column 0 = ``argmax_k mean_e R[e, b, k]`` (the BoN response), column 1 =
                the runner-up by ensemble mean (so the pair can also be dueled: greedy exploitation).
==============  ======================================================================================

Information-directed sampling, exactly. The ensemble is the posterior: member ``e`` uniform over ``E``,
``p_e(i, j) = σ(R[e, b, i] − R[e, b, j])`` the Bradley–Terry probability that ``i ≻ j`` under ``e``, and
``h(p) = −p log p − (1 − p) log(1 − p)`` (nats):

* expected regret of dueling ``(i, j)`` (the E&E regret of DESIGN.md §5 over the ``K`` candidates):
  ``Δ_b(i, j) = (1/E) Σ_e [max_k R[e, b, k] − ½ (R[e, b, i] + R[e, b, j])]  ≥ 0``;
* information gain of its label ``y ~ Bernoulli(p(i, j))``: the mutual information between ``y`` and
  the member, ``g_b(i, j) = h(p̄) − (1/E) Σ_e h(p_e(i, j))`` with ``p̄ = (1/E) Σ_e p_e(i, j)`` (BALD;
  ``≥ 0`` by concavity of ``h``, ``0`` when all members agree, e.g. ``E = 1`` or identical candidates;
  for small disagreements ``g ≈ Var_e p_e / (2 p̄ (1 − p̄))``);
* information ratio ``Ψ_b(i, j) = Δ_b(i, j)² / g_b(i, j)``, minimised over the pairs with
  ``g_b > ids_min_gain`` (default ``1e-9``). Russo & Van Roy's IDS randomises over at most two actions;
  the deterministic argmin is their "deterministic IDS". If no pair has ``g_b > ids_min_gain`` the
  ensemble has nothing left to learn there and the pair of least ``Δ_b`` (pure exploitation) is dueled.
  Ties in the argmin go to the lowest ``(i, j)`` in row-major order.

Metrics (each a float, averaged over prompts):

* ``explorer/ts_agreement`` — probability that two TS draws with distinct members agree,
  ``Σ_k c_k(c_k − 1) / (E(E − 1))`` with ``c_k`` the number of members whose argmax is ``k`` (exact, no
  sampling; ``1`` when ``E = 1``). High agreement = the ensemble is confident about the best response.
* ``explorer/pair_epistemic_var`` — ``V_b(i, j)`` of the chosen pair.
* ``explorer/clash_rate`` — fraction of prompts whose first proposal had ``i = j`` before clash
  handling (``ee_ts``: ``m_2``'s argmax equals ``m_1``'s; the other selectors never propose a clash).
* ``explorer/same_pair_rate`` — fraction of returned pairs with ``i = j`` (only ``clash_fallback="none"``).
* ``ids`` only: ``explorer/ids_regret`` (``Δ_b`` of the chosen pair), ``explorer/ids_info_gain``
  (``g_b`` of the chosen pair, nats) and ``explorer/ids_fallback_rate`` (prompts where no pair had
  ``g_b > ids_min_gain``).

Model rollout (SEA §4.2.3, "mixed preference learning", Dyna-style): :func:`split_model_rollout` picks
which prompts get a pair labelled by the ERM *instead of* the oracle, and :func:`select_confident_pairs`
picks that pair the way oat's ``ModelBasedExplorer`` does (a trust region of confident labels): per prompt
one member ``e`` drawn uniformly, the pair of maximal ``|R[e, b, i] − R[e, b, j]|`` (= its best and worst
candidate), ordered by ``e`` so that the label is ``1`` (arm 0 ≻ arm 1 under ``e``). The alternative,
the exploration selector's pair labelled by :func:`erm_labels` (ensemble mean), labels exactly the pairs
the ensemble is least sure of (for ``bai_ts`` the maximal-variance duel). Those pairs are **not** oracle queries and must not be counted as such. (The
oat reference implementation queried the oracle for them anyway, only to log the model's accuracy,
and then kept the model label; here the oracle is not called for them at all.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

SELECTORS: tuple[str, ...] = ("passive", "ee_ts", "bai_ts", "uncertainty", "random", "ids", "best_of_n")
CLASH_FALLBACKS: tuple[str, ...] = ("second_best", "random", "none")


@dataclass
class Selection:
    """Chosen pairs ``indices (B, 2)`` (long) and ``explorer/*`` metrics."""

    indices: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _check_rewards(rewards: torch.Tensor, min_candidates: int = 2) -> torch.Tensor:
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"rewards must be a torch.Tensor (E, B, K), got {type(rewards).__name__}")
    if rewards.dim() != 3:
        raise ValueError(f"rewards must be (E, B, K), got shape {tuple(rewards.shape)}")
    E, B, K = rewards.shape
    if E < 1 or B < 1:
        raise ValueError(f"rewards needs at least one member and one prompt, got shape {tuple(rewards.shape)}")
    if K < min_candidates:
        raise ValueError(f"need at least {min_candidates} candidates per prompt (K), got K={K}")
    if not rewards.is_floating_point():
        raise TypeError(f"rewards must be floating point, got {rewards.dtype}")
    if bool(torch.isnan(rewards).any()):
        raise ValueError("rewards contain NaN")
    return rewards.detach().float().cpu()


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _var_over_members(x: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over dim 0; zeros when there is a single member."""
    if x.shape[0] < 2:
        return torch.zeros_like(x[0])
    return x.var(dim=0)


def duel_variance(rewards: torch.Tensor) -> torch.Tensor:
    """``V[b, i, j] = Var_e (R[e, b, i] − R[e, b, j])``: ``(E, B, K)`` → ``(B, K, K)`` (symmetric, zero
    diagonal)."""
    diff = rewards.unsqueeze(3) - rewards.unsqueeze(2)  # (E, B, K, K): R_i − R_j
    return _var_over_members(diff)


def pair_epistemic_variance(rewards: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``(B,)``: ``Var_e (R[e, b, i_b] − R[e, b, j_b])`` for the pairs ``indices (B, 2)``."""
    r_i = rewards.gather(2, indices[:, 0].view(1, -1, 1).expand(rewards.shape[0], -1, 1)).squeeze(2)
    r_j = rewards.gather(2, indices[:, 1].view(1, -1, 1).expand(rewards.shape[0], -1, 1)).squeeze(2)
    return _var_over_members(r_i - r_j)


def ts_agreement(rewards: torch.Tensor) -> torch.Tensor:
    """``(B,)``: P(two TS draws with distinct members pick the same candidate), computed exactly."""
    E, _, K = rewards.shape
    if E < 2:
        return torch.ones(rewards.shape[1])
    best = rewards.argmax(dim=2)  # (E, B)
    counts = torch.nn.functional.one_hot(best, K).sum(dim=0).float()  # (B, K)
    return (counts * (counts - 1)).sum(dim=1) / (E * (E - 1))


def _metrics(rewards: torch.Tensor, indices: torch.Tensor, clash: torch.Tensor) -> dict[str, float]:
    return {
        "explorer/ts_agreement": float(ts_agreement(rewards).mean()),
        "explorer/pair_epistemic_var": float(pair_epistemic_variance(rewards, indices).mean()),
        "explorer/clash_rate": float(clash.float().mean()),
        "explorer/same_pair_rate": float((indices[:, 0] == indices[:, 1]).float().mean()),
    }


def _member_orders(E: int, B: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, E)``: an independent uniformly random permutation of the members for every prompt."""
    return torch.rand(B, E, generator=generator).argsort(dim=1)


def _argmax_excluding(scores: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """Row-wise argmax of ``scores (B, K)`` over columns other than ``exclude (B,)``."""
    masked = scores.clone()
    masked[torch.arange(scores.shape[0]), exclude] = float("-inf")
    return masked.argmax(dim=1)


def _random_other(K: int, first: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniform candidate ``≠ first`` per prompt: ``(first + U{1..K−1}) mod K``."""
    offset = torch.randint(1, K, first.shape, generator=generator)
    return (first + offset) % K


def select_passive(rewards: torch.Tensor, generator: torch.Generator) -> Selection:
    """Two distinct candidates uniformly at random per prompt."""
    rewards = _check_rewards(rewards)
    _check_generator(generator)
    _, B, K = rewards.shape
    first = torch.randint(0, K, (B,), generator=generator)
    second = _random_other(K, first, generator)
    indices = torch.stack([first, second], dim=1)
    return Selection(indices, _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool)))


def select_ee_ts(
    rewards: torch.Tensor,
    generator: torch.Generator,
    max_tries: int | None = None,
    clash_fallback: str = "second_best",
) -> Selection:
    """E&E double Thompson sampling (module docstring).

    Args:
        rewards: ``(E, B, K)``.
        generator: seeds the member orders (and the ``"random"`` fallback).
        max_tries: members tried for the two arms in total (first + up to ``max_tries − 1`` resamples);
            default and maximum ``E``; at least 2.
        clash_fallback: ``"second_best"``, ``"random"`` or ``"none"``.
    """
    rewards = _check_rewards(rewards)
    _check_generator(generator)
    if clash_fallback not in CLASH_FALLBACKS:
        raise ValueError(f"clash_fallback must be one of {CLASH_FALLBACKS}, got {clash_fallback!r}")
    E, B, K = rewards.shape
    if E < 2:
        raise ValueError("ee_ts needs at least 2 ensemble members (two Thompson draws)")
    tries = E if max_tries is None else int(max_tries)
    if not 2 <= tries <= E:
        raise ValueError(f"max_tries must be in [2, E={E}], got {max_tries}")
    order = _member_orders(E, B, generator)
    rows = torch.arange(B)
    best = rewards.argmax(dim=2).T  # (B, E): each member's argmax per prompt
    first = best[rows, order[:, 0]]
    second = torch.full((B,), -1, dtype=torch.long)
    init_clash = best[rows, order[:, 1]] == first
    for t in range(1, tries):
        proposal = best[rows, order[:, t]]
        take = (second < 0) & (proposal != first)
        second = torch.where(take, proposal, second)
    unresolved = second < 0
    if bool(unresolved.any()):
        if clash_fallback == "second_best":
            member2 = rewards[order[:, 1], rows]  # (B, K): m_2's rewards for each prompt
            fallback = _argmax_excluding(member2, first)
        elif clash_fallback == "random":
            fallback = _random_other(K, first, generator)
        else:
            fallback = first
        second = torch.where(unresolved, fallback, second)
    indices = torch.stack([first, second], dim=1)
    return Selection(indices, _metrics(rewards, indices, init_clash))


def select_bai_ts(rewards: torch.Tensor, generator: torch.Generator) -> Selection:
    """SEA BAI: first arm by Thompson sampling, second = ``argmax_{k≠i} Var_e(R_k − R_i)``."""
    rewards = _check_rewards(rewards)
    _check_generator(generator)
    E, B, _ = rewards.shape
    rows = torch.arange(B)
    member = torch.randint(0, E, (B,), generator=generator)
    first = rewards[member, rows].argmax(dim=1)
    var = duel_variance(rewards)[rows, :, first]  # (B, K): V(k, first)
    second = _argmax_excluding(var, first)
    indices = torch.stack([first, second], dim=1)
    return Selection(indices, _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool)))


def select_uncertainty(rewards: torch.Tensor, generator: torch.Generator | None = None) -> Selection:
    """The pair ``i < j`` with the largest ``Var_e(R_i − R_j)`` (deterministic; ``generator`` unused)."""
    rewards = _check_rewards(rewards)
    _, B, K = rewards.shape
    var = duel_variance(rewards)
    upper = torch.ones(K, K, dtype=torch.bool).triu(diagonal=1)
    flat = var.masked_fill(~upper, float("-inf")).reshape(B, K * K).argmax(dim=1)
    indices = torch.stack([flat // K, flat % K], dim=1)
    return Selection(indices, _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool)))


def distinguishable_pairs(rewards: torch.Tensor) -> torch.Tensor:
    """``(B, K, K)`` bool: ``max_e |R[e, b, i] − R[e, b, j]| > 0`` (candidates the ensemble tells apart)."""
    diff = rewards.unsqueeze(3) - rewards.unsqueeze(2)  # (E, B, K, K): R_i − R_j
    return diff.abs().amax(dim=0) > 0


def select_random(rewards: torch.Tensor, generator: torch.Generator) -> Selection:
    """The random-pair control: a uniform pair among the distinguishable ones, random order (module docstring)."""
    rewards = _check_rewards(rewards)
    _check_generator(generator)
    _, B, K = rewards.shape
    upper = torch.ones(K, K, dtype=torch.bool).triu(diagonal=1)
    allowed = distinguishable_pairs(rewards) & upper  # (B, K, K)
    none = ~allowed.reshape(B, -1).any(dim=1)  # (B,): every candidate identical under every member
    allowed[none] = upper  # fall back to any distinct pair of indices
    # A uniform draw among the allowed cells: the argmax of i.i.d. uniform scores restricted to them.
    scores = torch.rand(B, K * K, generator=generator).masked_fill(~allowed.reshape(B, -1), -1.0)
    flat = scores.argmax(dim=1)
    i, j = flat // K, flat % K
    swap = torch.rand(B, generator=generator) < 0.5
    indices = torch.stack([torch.where(swap, j, i), torch.where(swap, i, j)], dim=1)
    return Selection(indices, _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool)))


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """``h(p) = −p log p − (1 − p) log(1 − p)`` in nats, with ``h(0) = h(1) = 0``."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def ids_terms(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IDS's expected regret ``Δ[b, i, j]`` and information gain ``g[b, i, j]`` (module docstring), each
    ``(B, K, K)``, symmetric in ``(i, j)``; ``g`` has a zero diagonal."""
    rewards = _check_rewards(rewards)
    best = rewards.amax(dim=2, keepdim=True)  # (E, B, 1): max_k R[e, b, k]
    half_sum = 0.5 * (rewards.unsqueeze(3) + rewards.unsqueeze(2))  # (E, B, K, K): ½ (R_i + R_j)
    regret = (best.unsqueeze(3) - half_sum).mean(dim=0)  # (B, K, K)
    p = torch.sigmoid(rewards.unsqueeze(3) - rewards.unsqueeze(2))  # (E, B, K, K): p_e(i ≻ j)
    gain = _binary_entropy(p.mean(dim=0)) - _binary_entropy(p).mean(dim=0)  # (B, K, K)
    return regret, gain.clamp(min=0.0)


def select_ids(rewards: torch.Tensor, generator: torch.Generator | None = None,
               ids_min_gain: float = 1e-9) -> Selection:
    """Deterministic information-directed sampling: ``argmin_{i<j, g > ids_min_gain} Δ² / g`` (module
    docstring); arm 0 has the higher ensemble-mean reward. ``generator`` is unused."""
    rewards = _check_rewards(rewards)
    if not ids_min_gain >= 0:
        raise ValueError(f"ids_min_gain must be >= 0, got {ids_min_gain}")
    _, B, K = rewards.shape
    regret, gain = ids_terms(rewards)  # (B, K, K) each
    upper = torch.ones(K, K, dtype=torch.bool).triu(diagonal=1)
    informative = (gain > ids_min_gain) & upper  # (B, K, K)
    ratio = regret.pow(2) / gain.clamp(min=torch.finfo(gain.dtype).tiny)
    ratio = ratio.masked_fill(~informative, float("inf"))
    fallback = ~informative.reshape(B, -1).any(dim=1)  # (B,)
    score = torch.where(fallback.view(B, 1, 1), regret.masked_fill(~upper, float("inf")), ratio)
    flat = score.reshape(B, K * K).argmin(dim=1)
    i, j = flat // K, flat % K
    mean = rewards.mean(dim=0)  # (B, K)
    rows = torch.arange(B)
    j_first = mean[rows, j] > mean[rows, i]
    indices = torch.stack([torch.where(j_first, j, i), torch.where(j_first, i, j)], dim=1)
    metrics = _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool))
    metrics.update({
        "explorer/ids_regret": float(regret[rows, i, j].mean()),
        "explorer/ids_info_gain": float(gain[rows, i, j].mean()),
        "explorer/ids_fallback_rate": float(fallback.float().mean()),
    })
    return Selection(indices, metrics)


def select_best_of_n(rewards: torch.Tensor, generator: torch.Generator | None = None) -> Selection:
    """Column 0: argmax of the ensemble-mean reward (BoN); column 1: the runner-up (deterministic)."""
    rewards = _check_rewards(rewards)
    B = rewards.shape[1]
    mean = rewards.mean(dim=0)
    first = mean.argmax(dim=1)
    second = _argmax_excluding(mean, first)
    indices = torch.stack([first, second], dim=1)
    return Selection(indices, _metrics(rewards, indices, torch.zeros(B, dtype=torch.bool)))


_DISPATCH: dict[str, Callable[..., Selection]] = {
    "passive": select_passive,
    "ee_ts": select_ee_ts,
    "bai_ts": select_bai_ts,
    "uncertainty": select_uncertainty,
    "random": select_random,
    "ids": select_ids,
    "best_of_n": select_best_of_n,
}


def select_pairs(method: str, rewards: torch.Tensor, generator: torch.Generator, **opts: Any) -> Selection:
    """Dispatch to ``select_<method>``; ``opts`` go to it (only ``ee_ts`` takes ``max_tries`` and
    ``clash_fallback``, only ``ids`` takes ``ids_min_gain``)."""
    if method not in _DISPATCH:
        raise ValueError(f"unknown selector {method!r}; choose one of {SELECTORS}")
    return _DISPATCH[method](rewards, generator, **opts)


def select_confident_pairs(rewards: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """oat's model-rollout pair (``ModelBasedExplorer._random_select``): per prompt a uniform member ``e``,
    the pair with the largest reward margin under ``e``, chosen first.

    Args:
        rewards: ``(E, B, K)`` ensemble rewards.
        generator: seeded ``torch.Generator`` for the member draws.

    Returns:
        ``(indices (B, 2), members (B,))`` (long): ``indices[b] = (argmax_k R[e_b, b, k],
        argmin_k R[e_b, b, k])``, so arm 0 is preferred under the sampled member ``e_b = members[b]``
        (label ``1``). Ties go to the lowest index (oat breaks them at random); if all ``K`` rewards of
        ``e_b`` are equal, arm 1 is the lowest index other than arm 0 (oat could return ``(k, k)``).
    """
    rewards = _check_rewards(rewards)
    _check_generator(generator)
    E, B, _ = rewards.shape
    members = torch.randint(E, (B,), generator=generator)
    r = rewards[members, torch.arange(B)]  # (B, K): each prompt under its own member
    best = r.argmax(dim=1)
    worst = r.argmin(dim=1)
    same = best == worst  # all K rewards equal under e_b
    if bool(same.any()):
        worst = torch.where(same, (best == 0).long(), worst)
    return torch.stack([best, worst], dim=1).long(), members.long()


def split_model_rollout(
    batch_size: int,
    fraction: float,
    rng: torch.Generator | np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose which prompts of a batch get model-labelled pairs (Dyna-style mixed preference learning).

    Exactly ``round(fraction · batch_size)`` prompts (half-to-even rounding), chosen uniformly without
    replacement, are marked for the ERM label; the rest go to the oracle.

    Returns:
        ``(model_mask, oracle_mask)``: complementary bool arrays of shape ``(batch_size,)``. Only
        ``oracle_mask`` prompts are oracle queries (and count against a query budget).
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    num_model = int(round(fraction * batch_size))
    if isinstance(rng, torch.Generator):
        perm = torch.randperm(batch_size, generator=rng).numpy()
    elif isinstance(rng, np.random.Generator):
        perm = rng.permutation(batch_size)
    else:
        raise TypeError(f"rng must be a torch.Generator or numpy.random.Generator, got {type(rng).__name__}")
    model_mask = np.zeros(batch_size, dtype=bool)
    model_mask[perm[:num_model]] = True
    return model_mask, ~model_mask


def erm_labels(rewards_pair: torch.Tensor, soft: bool = False) -> torch.Tensor:
    """Label pairs by the ensemble: ``rewards_pair (E, B, 2)`` (rewards of arm 0 and arm 1) → ``(B,)``.

    Hard (default): ``1.0`` iff ``mean_e R[e, b, 0] > mean_e R[e, b, 1]`` (ties → 0, like the env's
    ``p > 0.5`` threshold). Soft: ``mean_e σ(R[e, b, 0] − R[e, b, 1])``, the ensemble-mean BT probability.
    """
    if not isinstance(rewards_pair, torch.Tensor) or rewards_pair.dim() != 3 or rewards_pair.shape[2] != 2:
        shape = tuple(rewards_pair.shape) if isinstance(rewards_pair, torch.Tensor) else type(rewards_pair)
        raise ValueError(f"rewards_pair must be a tensor (E, B, 2), got {shape}")
    r = rewards_pair.detach().float()
    diff = r[..., 0] - r[..., 1]  # (E, B)
    if soft:
        return torch.sigmoid(diff).mean(dim=0)
    return (diff.mean(dim=0) > 0).float()


def gather_pair_rewards(rewards: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``(E, B, K)`` rewards and ``(B, 2)`` indices → ``(E, B, 2)`` rewards of the chosen pairs."""
    if indices.dim() != 2 or indices.shape[1] != 2 or indices.shape[0] != rewards.shape[1]:
        raise ValueError(f"indices must be (B, 2) with B={rewards.shape[1]}, got {tuple(indices.shape)}")
    idx = indices.to(rewards.device).long().unsqueeze(0).expand(rewards.shape[0], -1, -1)
    return rewards.gather(2, idx)
