r"""Direct alignment from preferences (DAP) losses: pure functions of sequence log-probabilities.

Notation, per preference pair ``i`` (``w`` = chosen, ``l`` = rejected):

* ``S^π_w = Σ_t log π_θ(y_w,t | x, y_w,<t)`` — summed response log-prob under the policy
  (``S^ref`` under the frozen reference); ``|y|`` — response length in tokens;
  ``A = S / |y|`` — length-averaged log-prob.
* ``h = (S^π_w − S^ref_w) − (S^π_l − S^ref_l)`` — the DPO log-ratio margin.

Losses (each returns per-pair losses; :func:`dap_loss` reduces them):

====================  =======================================================================================
``dpo``               ``−(1−ε)·log σ(β·z) − ε·log σ(−β·z)``, ``z = h + (α/β)(|y_w|−|y_l|) − λ·max(0, S^ref_w − S^π_w)``
                      (DPO, arXiv 2305.18290 Eq. 7; cDPO label smoothing ε; R-DPO arXiv 2403.19159 Eq. 9
                      length term ``+α(|y_w|−|y_l|)`` inside the sigmoid; DPO-Positive arXiv 2402.13228
                      Eq. 3 penalty λ). Sum log-probs.
``ipo``               ``(h_A − 1/(2β))²`` with ``h_A`` the margin of *length-averaged* log-probs
                      (arXiv 2310.12036 Eq. 17, length-averaged as in TRL).
``slic``              ``max(0, 1 − β·h)`` — hinge on the log-ratio margin with margin ``δ = 1/β``
                      (SLiC-HF calibration loss, arXiv 2305.10425, in its reference-normalised DPO-family
                      form as in TRL/oat). Its cross-entropy regulariser is ``sft_weight`` (below).
``simpo``             ``−(1−ε)·log σ(β(A^π_w − A^π_l) − γ) − ε·log σ(−β(A^π_w − A^π_l) + γ)``,
                      ``γ = gamma_beta_ratio · β`` (SimPO, arXiv 2405.14734 Eq. 6; reference-free,
                      length-normalised; the paper tunes γ/β, default 0.5).
``lr_dpo``            LD-DPO (arXiv 2409.06411, "Length Desensitization in DPO"): DPO on
                      length-desensitised log-probs ``Ŝ = Σ_{t≤l_p} log π_t + α_ld·Σ_{t>l_p} log π_t`` with
                      ``l_p = min(|y_w|, |y_l|)`` (the public length), for policy and reference alike;
                      ``α_ld = 1`` recovers DPO. Needs per-token log-probs (:class:`TokenLogps`; the
                      DAP agent builds them from the same forward passes as the sums).
====================  =======================================================================================

SFT mix (any algorithm): ``+ w_sft · (−S^π_w / |y_w|)`` (per-token NLL of the chosen response).

Reduction: ``loss = Σ_i m_i ℓ_i / max(1, Σ_i m_i)`` where ``m_i`` is the validity mask (False for
pairs to skip, e.g. identical responses). An all-masked batch gives ``0`` still connected to the graph
(its gradient is zero), so every data-parallel rank can run backward. :class:`~oat_agents.agents.DAPAgent`
weights its gradient-accumulation micro-batches so that an optimizer step minimises this reduction over
all of the step's pairs (a micro-batch of ``v`` valid pairs out of the step's ``V`` weighs ``v / V``).

Implicit rewards reported in metrics (detached, mean over valid pairs):
``β(S^π − S^ref)`` for dpo/slic/lr_dpo (on the desensitised sums for lr_dpo), ``β(A^π − A^ref)`` for
ipo, ``β·A^π`` for simpo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

LossType = Literal["dpo", "ipo", "slic", "simpo", "lr_dpo"]
LOSS_TYPES: tuple[str, ...] = ("dpo", "ipo", "slic", "simpo", "lr_dpo")
METRIC_KEYS: tuple[str, ...] = (
    "train/loss",
    "train/chosen_reward",
    "train/rejected_reward",
    "train/reward_margin",
    "train/reward_accuracy",
)
"""The metrics :func:`dap_loss` reports (each a mean over valid pairs; 0 when none is valid)."""


@dataclass
class DAPConfig:
    """Options of the DAP losses (see the module docstring for the formulas)."""

    loss_type: LossType = "dpo"
    """Which loss: "dpo" (also cDPO / R-DPO / DPOP through the options below), "ipo", "slic", "simpo" or
    "lr_dpo" (LD-DPO, arXiv 2409.06411)."""
    beta: float = 0.1
    """β: KL-regularisation strength (dpo/lr_dpo), 1/margin for slic, τ for ipo, reward scale for simpo."""
    label_smoothing: float = 0.0
    """ε of conservative DPO (cDPO): probability that a label is flipped; 0 = plain DPO. dpo/lr_dpo/simpo."""
    len_reg_alpha: float = 0.0
    """α of R-DPO: adds α(|y_w| − |y_l|) inside the sigmoid (in reward units); 0 disables. dpo only."""
    dpo_positive_lambda: float = 0.0
    """λ of DPO-Positive: subtracts λ·max(0, S^ref_w − S^π_w) from the margin; 0 disables. dpo only."""
    sft_weight: float = 0.0
    """Weight of the chosen response's per-token NLL added to the loss (SFT mix; SLiC's regulariser)."""
    gamma_beta_ratio: float = 0.5
    """γ/β of SimPO: the target reward margin is ``γ = gamma_beta_ratio · β`` (in reward units), the
    parameterisation of the SimPO paper (arXiv 2405.14734, whose default ratio is 0.5) and of oat. simpo only."""
    ld_alpha: float = 0.5
    """α of LD-DPO: weight of the log-probs of tokens past the public length; 1 = DPO. lr_dpo only."""

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        for name in ("len_reg_alpha", "dpo_positive_lambda", "sft_weight", "gamma_beta_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ld_alpha <= 1.0:
            raise ValueError(f"ld_alpha must be in [0, 1], got {self.ld_alpha}")
        if self.loss_type != "dpo" and (self.len_reg_alpha > 0 or self.dpo_positive_lambda > 0):
            raise ValueError(
                "len_reg_alpha (R-DPO) and dpo_positive_lambda (DPOP) apply to loss_type='dpo' only"
            )
        if self.loss_type in ("ipo", "slic") and self.label_smoothing > 0:
            raise ValueError(f"label_smoothing does not apply to loss_type={self.loss_type!r}")


class TokenLogps(NamedTuple):
    """Per-token response log-probs for LD-DPO, each ``(B, T)``; masks are bool ``(B, T)`` marking
    response tokens (in order; any left/right padding). Chosen and rejected may have different ``T``."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    reference_chosen: torch.Tensor
    reference_rejected: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_mask: torch.Tensor


def _smoothed_sigmoid_loss(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``−(1−ε) log σ(x) − ε log σ(−x)`` (cDPO, https://ericmitchell.ai/cdpo.pdf)."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def dpo_losses(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    len_reg_alpha: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    dpo_positive_lambda: float = 0.0,
) -> torch.Tensor:
    """Per-pair DPO loss with cDPO, R-DPO and DPOP options (summed log-probs):
    ``−(1−ε) log σ(β z) − ε log σ(−β z)``, ``z = h + (α/β)(|y_w|−|y_l|) − λ·max(0, S^ref_w − S^π_w)``."""
    margin = (policy_chosen_logps - reference_chosen_logps) - (
        policy_rejected_logps - reference_rejected_logps
    )
    if len_reg_alpha > 0:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("len_reg_alpha > 0 (R-DPO) needs chosen_lengths and rejected_lengths")
        margin = margin + (len_reg_alpha / beta) * (chosen_lengths - rejected_lengths).to(margin.dtype)
    if dpo_positive_lambda > 0:
        margin = margin - dpo_positive_lambda * torch.relu(reference_chosen_logps - policy_chosen_logps)
    return _smoothed_sigmoid_loss(beta * margin, label_smoothing)


def ipo_losses(
    policy_chosen_avg_logps: torch.Tensor,
    policy_rejected_avg_logps: torch.Tensor,
    reference_chosen_avg_logps: torch.Tensor,
    reference_rejected_avg_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair IPO loss on length-averaged log-probs: ``(h_A − 1/(2β))²``."""
    margin = (policy_chosen_avg_logps - reference_chosen_avg_logps) - (
        policy_rejected_avg_logps - reference_rejected_avg_logps
    )
    return (margin - 1.0 / (2.0 * beta)) ** 2


def slic_losses(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair SLiC hinge loss on summed log-probs: ``max(0, 1 − β·h)``."""
    margin = (policy_chosen_logps - reference_chosen_logps) - (
        policy_rejected_logps - reference_rejected_logps
    )
    return torch.relu(1.0 - beta * margin)


def simpo_losses(
    policy_chosen_avg_logps: torch.Tensor,
    policy_rejected_avg_logps: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair SimPO loss (reference-free, length-normalised):
    ``−(1−ε) log σ(β(A_w − A_l) − γ) − ε log σ(−(β(A_w − A_l) − γ))``."""
    logits = beta * (policy_chosen_avg_logps - policy_rejected_avg_logps) - gamma
    return _smoothed_sigmoid_loss(logits, label_smoothing)


def _response_ranks(mask: torch.Tensor) -> torch.Tensor:
    """1-based index of each response token within its response (0 off the response)."""
    m = mask.to(torch.long)
    return torch.cumsum(m, dim=-1) * m


def length_desensitized_logps(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LD-DPO sequence log-probs (arXiv 2409.06411): with public length ``l_p = min(|y_w|, |y_l|)``,
    ``Ŝ = Σ_{t ≤ l_p} log π_t + α·Σ_{t > l_p} log π_t`` for the chosen and the rejected response.
    Returns ``(Ŝ_w, Ŝ_l)``, each ``(B,)``."""
    chosen_mask = chosen_mask.bool()
    rejected_mask = rejected_mask.bool()
    public = torch.minimum(chosen_mask.sum(-1), rejected_mask.sum(-1)).unsqueeze(-1)

    def weighted(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ranks = _response_ranks(mask)
        weights = torch.where(ranks <= public, 1.0, alpha).to(token_logps.dtype) * mask.to(token_logps.dtype)
        return (token_logps * weights).sum(-1)

    return weighted(chosen_token_logps, chosen_mask), weighted(rejected_token_logps, rejected_mask)


def _check_inputs(tensors: dict[str, torch.Tensor | None]) -> int:
    batch: int | None = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one value per pair), got shape {tuple(t.shape)}")
        if batch is None:
            batch = t.shape[0]
        elif t.shape[0] != batch:
            raise ValueError(f"{name} has {t.shape[0]} pairs, expected {batch}")
    assert batch is not None
    return batch


def dap_loss(
    config: DAPConfig,
    policy_chosen_logps_sum: torch.Tensor,
    policy_rejected_logps_sum: torch.Tensor,
    reference_chosen_logps_sum: torch.Tensor | None,
    reference_rejected_logps_sum: torch.Tensor | None,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    mask: torch.Tensor | None = None,
    token_logps: TokenLogps | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Compute the configured DAP loss over a batch of ``B`` preference pairs.

    Args:
        config: the algorithm and its options.
        policy_chosen_logps_sum, policy_rejected_logps_sum: ``(B,)`` summed response log-probs under the
            policy (with grad).
        reference_chosen_logps_sum, reference_rejected_logps_sum: ``(B,)`` the same under the reference
            model; may be None only for ``simpo``.
        chosen_lengths, rejected_lengths: ``(B,)`` response lengths in tokens (≥ 1 for valid pairs when
            averaging is used: ipo, simpo, sft_weight > 0).
        mask: ``(B,)`` bool, **True = the pair counts**, False = skipped (e.g. identical responses);
            None = all pairs count.
        token_logps: per-token log-probs, required by ``lr_dpo`` only.

    Returns:
        ``(loss, metrics)``: the scalar loss (mean over valid pairs) and float metrics
        ``train/loss``, ``train/chosen_reward``, ``train/rejected_reward``, ``train/reward_margin``,
        ``train/reward_accuracy`` (all means over valid pairs; 0 when none is valid).
    """
    if not isinstance(config, DAPConfig):
        raise TypeError(f"config must be a DAPConfig, got {type(config).__name__}")
    batch = _check_inputs(
        {
            "policy_chosen_logps_sum": policy_chosen_logps_sum,
            "policy_rejected_logps_sum": policy_rejected_logps_sum,
            "reference_chosen_logps_sum": reference_chosen_logps_sum,
            "reference_rejected_logps_sum": reference_rejected_logps_sum,
            "chosen_lengths": chosen_lengths,
            "rejected_lengths": rejected_lengths,
            "mask": mask,
        }
    )
    algo = config.loss_type
    if algo != "simpo" and (reference_chosen_logps_sum is None or reference_rejected_logps_sum is None):
        raise ValueError(f"loss_type={algo!r} needs reference log-probs")
    if mask is None:
        valid = torch.ones(batch, dtype=torch.bool, device=policy_chosen_logps_sum.device)
    else:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = pair counts), got dtype {mask.dtype}")
        valid = mask.to(policy_chosen_logps_sum.device)

    needs_avg = algo in ("ipo", "simpo") or config.sft_weight > 0
    if needs_avg and bool(((chosen_lengths < 1) & valid).any() or ((rejected_lengths < 1) & valid).any()):
        raise ValueError(f"loss_type={algo!r} (or sft_weight > 0) needs lengths >= 1 for every valid pair")
    dtype = policy_chosen_logps_sum.dtype
    # Masked pairs may be empty; clamping keeps the division finite (they are zeroed below anyway).
    len_w = chosen_lengths.to(dtype).clamp(min=1.0)
    len_l = rejected_lengths.to(dtype).clamp(min=1.0)

    beta = config.beta
    if algo == "dpo":
        losses = dpo_losses(
            policy_chosen_logps_sum,
            policy_rejected_logps_sum,
            reference_chosen_logps_sum,
            reference_rejected_logps_sum,
            beta,
            label_smoothing=config.label_smoothing,
            len_reg_alpha=config.len_reg_alpha,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            dpo_positive_lambda=config.dpo_positive_lambda,
        )
        chosen_reward = beta * (policy_chosen_logps_sum - reference_chosen_logps_sum)
        rejected_reward = beta * (policy_rejected_logps_sum - reference_rejected_logps_sum)
    elif algo == "lr_dpo":
        if token_logps is None:
            raise ValueError("loss_type='lr_dpo' needs token_logps (per-token log-probs)")
        pol_w, pol_l = length_desensitized_logps(
            token_logps.policy_chosen,
            token_logps.policy_rejected,
            token_logps.chosen_mask,
            token_logps.rejected_mask,
            config.ld_alpha,
        )
        ref_w, ref_l = length_desensitized_logps(
            token_logps.reference_chosen,
            token_logps.reference_rejected,
            token_logps.chosen_mask,
            token_logps.rejected_mask,
            config.ld_alpha,
        )
        if pol_w.shape[0] != batch:
            raise ValueError(f"token_logps has {pol_w.shape[0]} pairs, expected {batch}")
        losses = dpo_losses(pol_w, pol_l, ref_w, ref_l, beta, label_smoothing=config.label_smoothing)
        chosen_reward = beta * (pol_w - ref_w)
        rejected_reward = beta * (pol_l - ref_l)
    elif algo == "ipo":
        pw, pl = policy_chosen_logps_sum / len_w, policy_rejected_logps_sum / len_l
        rw, rl = reference_chosen_logps_sum / len_w, reference_rejected_logps_sum / len_l
        losses = ipo_losses(pw, pl, rw, rl, beta)
        chosen_reward, rejected_reward = beta * (pw - rw), beta * (pl - rl)
    elif algo == "slic":
        losses = slic_losses(
            policy_chosen_logps_sum,
            policy_rejected_logps_sum,
            reference_chosen_logps_sum,
            reference_rejected_logps_sum,
            beta,
        )
        chosen_reward = beta * (policy_chosen_logps_sum - reference_chosen_logps_sum)
        rejected_reward = beta * (policy_rejected_logps_sum - reference_rejected_logps_sum)
    else:  # simpo
        pw, pl = policy_chosen_logps_sum / len_w, policy_rejected_logps_sum / len_l
        losses = simpo_losses(pw, pl, beta, config.gamma_beta_ratio * beta, config.label_smoothing)
        chosen_reward, rejected_reward = beta * pw, beta * pl

    if config.sft_weight > 0:
        losses = losses + config.sft_weight * (-policy_chosen_logps_sum / len_w)

    # where (not multiply) so a non-finite loss of a skipped pair cannot leak into the sum.
    masked = torch.where(valid, losses, torch.zeros_like(losses))
    n_valid = int(valid.sum().item())
    loss = masked.sum() / max(n_valid, 1)

    with torch.no_grad():
        cr = chosen_reward.detach()[valid]
        rr = rejected_reward.detach()[valid]
        if n_valid:
            metrics = {
                "train/loss": float(loss.detach()),
                "train/chosen_reward": float(cr.mean()),
                "train/rejected_reward": float(rr.mean()),
                "train/reward_margin": float((cr - rr).mean()),
                "train/reward_accuracy": float((cr > rr).to(dtype).mean()),
            }
        else:
            metrics = dict.fromkeys(METRIC_KEYS, 0.0)
    return loss, metrics
