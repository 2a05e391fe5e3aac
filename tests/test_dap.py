"""DAP losses against values computed by hand with plain ``math`` (not the code under test)."""

from __future__ import annotations

import math

import pytest
import torch

from oat_agents.algorithms.dap import (
    DAPConfig,
    TokenLogps,
    dap_loss,
    length_desensitized_logps,
)
from oat_agents.algorithms.logprobs import sequence_logprobs


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# Two pairs: summed log-probs and lengths.
PW = [-10.0, -6.0]  # policy chosen
PL = [-12.0, -5.0]  # policy rejected
RW = [-11.0, -5.5]  # reference chosen
RL = [-11.5, -5.5]  # reference rejected
LW = [4, 3]
LL = [2, 5]


def t(values, dtype=torch.float64, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


def run(config, mask=None, grad=False, **kw):
    pw, pl = t(PW, grad=grad), t(PL, grad=grad)
    loss, metrics = dap_loss(
        config, pw, pl, t(RW), t(RL), torch.tensor(LW), torch.tensor(LL), mask=mask, **kw
    )
    return loss, metrics, pw, pl


def margins():
    return [(PW[i] - RW[i]) - (PL[i] - RL[i]) for i in range(2)]  # [1.5, -1.0]


def test_dpo_matches_hand_computation():
    beta = 0.1
    loss, metrics, _, _ = run(DAPConfig(loss_type="dpo", beta=beta))
    expected = [-log_sigmoid(beta * h) for h in margins()]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)
    cw = [beta * (PW[i] - RW[i]) for i in range(2)]
    cl = [beta * (PL[i] - RL[i]) for i in range(2)]
    assert metrics["train/chosen_reward"] == pytest.approx(sum(cw) / 2)
    assert metrics["train/rejected_reward"] == pytest.approx(sum(cl) / 2)
    assert metrics["train/reward_margin"] == pytest.approx((cw[0] - cl[0] + cw[1] - cl[1]) / 2)
    assert metrics["train/reward_accuracy"] == pytest.approx(0.5)  # pair 0 right, pair 1 wrong
    assert metrics["train/loss"] == pytest.approx(loss.item())


def test_cdpo_label_smoothing():
    beta, eps = 0.5, 0.2
    loss, _, _, _ = run(DAPConfig(loss_type="dpo", beta=beta, label_smoothing=eps))
    expected = [-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h) for h in margins()]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_rdpo_length_term():
    beta, alpha = 0.1, 0.05
    loss, _, _, _ = run(DAPConfig(loss_type="dpo", beta=beta, len_reg_alpha=alpha))
    # R-DPO: -log sigma(beta*h + alpha*(|y_w| - |y_l|)).
    expected = [-log_sigmoid(beta * h + alpha * (LW[i] - LL[i])) for i, h in enumerate(margins())]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_dpo_positive_penalty():
    beta, lam = 0.1, 2.0
    loss, _, _, _ = run(DAPConfig(loss_type="dpo", beta=beta, dpo_positive_lambda=lam))
    # Pair 0: policy chosen above ref (no penalty); pair 1: 0.5 below ref -> penalty 2 * 0.5 = 1.
    penalties = [max(0.0, RW[i] - PW[i]) for i in range(2)]
    assert penalties == [0.0, 0.5]
    expected = [-log_sigmoid(beta * (h - lam * penalties[i])) for i, h in enumerate(margins())]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_sft_mix_adds_per_token_nll():
    beta, w = 0.1, 0.3
    loss, _, _, _ = run(DAPConfig(loss_type="dpo", beta=beta, sft_weight=w))
    expected = [-log_sigmoid(beta * h) + w * (-PW[i] / LW[i]) for i, h in enumerate(margins())]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_ipo_uses_length_averaged_logps():
    beta = 0.5
    loss, metrics, _, _ = run(DAPConfig(loss_type="ipo", beta=beta))
    expected = []
    for i in range(2):
        h = (PW[i] / LW[i] - RW[i] / LW[i]) - (PL[i] / LL[i] - RL[i] / LL[i])
        expected.append((h - 1 / (2 * beta)) ** 2)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert metrics["train/chosen_reward"] == pytest.approx(
        beta * ((PW[0] - RW[0]) / LW[0] + (PW[1] - RW[1]) / LW[1]) / 2
    )


def test_slic_hinge():
    beta = 1.0
    loss, _, _, _ = run(DAPConfig(loss_type="slic", beta=beta))
    expected = [max(0.0, 1 - beta * h) for h in margins()]  # [0, 2]
    assert expected == [0.0, 2.0]
    assert loss.item() == pytest.approx(1.0, rel=1e-12)


def test_slic_with_regulariser():
    beta, w = 1.0, 0.1
    loss, _, _, _ = run(DAPConfig(loss_type="slic", beta=beta, sft_weight=w))
    expected = [max(0.0, 1 - beta * h) + w * (-PW[i] / LW[i]) for i, h in enumerate(margins())]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def test_simpo_reference_free_and_length_normalised():
    beta, gamma = 2.0, 1.0
    pw, pl = t(PW), t(PL)
    loss, metrics = dap_loss(
        DAPConfig(loss_type="simpo", beta=beta, gamma_beta_ratio=gamma / beta),
        pw,
        pl,
        None,
        None,
        torch.tensor(LW),
        torch.tensor(LL),
    )
    expected = [-log_sigmoid(beta * (PW[i] / LW[i] - PL[i] / LL[i]) - gamma) for i in range(2)]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert metrics["train/chosen_reward"] == pytest.approx(beta * (PW[0] / LW[0] + PW[1] / LW[1]) / 2)


def test_simpo_label_smoothing():
    beta, gamma, eps = 2.0, 1.0, 0.1
    loss, _, _, _ = run(DAPConfig(loss_type="simpo", beta=beta, gamma_beta_ratio=gamma / beta, label_smoothing=eps))
    expected = []
    for i in range(2):
        z = beta * (PW[i] / LW[i] - PL[i] / LL[i]) - gamma
        expected.append(-(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z))
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)


def _ld_inputs():
    # One pair: chosen has 3 response tokens (padded to 5 on the right), rejected 5 tokens.
    pol_w = [[-1.0, -2.0, -3.0, 0.0, 0.0]]
    pol_l = [[-0.5, -0.5, -1.0, -2.0, -4.0]]
    ref_w = [[-1.5, -1.5, -2.0, 0.0, 0.0]]
    ref_l = [[-1.0, -1.0, -1.0, -1.0, -1.0]]
    mw = [[True, True, True, False, False]]
    ml = [[True] * 5]
    return pol_w, pol_l, ref_w, ref_l, mw, ml


def test_length_desensitized_logps_by_hand():
    pol_w, pol_l, _, _, mw, ml = _ld_inputs()
    a = 0.25
    sw, sl = length_desensitized_logps(t(pol_w), t(pol_l), torch.tensor(mw), torch.tensor(ml), a)
    # Public length = 3: chosen fully public; rejected's last two tokens are scaled by alpha.
    assert sw.item() == pytest.approx(-6.0)
    assert sl.item() == pytest.approx(-0.5 - 0.5 - 1.0 + a * (-2.0 - 4.0))


def test_lr_dpo_matches_hand_computation_and_alpha_one_is_dpo():
    pol_w, pol_l, ref_w, ref_l, mw, ml = _ld_inputs()
    beta, a = 0.1, 0.5
    tl = TokenLogps(t(pol_w), t(pol_l), t(ref_w), t(ref_l), torch.tensor(mw), torch.tensor(ml))
    sums = [t([sum(r[0])]) for r in (pol_w, pol_l, ref_w, ref_l)]
    lengths = (torch.tensor([3]), torch.tensor([5]))
    loss, _ = dap_loss(DAPConfig(loss_type="lr_dpo", beta=beta, ld_alpha=a), *sums, *lengths, token_logps=tl)
    s_pw, s_pl = -6.0, -2.0 + a * -6.0
    s_rw, s_rl = -5.0, -3.0 + a * -2.0
    assert loss.item() == pytest.approx(-log_sigmoid(beta * ((s_pw - s_rw) - (s_pl - s_rl))), rel=1e-12)
    loss1, _ = dap_loss(
        DAPConfig(loss_type="lr_dpo", beta=beta, ld_alpha=1.0), *sums, *lengths, token_logps=tl
    )
    loss_dpo, _ = dap_loss(DAPConfig(loss_type="dpo", beta=beta), *sums, *lengths)
    assert loss1.item() == pytest.approx(loss_dpo.item(), rel=1e-12)


def test_lr_dpo_requires_token_logps():
    with pytest.raises(ValueError, match="token_logps"):
        run(DAPConfig(loss_type="lr_dpo"))


@pytest.mark.parametrize("loss_type", ["dpo", "ipo", "slic", "simpo"])
def test_mask_excludes_pairs_from_denominator(loss_type):
    cfg = DAPConfig(loss_type=loss_type, beta=0.5)
    full, _, _, _ = run(cfg, mask=torch.tensor([True, True]))
    only0, metrics, _, _ = run(cfg, mask=torch.tensor([True, False]))
    # Mean over valid pairs only: the masked batch's loss equals pair 0's loss alone.
    per_pair, _ = dap_loss(
        cfg, t(PW[:1]), t(PL[:1]), t(RW[:1]), t(RL[:1]), torch.tensor(LW[:1]), torch.tensor(LL[:1])
    )
    assert only0.item() == pytest.approx(per_pair.item(), rel=1e-12)
    assert metrics["train/reward_accuracy"] in (0.0, 1.0)
    assert full.item() != pytest.approx(only0.item())


def test_all_masked_gives_zero_loss_with_connected_grad():
    loss, metrics, pw, pl = run(DAPConfig(), mask=torch.tensor([False, False]), grad=True)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(pw.grad, torch.zeros(2, dtype=torch.float64))
    assert metrics["train/loss"] == 0.0 and metrics["train/reward_accuracy"] == 0.0


def test_dpo_gradient_matches_hand_derivative():
    beta = 0.1
    loss, _, pw, pl = run(DAPConfig(beta=beta), grad=True)
    loss.backward()
    # d/dS_w of -log sigma(beta h) / B = -beta * (1 - sigma(beta h)) / B; d/dS_l is its negative.
    sig = [1 / (1 + math.exp(-beta * h)) for h in margins()]
    expected_w = [-beta * (1 - s) / 2 for s in sig]
    assert pw.grad.tolist() == pytest.approx(expected_w, rel=1e-12)
    assert pl.grad.tolist() == pytest.approx([-g for g in expected_w], rel=1e-12)


def test_masked_pair_gets_no_gradient():
    loss, _, pw, _ = run(DAPConfig(loss_type="ipo"), mask=torch.tensor([False, True]), grad=True)
    loss.backward()
    assert pw.grad[0].item() == 0.0
    assert pw.grad[1].item() != 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="loss_type"):
        DAPConfig(loss_type="kto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        DAPConfig(beta=0.0)
    with pytest.raises(ValueError, match="dpo only|loss_type='dpo' only"):
        DAPConfig(loss_type="ipo", len_reg_alpha=0.1)
    with pytest.raises(TypeError, match="bool"):
        run(DAPConfig(), mask=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="pairs"):
        dap_loss(
            DAPConfig(), t([0.0]), t([0.0, 1.0]), t([0.0]), t([0.0]), torch.tensor([1]), torch.tensor([1])
        )
    with pytest.raises(ValueError, match="reference"):
        dap_loss(DAPConfig(), t(PW), t(PL), None, None, torch.tensor(LW), torch.tensor(LL))
    with pytest.raises(ValueError, match="lengths >= 1"):
        dap_loss(
            DAPConfig(loss_type="ipo"), t(PW), t(PL), t(RW), t(RL), torch.tensor([0, 1]), torch.tensor(LL)
        )


class _BigramLM(torch.nn.Module):
    """Toy causal LM: logits at t depend only on token t (a lookup table), so values are hand-checkable."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        class Out:
            pass

        out = Out()
        out.logits = self.table[input_ids]
        return out


def test_sequence_logprobs_by_hand():
    table = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    model = _BigramLM(table)
    # Row 0: prompt [0], response [1, 2]; row 1: left pad (id 0, masked), prompt [2], response [2].
    input_ids = torch.tensor([[0, 1, 2], [0, 2, 2]])
    attention = torch.tensor([[1, 1, 1], [0, 1, 1]])
    response = torch.tensor([[False, True, True], [False, False, True]])
    sums, lengths, per_token = sequence_logprobs(model, input_ids, attention, response)

    def lp(row, target):
        z = [math.exp(v) for v in table[row].tolist()]
        return math.log(z[target] / sum(z))

    exp0 = [0.0, lp(0, 1), lp(1, 2)]
    exp1 = [0.0, 0.0, lp(2, 2)]
    assert per_token[0].tolist() == pytest.approx(exp0, rel=1e-6)
    assert per_token[1].tolist() == pytest.approx(exp1, rel=1e-6)
    assert sums.tolist() == pytest.approx([sum(exp0), sum(exp1)], rel=1e-6)
    assert lengths.tolist() == [2, 1]
    sums.sum().backward()
    assert model.table.grad is not None and model.table.grad.abs().sum() > 0
    # Temperature scales logits before the softmax.
    s2, _, _ = sequence_logprobs(model, input_ids, attention, response, temperature=2.0)
    z = [math.exp(v / 2) for v in table[2].tolist()]
    assert s2[1].item() == pytest.approx(math.log(z[2] / sum(z)), rel=1e-6)


def test_sequence_logprobs_rejects_bad_masks():
    model = _BigramLM(torch.zeros(3, 3))
    ids = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match="first token"):
        sequence_logprobs(model, ids, torch.ones_like(ids), torch.tensor([[True, True]]))
    with pytest.raises(ValueError, match="padding"):
        sequence_logprobs(model, ids, torch.tensor([[1, 0]]), torch.tensor([[False, True]]))
