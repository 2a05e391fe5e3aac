"""Policy-gradient algorithms (oat_agents.algorithms.pg) against hand-computed values (plain python math)."""

from __future__ import annotations

import math

import pytest
import torch

from oat_agents.algorithms.logprobs import token_entropy
from oat_agents.algorithms.pg import (
    PGConfig,
    aggregate_loss,
    apply_truncation,
    clipped_policy_loss,
    compute_advantages,
    discounted_turn_returns,
    dr_grpo_advantages,
    gae_advantages,
    grpo_advantages,
    k3_kl,
    last_token_index,
    masked_whiten,
    pg_loss,
    reinforce_advantages,
    rloo_advantages,
    tis_weights,
    truncated_from_finish_reasons,
    value_loss,
)


def _std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------
# Sequence-level estimators
# ---------------------------------------------------------------------------------------------------


def test_grpo_group_normalisation_flat_and_2d() -> None:
    rewards = [1.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    eps = 1e-6
    g1 = rewards[:3]
    mu, sd = sum(g1) / 3, _std(g1)
    expected = [(r - mu) / (sd + eps) for r in g1] + [0.0, 0.0, 0.0]  # std = 0 group -> A = 0
    out = grpo_advantages(_t(rewards), group_size=3, eps=eps)
    assert out.shape == (6,)
    assert torch.allclose(out, _t(expected), atol=1e-6)
    out2 = grpo_advantages(_t(rewards).view(2, 3), eps=eps)
    assert out2.shape == (2, 3)
    assert torch.allclose(out2.flatten(), _t(expected), atol=1e-6)
    assert torch.isfinite(grpo_advantages(_t([1.0, 1.0]), group_size=1)).all()  # G = 1: A = 0, not nan
    assert grpo_advantages(_t([1.0, 1.0]), group_size=1).abs().sum() == 0


def test_dr_grpo_subtracts_group_mean_only() -> None:
    rewards = [1.0, 0.0, 0.0, 3.0, 1.0, 2.0]
    expected = [1 - 1 / 3, -1 / 3, -1 / 3, 1.0, -1.0, 0.0]
    assert torch.allclose(dr_grpo_advantages(_t(rewards), group_size=3), _t(expected), atol=1e-6)


def test_rloo_leave_one_out_baseline() -> None:
    rewards = [1.0, 0.0, 0.0, 1.0]
    g = 4
    expected = [r - (sum(rewards) - r) / (g - 1) for r in rewards]  # [2/3, -2/3, -2/3, 2/3]
    assert torch.allclose(rloo_advantages(_t(rewards), group_size=g), _t(expected), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(_t([1.0, 2.0]), group_size=1)


def test_reinforce_batch_mean_baseline() -> None:
    rewards = [2.0, 0.0, 1.0]
    assert torch.allclose(reinforce_advantages(_t(rewards)), _t([1.0, -1.0, 0.0]))
    assert torch.allclose(reinforce_advantages(_t(rewards), baseline=False), _t(rewards))


def test_group_layout_errors() -> None:
    with pytest.raises(ValueError, match="group_size"):
        grpo_advantages(_t([1.0, 0.0]))
    with pytest.raises(ValueError, match="groups of 2"):
        grpo_advantages(_t([1.0, 0.0, 1.0]), group_size=2)
    with pytest.raises(ValueError, match="needs group_size"):
        compute_advantages(
            PGConfig(advantage_estimator="grpo"), _t([1.0, 0.0]), torch.ones(2, 3, dtype=torch.bool)
        )


def test_compute_advantages_broadcasts_to_valid_tokens_and_group_metrics() -> None:
    cfg = PGConfig(advantage_estimator="dr_grpo", group_size=2)
    rewards = _t([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    out = compute_advantages(cfg, rewards, mask)
    assert out.returns is None
    exp_seq = [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    for i in range(6):
        for t in range(3):
            assert out.advantages[i, t].item() == pytest.approx(exp_seq[i] if mask[i, t] else 0.0)
    assert out.metrics["actor/reward_mean"] == pytest.approx(0.5)
    assert out.metrics["actor/all_zero_groups"] == pytest.approx(1 / 3)
    assert out.metrics["actor/all_one_groups"] == pytest.approx(1 / 3)
    assert torch.equal(out.loss_mask, mask)


def test_rloo_and_reinforce_via_compute_advantages_2d_rewards() -> None:
    mask = torch.ones(4, 2, dtype=torch.bool)
    rewards = _t([[1.0, 0.0], [0.0, 0.0]])
    out = compute_advantages(PGConfig(advantage_estimator="rloo"), rewards, mask)
    assert torch.allclose(out.advantages[:, 0], _t([1.0, -1.0, 0.0, 0.0]))
    out = compute_advantages(PGConfig(advantage_estimator="reinforce"), rewards, mask)
    assert torch.allclose(out.advantages[:, 1], _t([0.75, -0.25, -0.25, -0.25]))


# ---------------------------------------------------------------------------------------------------
# PPO: GAE, returns, whitening, value loss
# ---------------------------------------------------------------------------------------------------


def _gae_python(rewards: list[float], values: list[float], gamma: float, lam: float) -> tuple[list, list]:
    adv = [0.0] * len(rewards)
    next_v, next_a = 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_v - values[t]
        adv[t] = delta + gamma * lam * next_a
        next_v, next_a = values[t], adv[t]
    return adv, [a + v for a, v in zip(adv, values)]


def test_gae_hand_computed_right_and_left_padding() -> None:
    gamma, lam = 0.9, 0.8
    vals = [0.5, 0.2, 0.1]
    # Hand-unrolled: A2 = 1 - 0.1 = 0.9; A1 = (0.9*0.1 - 0.2) + 0.72*0.9; A0 = (0.9*0.2 - 0.5) + 0.72*A1.
    a2 = 0.9
    a1 = (0.9 * 0.1 - 0.2) + 0.72 * a2
    a0 = (0.9 * 0.2 - 0.5) + 0.72 * a1
    cfg = PGConfig(advantage_estimator="ppo", gamma=gamma, lam=lam)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    values = _t([vals + [9.0], [9.0] + vals])  # the padding values must be ignored
    out = compute_advantages(cfg, _t([1.0, 1.0]), mask, values=values)
    assert torch.allclose(out.advantages[0, :3], _t([a0, a1, a2]), atol=1e-6)
    assert torch.allclose(out.advantages[1, 1:], _t([a0, a1, a2]), atol=1e-6)
    assert out.advantages[0, 3] == 0 and out.advantages[1, 0] == 0
    assert torch.allclose(out.returns[0, :3], _t([a0 + 0.5, a1 + 0.2, a2 + 0.1]), atol=1e-6)


def test_gae_with_per_token_rewards_and_gap_in_mask() -> None:
    gamma, lam = 0.95, 0.9
    r = [0.1, -0.2, 0.3]
    v = [0.4, 0.0, -0.3]
    exp_adv, exp_ret = _gae_python(r, v, gamma, lam)
    mask = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)  # a masked gap is skipped, not a step
    adv, ret = gae_advantages(_t([[0.1, 5.0, -0.2, 0.3]]), _t([[0.4, 7.0, 0.0, -0.3]]), mask, gamma, lam)
    assert torch.allclose(adv[0, [0, 2, 3]], _t(exp_adv), atol=1e-6)
    assert torch.allclose(ret[0, [0, 2, 3]], _t(exp_ret), atol=1e-6)


def test_gae_lambda_one_gives_monte_carlo_returns() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    out = compute_advantages(
        PGConfig(advantage_estimator="ppo", gamma=1.0, lam=1.0),
        _t([2.0]),
        mask,
        values=_t([[0.3, -1.0, 0.7]]),
        token_rewards=_t([[0.5, 0.0, -0.25]]),
    )
    # R_t = sum of rewards from t on: token rewards plus 2.0 at the last token.
    assert torch.allclose(out.returns, _t([[2.25, 1.75, 1.75]]), atol=1e-6)


def test_masked_whiten_hand_computed() -> None:
    x = _t([[1.0, 2.0, 100.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    mu, sd = 2.0, _std([1.0, 2.0, 3.0])
    exp = [[(1 - mu) / math.sqrt(sd**2 + 1e-8), 0.0, 0.0], [(3 - mu) / math.sqrt(sd**2 + 1e-8), 0.0, 0.0]]
    exp[0][1] = (2 - mu) / math.sqrt(sd**2 + 1e-8)
    assert torch.allclose(masked_whiten(x, mask), _t(exp), atol=1e-5)
    cfg = PGConfig(advantage_estimator="reinforce", whiten_advantages=True, reinforce_baseline=False)
    out = compute_advantages(cfg, _t([1.0, 3.0]), _t([[1, 1], [1, 0]]).bool())
    vals = out.advantages[out.loss_mask]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert vals.std().item() == pytest.approx(1.0, abs=1e-4)


def test_value_loss_clipping() -> None:
    values = _t([[1.0, 0.0]]).requires_grad_()
    old = _t([[0.0, 0.0]])
    ret = _t([[2.0, 0.5]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # tok0: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 3.24; tok1: both (0-0.5)^2 = 0.25.
    loss, frac = value_loss(values, old, ret, mask, value_clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.25) / 2)
    assert frac.item() == pytest.approx(0.5)
    loss.backward()
    assert values.grad[0, 0].item() == 0.0  # the clipped branch carries no gradient
    assert values.grad[0, 1].item() == pytest.approx(0.5 * 2 * (0.0 - 0.5) / 2)
    plain, _ = value_loss(_t([[1.0, 0.0]]), old, ret, mask, value_clip=None)
    assert plain.item() == pytest.approx(0.5 * (1.0 + 0.25) / 2)


def test_ppo_pg_loss_includes_value_loss() -> None:
    cfg = PGConfig(advantage_estimator="ppo", vf_coef=0.5, value_clip=None)
    logp = _t([[-1.0, -2.0]]).requires_grad_()
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, m = pg_loss(cfg, logp, _t([[1.0, -1.0]]), mask, values=_t([[1.0, 0.0]]), returns=_t([[2.0, 0.0]]))
    # pg = mean(-A * 1) = 0; value loss = 0.5 * mean((1-2)^2, 0) = 0.25.
    assert m["train/pg_loss"] == pytest.approx(0.0)
    assert m["train/value_loss"] == pytest.approx(0.25)
    assert loss.item() == pytest.approx(0.5 * 0.25)
    with pytest.raises(ValueError, match="needs values"):
        compute_advantages(cfg, _t([1.0]), mask)


# ---------------------------------------------------------------------------------------------------
# Loss pieces
# ---------------------------------------------------------------------------------------------------


def test_k3_kl_hand_computed() -> None:
    logp, ref = -1.0, -1.5
    d = ref - logp
    expected = math.exp(d) - d - 1
    assert k3_kl(_t([logp]), _t([ref])).item() == pytest.approx(expected, rel=1e-6)
    assert k3_kl(_t([-0.3]), _t([-0.3])).item() == 0.0


def test_entropy_from_logits() -> None:
    logits = torch.zeros(1, 2, 4)
    logits[0, 1] = _t([math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)])
    ent = token_entropy(logits)
    h1 = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125))
    assert torch.allclose(ent, _t([[math.log(4), h1]]), atol=1e-6)
    _, m = pg_loss(PGConfig(), _t([[-1.0, -1.0]]), _t([[0.0, 0.0]]), _t([[1, 0]]).bool(), logits=logits)
    assert m["train/entropy"] == pytest.approx(math.log(4), rel=1e-6)


def test_aggregation_modes() -> None:
    x = _t([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert aggregate_loss(x, mask, "token_mean").item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    # Row 2 has no valid token: it is left out of the sequence mean.
    assert aggregate_loss(x, mask, "seq_mean_token_mean").item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate_loss(x, mask, "constant").item() == pytest.approx(10 / (3 * 4))
    assert aggregate_loss(x, mask, "constant", 10).item() == pytest.approx(10 / (3 * 10))
    with pytest.raises(ValueError, match="loss aggregation"):
        aggregate_loss(x, mask, "sum")  # type: ignore[arg-type]


def test_clipped_policy_loss_asymmetric_clip_and_gradients() -> None:
    eps_lo, eps_hi = 0.2, 0.28
    ratios = [1.5, 1.5, 0.5, 0.5, 1.1]
    advs = [1.0, -1.0, 1.0, -1.0, 1.0]
    old = _t([-1.0] * 5)
    logp = (old + torch.log(_t(ratios))).requires_grad_()
    loss, ratio, clipped = clipped_policy_loss(logp, old, _t(advs), eps_lo, eps_hi)
    exp = [
        max(-a * r, -a * min(max(r, 1 - eps_lo), 1 + eps_hi)) for r, a in zip(ratios, advs)
    ]  # [-1.28, 1.5, -0.5, 0.8, -1.1]
    assert torch.allclose(loss, _t(exp), atol=1e-6)
    assert clipped.tolist() == [True, False, False, True, False]
    loss.sum().backward()
    # d(-A ρ)/d logp = -A ρ on unclipped tokens; 0 on clipped ones.
    exp_grad = [0.0, 1.5, -0.5, 0.0, -1.1]
    assert torch.allclose(logp.grad, _t(exp_grad), atol=1e-6)


def test_pg_loss_metrics_and_token_mean_value() -> None:
    cfg = PGConfig(clip_eps_low=0.2, clip_eps_high=0.2)
    old = _t([[-1.0, -1.0, -1.0]])
    logp = old + torch.log(_t([[1.5, 1.0, 0.9]]))
    adv = _t([[1.0, 2.0, -1.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, m = pg_loss(cfg, logp, adv, mask, old_logprobs=old)
    exp = (-1.0 * 1.2 + -2.0 * 1.0 + 1.0 * 0.9) / 3  # first token clipped at 1.2
    assert loss.item() == pytest.approx(exp, rel=1e-6)
    assert m["train/pg_loss"] == pytest.approx(exp, rel=1e-6)
    assert m["train/clip_frac"] == pytest.approx(1 / 3)
    assert m["train/ratio_mean"] == pytest.approx((1.5 + 1.0 + 0.9) / 3, rel=1e-6)
    assert "train/kl" not in m and "train/tis_weight_mean" not in m


def test_truncated_importance_sampling() -> None:
    old = _t([[-1.0, -2.0, -0.5]])
    sampler = _t([[-1.5, -1.0, -0.5]])
    cap = 1.2
    exp_w = [min(math.exp(-1.0 + 1.5), cap), min(math.exp(-2.0 + 1.0), cap), 1.0]
    w = tis_weights(old, sampler, cap)
    assert torch.allclose(w, _t([exp_w]), atol=1e-6)
    assert torch.equal(tis_weights(old, sampler, None), torch.ones(1, 3))

    cfg = PGConfig(tis_cap=cap)
    logp = old.clone().requires_grad_()
    adv = _t([[1.0, 1.0, -2.0]])
    loss, m = pg_loss(
        cfg, logp, adv, torch.ones(1, 3, dtype=torch.bool), old_logprobs=old, sampler_logprobs=sampler
    )
    exp_loss = sum(-a * wt for a, wt in zip([1.0, 1.0, -2.0], exp_w)) / 3
    assert loss.item() == pytest.approx(exp_loss, rel=1e-6)
    assert m["train/tis_weight_mean"] == pytest.approx(sum(exp_w) / 3, rel=1e-6)
    assert m["train/logprob_mismatch"] == pytest.approx((0.5 + 1.0 + 0.0) / 3, rel=1e-6)
    loss.backward()
    assert torch.allclose(logp.grad, _t([[-wt * a / 3 for a, wt in zip([1.0, 1.0, -2.0], exp_w)]]), atol=1e-6)
    with pytest.raises(ValueError, match="sampler_logprobs"):
        pg_loss(cfg, logp, adv, torch.ones(1, 3, dtype=torch.bool))


def test_kl_as_loss_term() -> None:
    cfg = PGConfig(kl_mode="loss", kl_coef=0.1)
    logp = _t([[-1.0, -2.0]])
    ref = _t([[-1.5, -2.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, m = pg_loss(cfg, logp, torch.zeros(1, 2), mask, ref_logprobs=ref)
    k = math.exp(-0.5) + 0.5 - 1
    assert m["train/kl"] == pytest.approx(k / 2, rel=1e-6)
    assert loss.item() == pytest.approx(0.1 * k / 2, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logprobs"):
        pg_loss(cfg, logp, torch.zeros(1, 2), mask)


def test_kl_as_reward_penalty_folds_into_rewards() -> None:
    cfg = PGConfig(advantage_estimator="dr_grpo", group_size=2, kl_mode="reward", kl_coef=0.5)
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    logp = _t([[-1.0, -1.0], [-1.0, -3.0]])
    ref = _t([[-2.0, -1.0], [-1.0, 0.0]])  # row 1 token 1 is padding: ignored
    k = -1.0 - (-2.0)  # k1 = log π − log π_ref of row 0 token 0 (the other valid tokens have k1 = 0)
    r0, r1 = 1.0 - 0.5 * k, 0.0
    out = compute_advantages(cfg, _t([1.0, 0.0]), mask, logprobs=logp, ref_logprobs=ref)
    assert out.rewards.tolist() == pytest.approx([r0, r1], rel=1e-6)
    mu = (r0 + r1) / 2
    assert out.advantages[0, 0].item() == pytest.approx(r0 - mu, rel=1e-6)
    assert out.advantages[1, 0].item() == pytest.approx(r1 - mu, rel=1e-6)
    assert out.metrics["actor/kl_penalty"] == pytest.approx(k / 3, rel=1e-6)
    # PPO: the penalty enters GAE at its own token.
    ppo = PGConfig(advantage_estimator="ppo", gamma=1.0, lam=1.0, kl_mode="reward", kl_coef=0.5)
    out = compute_advantages(
        ppo, _t([1.0, 0.0]), mask, values=torch.zeros(2, 2), logprobs=logp, ref_logprobs=ref
    )
    assert out.returns[0].tolist() == pytest.approx([1.0 - 0.5 * k, 1.0], rel=1e-6)


def test_entropy_bonus_lowers_loss() -> None:
    cfg = PGConfig(entropy_coef=0.01)
    ent = _t([[2.0, 4.0]])
    loss, m = pg_loss(
        cfg, _t([[-1.0, -1.0]]), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), entropy=ent
    )
    assert loss.item() == pytest.approx(-0.01 * 3.0)
    assert m["train/entropy"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="entropy_coef"):
        pg_loss(cfg, _t([[-1.0]]), torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool))


def test_constant_normaliser_drgrpo_is_length_unbiased() -> None:
    cfg = PGConfig(advantage_estimator="dr_grpo", loss_agg="constant", constant_normalizer=8)
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    adv = _t([[1.0] * 4, [1.0, 0.0, 0.0, 0.0]])
    loss, _ = pg_loss(cfg, logp, adv, mask)
    assert loss.item() == pytest.approx(-(4 + 1) / (2 * 8))
    loss.backward()
    # Every valid token gets the same gradient magnitude whatever its sequence length.
    assert torch.allclose(logp.grad[mask], torch.full((5,), -1 / 16))


def test_all_masked_batch_gives_connected_zero() -> None:
    logp = torch.zeros(2, 3, requires_grad=True)
    for agg in ("token_mean", "seq_mean_token_mean", "constant"):
        loss, _ = pg_loss(PGConfig(loss_agg=agg), logp, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
        assert loss.item() == 0.0
        loss.backward()
        assert logp.grad.abs().sum() == 0


# ---------------------------------------------------------------------------------------------------
# Truncation, multi-turn helpers
# ---------------------------------------------------------------------------------------------------


def test_truncation_modes() -> None:
    rewards = _t([1.0, 0.0, 1.0])
    mask = torch.ones(3, 2, dtype=torch.bool)
    trunc = torch.tensor([False, True, True])
    r, m = apply_truncation(rewards, mask, trunc, "penalty", -1.0)
    assert r.tolist() == [1.0, -1.0, -1.0] and bool(m.all())
    r, m = apply_truncation(rewards, mask, trunc, "mask")
    assert r.tolist() == [1.0, 0.0, 1.0] and m.tolist() == [[True, True], [False, False], [False, False]]
    r, m = apply_truncation(rewards, mask, ["stop", "length", "length"], "penalty", -1.0)
    assert r.tolist() == [1.0, -1.0, -1.0]
    r, m = apply_truncation(rewards, mask, trunc, "none")
    assert torch.equal(r, rewards) and bool(m.all())
    assert truncated_from_finish_reasons([["stop", "length"], ["length", "stop"]]).tolist() == [
        False,
        True,
        True,
        False,
    ]


def test_compute_advantages_truncation_via_finish_reasons() -> None:
    mask = torch.ones(4, 2, dtype=torch.bool)
    reasons = [["stop", "length"], ["stop", "stop"]]
    cfg = PGConfig(advantage_estimator="dr_grpo", group_size=2, truncation="penalty", truncation_penalty=-1.0)
    out = compute_advantages(cfg, _t([1.0, 1.0, 0.0, 1.0]), mask, finish_reasons=reasons)
    assert out.advantages[:, 0].tolist() == pytest.approx([1.0, -1.0, -0.5, 0.5])
    assert out.metrics["actor/truncated_frac"] == pytest.approx(0.25)
    assert out.metrics["actor/all_one_groups"] == pytest.approx(0.5)  # raw rewards
    cfg = PGConfig(advantage_estimator="dr_grpo", group_size=2, truncation="mask")
    out = compute_advantages(cfg, _t([1.0, 0.0, 0.0, 1.0]), mask, finish_reasons=reasons)
    assert out.loss_mask[:, 0].tolist() == [True, False, True, True]
    assert out.advantages[:, 0].tolist() == pytest.approx([0.5, 0.0, -0.5, 0.5])
    with pytest.raises(ValueError, match="is_truncated or finish_reasons"):
        compute_advantages(cfg, _t([1.0, 0.0, 0.0, 1.0]), mask)


def test_last_token_index_left_and_right_padding() -> None:
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 1, 4]
    with pytest.raises(ValueError, match="no non-pad"):
        last_token_index(torch.tensor([[1, 0], [0, 0]]))


def test_discounted_turn_returns() -> None:
    r = [1.0, 2.0, 3.0, 10.0, 20.0]
    d = [False, False, True, False, True]
    g = 0.5
    exp = [1 + g * (2 + g * 3), 2 + g * 3, 3.0, 10 + g * 20, 20.0]
    assert discounted_turn_returns(r, d, g).tolist() == pytest.approx(exp)
    two_d = discounted_turn_returns(
        _t([[1.0, 1.0], [0.0, 4.0]]), torch.tensor([[False, True], [False, True]]), 0.9
    )
    assert torch.allclose(two_d, _t([[1.9, 1.0], [3.6, 4.0]]))
    with pytest.raises(ValueError, match="must match"):
        discounted_turn_returns([1.0, 2.0], [True], 0.9)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="advantage_estimator"):
        PGConfig(advantage_estimator="a2c")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kl_coef"):
        PGConfig(kl_mode="loss")
    with pytest.raises(ValueError, match="loss_agg"):
        PGConfig(loss_agg="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rloo"):
        PGConfig(advantage_estimator="rloo", group_size=1)
    with pytest.raises(ValueError, match="tis_cap"):
        PGConfig(tis_cap=0.0)
    with pytest.raises(TypeError, match="PGConfig"):
        pg_loss(object(), _t([[0.0]]), _t([[0.0]]), torch.ones(1, 1, dtype=torch.bool))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        pg_loss(PGConfig(), _t([[0.0, 0.0]]), _t([[0.0]]), torch.ones(1, 2, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------
# The losses drive learning
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        PGConfig(advantage_estimator="grpo", group_size=8),
        PGConfig(advantage_estimator="dr_grpo", group_size=8, loss_agg="constant"),
        PGConfig(advantage_estimator="rloo", group_size=8, loss_agg="seq_mean_token_mean"),
    ],
    ids=["grpo", "dr_grpo", "rloo"],
)
def test_toy_categorical_policy_learns(cfg: PGConfig) -> None:
    gen = torch.Generator().manual_seed(0)
    theta = torch.zeros(4, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.1)
    n = 4 * cfg.group_size
    mask = torch.ones(n, 1, dtype=torch.bool)
    for _ in range(50):
        with torch.no_grad():
            actions = torch.multinomial(torch.softmax(theta, -1), n, replacement=True, generator=gen)
        rewards = (actions == 2).float()
        adv = compute_advantages(cfg, rewards, mask)
        logp = torch.log_softmax(theta, -1)[actions].unsqueeze(-1)
        loss, _ = pg_loss(cfg, logp, adv.advantages, adv.loss_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.softmax(theta, -1)[2].item() > 0.9


def test_grpo_step_on_tiny_llama_with_sequence_logprobs() -> None:
    """Integration with the learner's log-prob layout: (N, L) per-token log-probs and a response mask."""
    from oat_agents.algorithms.logprobs import sequence_logprobs
    from oat_agents.tiny import build_tiny_llama

    model = build_tiny_llama(16, hidden=32, layers=1, heads=2, seed=0)
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, 16, (4, 6), generator=gen)
    attention = torch.ones(4, 6, dtype=torch.long)
    attention[2:, :2] = 0  # left padding on the second group
    response = torch.zeros(4, 6, dtype=torch.bool)
    response[:, 3:] = True
    response[1, 5] = False  # a shorter response
    # token_mean (DAPO's aggregation) so that the unequal response lengths show in the loss value.
    cfg = PGConfig(advantage_estimator="grpo", group_size=2, loss_agg="token_mean")
    _, _, logp = sequence_logprobs(model, input_ids, attention, response)
    adv = compute_advantages(cfg, _t([1.0, 0.0, 0.0, 0.0]), response)
    loss, m = pg_loss(cfg, logp, adv.advantages, adv.loss_mask)
    # On-policy first step: ratio = 1, so the loss is -token_mean(A): group 1 has A = ±0.5/std, std = sqrt(0.5),
    # on 3 and 2 tokens; group 2 (all zero) contributes 0 over its 6 tokens.
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    assert loss.item() == pytest.approx(-(3 * a - 2 * a) / 11, rel=1e-5)
    assert m["train/ratio_mean"] == pytest.approx(1.0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
