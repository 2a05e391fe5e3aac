"""Regressions of the agent defects of issue 13, on tiny models and hand-computed values.

1. LD-DPO (``loss_type="lr_dpo"``) is reachable from :class:`DAPAgent`.
2. DAP gradient accumulation: tie-only micro-batches do not count in the denominator, every ``learn()``
   completes its optimizer steps, an all-tie step takes no optimizer step, metrics are not diluted.
3. RL: the KL reference log-probs use the sampling temperature.
4. ``kl_mode="reward"`` shapes the reward with ``−β·k1``.
5. SimPO's γ is ``gamma_beta_ratio · β``.
6. ``PGConfig``'s default aggregation is GRPO's ``seq_mean_token_mean``.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.agents.dap import DAPAgent, DAPAgentConfig, PreferencePair
from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
from oat_agents.algorithms.dap import DAPConfig, dap_loss, length_desensitized_logps
from oat_agents.algorithms.pg import PGConfig, compute_advantages, pg_loss
from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed
from oat_agents.policies.hf import HFPolicy
from oat_agents.tiny import CharTokenizer, build_tiny_llama

PROMPT = [1, 5, 76, 6, 84]  # "1+2=" in CharTokenizer ids, after BOS
VALID = PreferencePair(PROMPT, [7, 8, 9, 2], [9, 2])
VALID_2 = PreferencePair(PROMPT, [10, 2], [11, 12, 13, 2])
TIE = PreferencePair(PROMPT, [7, 7, 2], [7, 7, 2])


@pytest.fixture(scope="module", autouse=True)
def process_group():
    init_distributed()


def dap_agent(micro: int = 1, gas: int = 1, lr: float = 1e-3, dap: DAPConfig | None = None) -> DAPAgent:
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(
        model,
        LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=micro, gradient_accumulation_steps=gas,
                      max_grad_norm=0.0, seed=0),
        ref_model=copy.deepcopy(model),
    )
    return DAPAgent(policy, learner, DAPAgentConfig(max_new_tokens=4, seed=0, dap=dap or DAPConfig()))


def record_applied_gradients(agent: DAPAgent) -> list[list[torch.Tensor]]:
    """The gradients each optimizer step applies (not the weights after AdamW, whose sqrt(v) division
    turns float rounding in near-zero gradient elements into weight differences of up to 2·lr)."""
    applied: list[list[torch.Tensor]] = []
    step = agent.learner.optimizer.step
    params = list(agent.learner.module.parameters())

    @functools.wraps(step)  # keeps the LR scheduler's mark on optimizer.step (no "overridden" warning)
    def recording_step(*args, **kwargs):
        applied.append([torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params])
        return step(*args, **kwargs)

    agent.learner.optimizer.step = recording_step
    return applied


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------ 1. LD-DPO


def ld_margins(agent: DAPAgent, pairs: list[PreferencePair], alpha: float) -> torch.Tensor:
    """``Ŝ^π_w − Ŝ^π_l`` per pair under the learner (the reference part of the LD-DPO margin is fixed)."""
    b = len(pairs)
    ids, attn, resp = collate_responses(
        [p.prompt_ids for p in pairs] * 2, [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs],
        agent.pad_token_id,
    )
    tokens = agent.learner.policy_logps(ids, attn, response_mask=resp)  # (2B, L), 0 off the response
    chosen, rejected = length_desensitized_logps(tokens[:b], tokens[b:], resp[:b], resp[b:], alpha)
    return chosen - rejected


def test_ld_dpo_learn_runs_and_raises_the_desensitised_margin():
    alpha = 0.5
    agent = dap_agent(micro=4, lr=1e-2, dap=DAPConfig(loss_type="lr_dpo", beta=0.1, ld_alpha=alpha))
    pairs = [VALID, VALID_2]  # different lengths, so the desensitised tail matters
    before = ld_margins(agent, pairs, alpha)
    agent.buffer = list(pairs)
    metrics = agent.learn()
    assert agent.learner.global_step == 1
    assert metrics["train/loss"] == pytest.approx(math.log(2.0), abs=1e-6)  # π = π_ref: −log σ(0)
    after = ld_margins(agent, pairs, alpha)
    assert bool((after > before).all()), (before, after)
    # ld_alpha = 1 is DPO: the agent's per-token layout must give the same loss as the summed log-probs.
    agent.config.dap = DAPConfig(loss_type="lr_dpo", beta=0.1, ld_alpha=1.0)
    ld_loss, _ = agent._pair_loss(pairs)
    agent.config.dap = DAPConfig(loss_type="dpo", beta=0.1)
    dpo, _ = agent._pair_loss(pairs)
    assert ld_loss.item() == pytest.approx(dpo.item(), rel=1e-5)
    assert dpo.item() < math.log(2.0)


# ------------------------------------------------------------- 2. DAP accumulation over masked pairs


def test_tie_only_micro_batch_does_not_count_in_the_accumulated_gradient():
    def applied_gradient(gas: int, buffer: list[PreferencePair]) -> list[torch.Tensor]:
        agent = dap_agent(micro=1, gas=gas)
        applied = record_applied_gradients(agent)
        agent.buffer = list(buffer)
        agent.learn()
        assert len(applied) == 1 and agent.learner.global_step == 1
        return applied[0]

    alone = applied_gradient(1, [VALID])
    assert any(bool(g.abs().gt(0).any()) for g in alone)
    # The same valid pair next to a tie at gas=2, then alone at gas=2 (one micro-batch has no pair at all).
    for gas, buffer in ((2, [VALID, TIE]), (2, [VALID])):
        grads = applied_gradient(gas, buffer)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(alone, grads)), len(buffer)


def test_all_tie_step_takes_no_optimizer_step_and_keeps_the_schedule():
    agent = dap_agent(micro=1, gas=2)
    applied = record_applied_gradients(agent)
    scheduler_step = agent.learner.lr_scheduler.last_epoch
    before = weights(agent.learner.module)
    agent.buffer = [copy.deepcopy(TIE) for _ in range(4)]
    metrics = agent.learn()
    assert applied == [] and agent.learner.global_step == 0
    assert agent.learner.lr_scheduler.last_epoch == scheduler_step
    assert all(torch.equal(before[k], v) for k, v in weights(agent.learner.module).items())
    assert metrics["train/tie_fraction"] == 1.0 and metrics["train/loss"] == 0.0
    assert "train/grad_norm" not in metrics


def test_learn_completes_every_optimizer_step():
    agent = dap_agent(micro=1, gas=2)
    agent.buffer = [VALID, VALID_2, copy.deepcopy(VALID)]  # 3 pairs: one full step and one partial step
    agent.learn()
    assert agent.learner.global_step == 2
    assert agent.learner.engine.micro_steps % 2 == 0
    assert all(p.grad is None or not bool(p.grad.any()) for p in agent.learner.module.parameters())


def test_train_metrics_are_not_diluted_by_tie_only_micro_batches():
    agent = dap_agent(micro=1, gas=1)
    agent.buffer = [VALID, TIE]
    metrics = agent.learn()
    # π = π_ref when the valid pair is trained on (the tie-only step is skipped): −log σ(0).
    assert metrics["train/loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert metrics["train/tie_fraction"] == 0.5
    assert agent.learner.global_step == 1


# --------------------------------------------------------------------- 3. KL reference temperature


@pytest.mark.parametrize("kl_mode", ["loss", "reward"])
def test_kl_to_an_identical_reference_is_zero_at_the_sampling_temperature(kl_mode):
    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0)
    policy = HFPolicy(copy.deepcopy(model), tok, device="cpu")
    learner = LearnerEngine(
        model, LearnerConfig(zero_stage=0, learning_rate=1e-3, micro_batch_size=4, seed=0),
        ref_model=copy.deepcopy(model),
    )
    pg = PGConfig(advantage_estimator="dr_grpo", loss_agg="constant", kl_mode=kl_mode, kl_coef=0.1)
    agent = GroupRLAgent(policy, learner, GroupRLAgentConfig(num_samples=4, max_new_tokens=3, temperature=0.7, seed=0, pg=pg))
    agent.act(["3+4="] * 4)
    agent.observe([1.0, 0.0, 0.0, 1.0])
    metrics = agent.learn()
    assert abs(metrics["train/kl"]) < 1e-6
    if kl_mode == "reward":
        # k1 of the sampler's own log-probs against the reference (HF generate vs a full forward).
        assert abs(metrics["actor/kl_penalty"]) < 1e-5


# ------------------------------------------------------------------------ 4. KL reward shaping (k1)


def test_kl_reward_shaping_is_minus_beta_k1():
    beta = 0.1
    mask = torch.tensor([[True, True, False]])
    logp = torch.tensor([[-1.0, -2.0, -7.0]])  # the padded position must not count
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    k1 = [-1.0 - (-1.5), -2.0 - (-1.0)]  # log π − log π_ref = [0.5, −1.0]
    shaped = [-beta * k for k in k1]  # [−0.05, +0.1]
    reward = 1.0
    seq = PGConfig(advantage_estimator="reinforce", reinforce_baseline=False, kl_mode="reward", kl_coef=beta)
    out = compute_advantages(seq, torch.tensor([reward]), mask, logprobs=logp, ref_logprobs=ref)
    assert out.rewards.tolist() == pytest.approx([reward + sum(shaped)], abs=1e-7)
    assert out.advantages[0, :2].tolist() == pytest.approx([reward + sum(shaped)] * 2, abs=1e-7)
    assert out.metrics["actor/kl_penalty"] == pytest.approx(sum(k1) / 2, abs=1e-7)
    # Per token (ppo, γ = λ = 1, V = 0): the return of token t sums the shaped rewards from t on.
    ppo = PGConfig(advantage_estimator="ppo", gamma=1.0, lam=1.0, kl_mode="reward", kl_coef=beta)
    out = compute_advantages(ppo, torch.tensor([reward]), mask, values=torch.zeros(1, 3), logprobs=logp,
                             ref_logprobs=ref)
    assert out.returns[0].tolist() == pytest.approx([shaped[0] + shaped[1] + reward, shaped[1] + reward, 0.0],
                                                     abs=1e-7)


# ---------------------------------------------------------------------------------- 5. SimPO's γ


def test_simpo_gamma_is_gamma_beta_ratio_times_beta():
    assert DAPConfig().gamma_beta_ratio == 0.5
    pw, pl = [-10.0, -6.0], [-12.0, -5.0]
    lw, ll = [4, 3], [2, 5]
    for beta, ratio in ((2.0, 0.5), (0.1, 0.5), (1.0, 1.5)):
        loss, _ = dap_loss(
            DAPConfig(loss_type="simpo", beta=beta, gamma_beta_ratio=ratio),
            torch.tensor(pw, dtype=torch.float64), torch.tensor(pl, dtype=torch.float64), None, None,
            torch.tensor(lw), torch.tensor(ll),
        )
        gamma = ratio * beta
        expected = [math.log1p(math.exp(-(beta / lw[i] * pw[i] - beta / ll[i] * pl[i] - gamma))) for i in range(2)]
        assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12), (beta, ratio)


# ------------------------------------------------------------------- 6. PGConfig default aggregation


def test_pg_default_aggregation_is_grpo_seq_mean_token_mean():
    cfg = PGConfig()
    assert cfg.advantage_estimator == "grpo" and cfg.loss_agg == "seq_mean_token_mean"
    # ρ = 1, so the per-token loss is −A: row 0 has 3 tokens of −1, row 1 one token of −4.
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    loss, _ = pg_loss(cfg, logp, adv, mask)
    assert loss.item() == pytest.approx((-(1 + 1 + 1) / 3 - 4 / 1) / 2)  # token_mean would give −7/4
