"""APL acquisition functions and the XPO optimism term, against hand-computed values."""

from __future__ import annotations

import itertools

import pytest
import torch

from oat_agents.exploration.optimism import xpo_exploration_term, xpo_loss
from oat_agents.exploration.prompt_entropy import (
    implicit_reward_margin_pairs,
    implicit_rewards,
    predictive_entropy,
    select_high_entropy_prompts,
    select_prompts_by_margin,
    sequence_logps,
)

# ------------------------------------------------------------------------------------------------ APL


def test_sequence_logps_sums_masked_tokens():
    tok = torch.tensor([[[-1.0, -2.0, -9.0], [-0.5, -9.0, -9.0]]])
    mask = torch.tensor([[[True, True, False], [True, False, False]]])
    sums, lengths = sequence_logps(tok, mask)
    assert sums.tolist() == [[-3.0, -0.5]] and lengths.tolist() == [[2, 1]]
    with pytest.raises(ValueError, match="must match"):
        sequence_logps(tok, mask[..., :2])


def test_predictive_entropy_by_hand():
    seq = torch.tensor([[-2.0, -4.0, -6.0], [-1.0, -1.0, -1.0]])
    assert predictive_entropy(seq).tolist() == [4.0, 1.0]  # −mean log π(y|x)
    lengths = torch.tensor([[2, 4, 3], [1, 0, 2]])
    # Per-token: −mean(−1, −1, −2) = 4/3;  −mean(−1, −1 (length clamped to 1), −0.5) = 2.5/3.
    per_token = predictive_entropy(seq, lengths)
    assert torch.allclose(per_token, torch.tensor([4 / 3, 2.5 / 3]))
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        predictive_entropy(torch.zeros(3))


def test_select_high_entropy_prompts_descending_and_stable():
    entropy = torch.tensor([1.0, 5.0, 3.0, 5.0, 0.5])
    assert select_high_entropy_prompts(entropy, 3).tolist() == [1, 3, 2]  # ties keep pool order
    assert select_high_entropy_prompts(entropy, 0).tolist() == []
    with pytest.raises(ValueError, match="num_select"):
        select_high_entropy_prompts(entropy, 6)
    with pytest.raises(ValueError, match="NaN"):
        select_high_entropy_prompts(torch.tensor([float("nan")]), 1)


def test_implicit_reward_margin_pairs_by_hand():
    policy = torch.tensor([[-3.0, -5.0, -4.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-4.0, -4.0, -4.0], [-1.0, -1.0, -1.0]])
    beta = 0.5
    r = implicit_rewards(policy, ref, beta)
    assert r.tolist() == [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]]
    indices, margins = implicit_reward_margin_pairs(policy, ref, beta)
    # Prompt 0: |0.5 − (−0.5)| = 1 is the largest margin. Prompt 1 (π = π_ref): all 0 → first pair (0, 1).
    assert indices.tolist() == [[0, 1], [0, 1]]
    assert margins.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="beta"):
        implicit_rewards(policy, ref, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        implicit_reward_margin_pairs(policy[:, :1], ref[:, :1], beta)


def test_implicit_reward_margin_pairs_brute_force():
    gen = torch.Generator().manual_seed(0)
    policy, ref = torch.randn(25, 6, generator=gen), torch.randn(25, 6, generator=gen)
    indices, margins = implicit_reward_margin_pairs(policy, ref, 0.1)
    r = 0.1 * (policy - ref)
    for b, (i, j) in enumerate(indices.tolist()):
        best = max(itertools.combinations(range(6), 2), key=lambda p: abs(r[b, p[0]] - r[b, p[1]]).item())
        assert (i, j) == best and i < j
        assert margins[b].item() == pytest.approx(abs(r[b, i] - r[b, j]).item(), abs=1e-6)
    top = select_prompts_by_margin(margins, 5)
    assert top.tolist() == torch.argsort(margins, descending=True)[:5].tolist()


# ------------------------------------------------------------------------------------------------ XPO


def test_xpo_term_by_hand():
    logp_ref_samples = torch.tensor([-10.0, -2.0, -4.0])
    assert xpo_exploration_term(logp_ref_samples, 0.5).tolist() == [-5.0, -1.0, -2.0]
    assert xpo_exploration_term(logp_ref_samples, 0.0).tolist() == [0.0, 0.0, 0.0]  # α = 0 is DPO
    with pytest.raises(ValueError, match="alpha"):
        xpo_exploration_term(logp_ref_samples, -1.0)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        xpo_exploration_term(logp_ref_samples.view(3, 1), 1.0)


def test_xpo_loss_value_mask_and_gradient_sign():
    dpo = torch.tensor([0.7, 0.2, 1.0])
    logp = torch.tensor([-10.0, -2.0, -4.0], requires_grad=True)
    loss, metrics = xpo_loss(dpo, logp, alpha=0.1)
    # mean(0.7 − 1.0, 0.2 − 0.2, 1.0 − 0.4) = (−0.3 + 0 + 0.6) / 3 = 0.1
    assert loss.item() == pytest.approx(0.1)
    assert metrics["train/xpo_term"] == pytest.approx(-1.6 / 3)
    assert metrics["train/dpo_term"] == pytest.approx(1.9 / 3)
    loss.backward()
    # Positive gradient on log π(ỹ): gradient descent lowers the likelihood of reference samples.
    assert torch.allclose(logp.grad, torch.full((3,), 0.1 / 3))
    mask = torch.tensor([True, False, True])
    masked, _ = xpo_loss(dpo, logp.detach(), alpha=0.1, mask=mask)
    assert masked.item() == pytest.approx((0.7 - 1.0 + 1.0 - 0.4) / 2)
    # An all-masked batch is 0 (no division by zero).
    empty, _ = xpo_loss(dpo, logp.detach(), alpha=0.1, mask=torch.zeros(3, dtype=torch.bool))
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="must both be"):
        xpo_loss(dpo[:2], logp.detach(), alpha=0.1)


def test_xpo_with_dap_dpo_losses():
    """The term composes with the library's per-pair DPO losses."""
    from oat_agents.algorithms import dpo_losses

    pc, pr = torch.tensor([-5.0, -6.0]), torch.tensor([-7.0, -6.5])
    rc, rr = torch.tensor([-5.5, -6.0]), torch.tensor([-6.5, -6.0])
    per_pair = dpo_losses(pc, pr, rc, rr, beta=0.1)
    h = (pc - rc) - (pr - rr)
    assert torch.allclose(per_pair, -torch.nn.functional.logsigmoid(0.1 * h))
    loss, _ = xpo_loss(per_pair, torch.tensor([-3.0, -1.0]), alpha=0.2)
    assert loss.item() == pytest.approx(float((per_pair + 0.2 * torch.tensor([-3.0, -1.0])).mean()))
