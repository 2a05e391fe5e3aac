"""The learner step's fast paths change no maths: fused AdamW, our own clipping in fp32 ZeRO-0, and no
all-reduce on one rank give the parameters of a bare PyTorch step (and of the DPO step TRL computes)."""

import copy
import types

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("deepspeed")
transformers = pytest.importorskip("transformers")

from conftest import LEARNER_VOCAB  # noqa: E402
from conftest import tiny_learner_llama as tiny_llama  # noqa: E402

from oat_agents.learners import LearnerConfig, LearnerEngine  # noqa: E402
from oat_agents.learners.engine import adam_kernel_kwargs  # noqa: E402

VOCAB = LEARNER_VOCAB


@pytest.fixture(scope="session", autouse=True)
def process_group(learner_process_group):
    yield


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss


def batch(n: int = 2, t: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, t), generator=g)


def bare_adamw(model, impl: str, lr: float, eps: float = 1e-8) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=eps, **adam_kernel_kwargs(impl),
    )


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("impl", ["fused", "foreach", "for_loop"])
@pytest.mark.parametrize("max_norm", [1e-3, 0.0])
def test_zero0_steps_equal_bare_pytorch_steps(impl, max_norm):
    """Two engine steps (own clipping, no all-reduce on one rank) = two bare steps with the same AdamW kernel."""
    lr, eps, x = 1e-2, 1e-8, batch()
    eng = LearnerEngine(tiny_llama(), LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=2,
                                                    max_grad_norm=max_norm, adam_eps=eps, adam_impl=impl))
    assert eng.deepspeed_config()["gradient_clipping"] == 0.0  # fp32 ZeRO-0 clips in step(), not in DeepSpeed
    assert eng.engine.enable_backward_allreduce is False  # world size 1: the all-reduce would be the identity
    bare = tiny_llama()
    opt = bare_adamw(bare, impl, lr, eps)
    for _ in range(2):
        m = eng.train_step(lm_loss, x)
        lm_loss(bare, x).backward()
        norm = torch.nn.utils.clip_grad_norm_(bare.parameters(), max_norm if max_norm > 0 else float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        assert m["train/grad_norm"] == pytest.approx(float(norm), rel=1e-5)
        assert m["train/grad_clipped"] == float(max_norm > 0 and float(norm) > max_norm)
    got, want = eng.state_dict_for_sync(), weights(bare)
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5)


def test_fused_and_for_loop_adamw_agree():
    """The default kernel (fused) and torch's CPU default (for-loop) differ only in rounding."""
    x = batch()
    final = {}
    for impl in ("fused", "for_loop"):
        eng = LearnerEngine(tiny_llama(), LearnerConfig(zero_stage=0, learning_rate=1e-3, micro_batch_size=2,
                                                        adam_impl=impl))
        for _ in range(3):
            eng.train_step(lm_loss, x)
        final[impl] = eng.state_dict_for_sync()
    for k, v in final["for_loop"].items():
        torch.testing.assert_close(final["fused"][k], v, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stages_with_fused_adamw_equal_bare(stage):
    x, lr = batch(), 1e-3
    eng = LearnerEngine(tiny_llama(), LearnerConfig(zero_stage=stage, learning_rate=lr, micro_batch_size=2,
                                                    max_grad_norm=1e-3, adam_eps=1e-2))
    ds = eng.deepspeed_config()
    assert ds["gradient_clipping"] == 1e-3  # ZeRO clips inside DeepSpeed
    assert ds["zero_optimization"]["contiguous_gradients"] is False  # one CPU rank: no copy into a flat buffer
    bare = tiny_llama()
    opt = bare_adamw(bare, "for_loop", lr, 1e-2)
    for _ in range(2):
        eng.train_step(lm_loss, x)
        lm_loss(bare, x).backward()
        torch.nn.utils.clip_grad_norm_(bare.parameters(), 1e-3)
        opt.step()
        opt.zero_grad(set_to_none=True)
    got, want = eng.state_dict_for_sync(), weights(bare)
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5)


def test_adam_impl_validation():
    with pytest.raises(ValueError, match="adam_impl"):
        LearnerConfig(adam_impl="apex")
    with pytest.raises(ValueError, match="adam_impl"):
        adam_kernel_kwargs("apex")


def test_dap_learn_equals_a_bare_dpo_step_as_trl_computes_it():
    """DAPAgent.learn (logits_to_keep, gather-logsumexp, share-weighted backward, own clipping, fused AdamW) moves
    the weights exactly as a bare DPO step computed TRL's way: full logits, log_softmax, sum over the response."""
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig, PreferencePair
    from oat_agents.algorithms.dap import DAPConfig

    g = torch.Generator().manual_seed(3)
    pairs = []
    for plen, (lc, lr_) in zip((5, 7, 6), ((4, 6), (3, 3), (6, 2))):
        ids = torch.randint(1, VOCAB, (plen + lc + lr_,), generator=g).tolist()
        pairs.append(PreferencePair(ids[:plen], ids[plen:plen + lc], ids[plen + lc:]))
    # A large Adam eps makes the update proportional to the gradient (not ~sign(grad), which would turn float
    # rounding in near-zero gradients into lr-sized differences).
    lr, beta, max_norm, eps = 1e-2, 0.1, 0.05, 1e-2
    model = tiny_llama()
    learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(zero_stage=0, learning_rate=lr, micro_batch_size=3,
                                                                max_grad_norm=max_norm, adam_eps=eps),
                            ref_model=copy.deepcopy(model))
    tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=0)
    agent = DAPAgent(types.SimpleNamespace(tokenizer=tok), learner,
                     DAPAgentConfig(num_samples=2, max_seq_length=64, dap=DAPConfig(loss_type="dpo", beta=beta)))
    agent.buffer = list(pairs)
    metrics = agent.learn()

    bare, ref = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
    opt = bare_adamw(bare, "fused", lr, eps)

    def seq_logps(m, p, r):
        ids = torch.tensor([p + r])
        logp = m(input_ids=ids).logits[:, len(p) - 1 : -1].log_softmax(-1)
        return logp.gather(-1, torch.tensor([r]).unsqueeze(-1)).sum()

    margins = []
    for p in pairs:
        with torch.no_grad():
            ref_margin = seq_logps(ref, p.prompt_ids, p.chosen_ids) - seq_logps(ref, p.prompt_ids, p.rejected_ids)
        pol_margin = seq_logps(bare, p.prompt_ids, p.chosen_ids) - seq_logps(bare, p.prompt_ids, p.rejected_ids)
        margins.append(pol_margin - ref_margin)
    loss = -F.logsigmoid(beta * torch.stack(margins)).mean()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(bare.parameters(), max_norm)
    opt.step()

    assert metrics["train/grad_norm"] == pytest.approx(float(norm), rel=1e-4)
    got, want = learner.state_dict_for_sync(), weights(bare)
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5)
