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

The code: :mod:`~oat_agents.algorithms.pg_common` (:class:`PGConfig`, :class:`Advantages`, masked reductions,
aggregation), :mod:`~oat_agents.algorithms.pg_advantages` (estimators, returns, truncation,
:func:`compute_advantages`) and :mod:`~oat_agents.algorithms.pg_losses` (KL estimators, TIS, clipped policy and
value losses, :func:`pg_loss`); this module is their one import.
"""

from oat_agents.algorithms.pg_advantages import (
    apply_truncation,
    compute_advantages,
    discounted_turn_returns,
    dr_grpo_advantages,
    gae_advantages,
    grpo_advantages,
    last_token_index,
    place_at_last_token,
    reinforce_advantages,
    rloo_advantages,
    truncated_from_finish_reasons,
)
from oat_agents.algorithms.pg_common import (
    ADVANTAGE_ESTIMATORS,
    GROUP_ESTIMATORS,
    KL_MODES,
    LOSS_AGGS,
    TRUNCATION_MODES,
    AdvantageEstimator,
    Advantages,
    KLMode,
    LossAgg,
    PGConfig,
    TruncationMode,
    aggregate_loss,
    masked_mean,
    masked_sum,
    masked_whiten,
)
from oat_agents.algorithms.pg_losses import (
    clipped_policy_loss,
    k1_kl,
    k3_kl,
    pg_loss,
    tis_weights,
    value_loss,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageEstimator",
    "Advantages",
    "GROUP_ESTIMATORS",
    "KLMode",
    "KL_MODES",
    "LOSS_AGGS",
    "LossAgg",
    "PGConfig",
    "TRUNCATION_MODES",
    "TruncationMode",
    "aggregate_loss",
    "apply_truncation",
    "clipped_policy_loss",
    "compute_advantages",
    "discounted_turn_returns",
    "dr_grpo_advantages",
    "gae_advantages",
    "grpo_advantages",
    "k1_kl",
    "k3_kl",
    "last_token_index",
    "masked_mean",
    "masked_sum",
    "masked_whiten",
    "pg_loss",
    "place_at_last_token",
    "reinforce_advantages",
    "rloo_advantages",
    "tis_weights",
    "truncated_from_finish_reasons",
    "value_loss",
]
