"""LearnerEngine on CPU, one process, no launcher: ZeRO 0/2/3, accumulation, clipping, schedules, sync."""

import copy

import pytest
import torch

pytest.importorskip("deepspeed")
transformers = pytest.importorskip("transformers")

from conftest import LEARNER_VOCAB  # noqa: E402
from conftest import tiny_learner_llama as tiny_llama  # noqa: E402

from oat_agents.learners import LearnerConfig, LearnerEngine  # noqa: E402
from oat_agents.learners.schedules import cosine_multiplier  # noqa: E402

VOCAB = LEARNER_VOCAB


@pytest.fixture(scope="session", autouse=True)
def process_group(learner_process_group):
    yield


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss


def batch(n: int = 2, t: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, t), generator=g)


def cfg(**kw) -> LearnerConfig:
    base = {"learning_rate": 1e-2, "micro_batch_size": 2, "max_grad_norm": 1.0}
    base.update(kw)
    return LearnerConfig(**base)


def plain_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_zero_stage_trains(stage):
    eng = LearnerEngine(tiny_llama(), cfg(zero_stage=stage))
    x = batch()
    losses = [eng.train_step(lm_loss, x)["train/loss"] for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0], losses
    assert eng.global_step == 6
    assert eng.deepspeed_config()["zero_optimization"]["stage"] == stage


def test_stages_agree_on_the_same_run():
    x = batch()
    final = {}
    for stage in (0, 3):
        eng = LearnerEngine(tiny_llama(), cfg(zero_stage=stage))
        for _ in range(3):
            eng.train_step(lm_loss, x)
        final[stage] = eng.state_dict_for_sync()
    for k, v in final[0].items():
        # Adam turns float-summation-order noise in near-zero grads into lr-sized steps: loose atol.
        torch.testing.assert_close(final[3][k], v, atol=1e-4, rtol=1e-3)


def test_gradient_accumulation_matches_big_batch():
    x = batch(n=4)
    # A large Adam eps makes the first update proportional to the gradient (not ~sign(grad), which would
    # turn float rounding in near-zero gradients into lr-sized differences).
    acc = LearnerEngine(
        tiny_llama(), cfg(zero_stage=0, micro_batch_size=2, gradient_accumulation_steps=2, adam_eps=1e-2)
    )
    first = acc.train_step(lm_loss, x[:2])
    assert "train/grad_norm" not in first and acc.global_step == 0  # no optimizer step mid-accumulation
    second = acc.train_step(lm_loss, x[2:])
    assert acc.global_step == 1

    big = LearnerEngine(
        tiny_llama(), cfg(zero_stage=0, micro_batch_size=4, gradient_accumulation_steps=1, adam_eps=1e-2)
    )
    one = big.train_step(lm_loss, x)
    assert second["train/grad_norm"] == pytest.approx(one["train/grad_norm"], rel=1e-5)
    sa, sb = acc.state_dict_for_sync(), big.state_dict_for_sync()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=1e-5)


def test_deepspeed_config_batch_sizes():
    c = cfg(micro_batch_size=3, gradient_accumulation_steps=4, max_grad_norm=0.5, dtype="bf16", zero_stage=3)
    eng = LearnerEngine(tiny_llama(), c)
    ds = eng.deepspeed_config()
    assert ds["train_batch_size"] == 12 and ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is True
    assert eng.engine.train_batch_size() == 12


def _reference_step(model, x, lr, max_norm, eps):
    """Bare PyTorch: one loss.backward, optional clip, AdamW with the engine's param groups."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        eps=eps,
    )
    loss = lm_loss(model, x)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    opt.step()
    return float(norm)


@pytest.mark.parametrize("stage", [0, 2])
def test_clipping_is_applied_and_reported(stage):
    # Adam is scale-invariant except for eps, so use a tiny clip threshold where clipping visibly matters.
    max_norm, eps = 1e-6, 1e-8
    x = batch()
    eng = LearnerEngine(tiny_llama(), cfg(zero_stage=stage, max_grad_norm=max_norm, adam_eps=eps))
    m = eng.train_step(lm_loss, x)

    clipped, unclipped = tiny_llama(), tiny_llama()
    ref_norm = _reference_step(clipped, x, 1e-2, max_norm, eps)
    _reference_step(unclipped, x, 1e-2, 0.0, eps)

    assert m["train/grad_norm"] == pytest.approx(ref_norm, rel=1e-4)
    assert m["train/grad_clipped"] == 1.0
    got = eng.state_dict_for_sync()
    want, nope = plain_weights(clipped), plain_weights(unclipped)
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=1e-6, rtol=1e-5)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(got[name], nope[name], atol=1e-6)


def test_lr_schedule_drives_optimizer():
    c = cfg(zero_stage=0, lr_schedule="cosine", warmup_steps=2, total_steps=6, min_lr_ratio=0.1)
    eng = LearnerEngine(tiny_llama(), c)
    x = batch()
    lrs = [eng.train_step(lm_loss, x)["train/lr"] for _ in range(7)]
    want = [1e-2 * cosine_multiplier(s, 6, 2, 0.1) for s in range(7)]
    assert lrs == pytest.approx(want)
    assert eng.current_lr() == pytest.approx(1e-3)


@pytest.mark.parametrize("stage", [0, 3])
def test_state_dict_for_sync_has_hf_names_and_weights(stage):
    model = tiny_llama()
    initial = plain_weights(model)
    eng = LearnerEngine(model, cfg(zero_stage=stage))
    sd = eng.state_dict_for_sync()
    assert set(sd) == set(initial)
    for k, v in sd.items():
        assert v.device.type == "cpu"
        torch.testing.assert_close(v, initial[k])  # gathered (ZeRO-3) == the full weights

    eng.train_step(lm_loss, batch())
    trained = eng.state_dict_for_sync()
    fresh = tiny_llama(seed=5)
    fresh.load_state_dict(trained, strict=True)  # loads into the plain HF architecture
    if stage == 0:
        for name, p in eng.module.named_parameters():
            torch.testing.assert_close(trained[name], p.detach())
    assert not torch.equal(trained["model.embed_tokens.weight"], initial["model.embed_tokens.weight"])


@pytest.mark.parametrize("stage", [2, 3])
def test_lora_sync_is_merged(stage):
    base = tiny_llama()
    initial = plain_weights(base)
    eng = LearnerEngine(
        base, cfg(zero_stage=stage, lora_rank=4, lora_alpha=8, lora_target_modules=("q_proj", "v_proj"))
    )
    x = batch()
    for _ in range(3):
        eng.train_step(lm_loss, x)
    sd = eng.state_dict_for_sync()
    assert set(sd) == set(initial) and not any("lora" in k for k in sd)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(sd[q], initial[q])  # adapter merged into the target
    torch.testing.assert_close(sd["model.embed_tokens.weight"], initial["model.embed_tokens.weight"])
    torch.testing.assert_close(
        sd["model.layers.0.self_attn.k_proj.weight"], initial["model.layers.0.self_attn.k_proj.weight"]
    )
    # The merged plain model computes what the adapted model computes.
    merged = tiny_llama(seed=9)
    merged.load_state_dict(sd, strict=True)
    merged.eval()
    eng.engine.eval()
    torch.testing.assert_close(merged(input_ids=x).logits, eng(input_ids=x).logits, atol=1e-5, rtol=1e-4)
    # With no ref_model, LoRA's reference is the adapter-free base model.
    ref = tiny_llama()
    ref.eval()
    x_logits = ref(input_ids=x).logits[:, :-1].log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)
    ref_logps = eng.ref_logps(x)  # (B, L), aligned with x: entry t scores x[:, t]
    assert ref_logps.shape == x.shape and (ref_logps[:, 0] == 0).all()
    torch.testing.assert_close(ref_logps[:, 1:], x_logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stage,offload", [(0, True), (3, False)])
def test_ref_logps(stage, offload):
    model = tiny_llama()
    eng = LearnerEngine(model, cfg(zero_stage=stage, ref_offload=offload), ref_model=copy.deepcopy(model))
    x = batch()
    mask = torch.ones_like(x)
    r0 = eng.ref_logps(x, mask)
    assert r0.shape == x.shape and not r0.requires_grad and (r0 <= 0).all() and (r0[:, 0] == 0).all()
    response = torch.zeros_like(x, dtype=torch.bool)
    response[:, -2:] = True  # masked: 0 off the response, the same values on it
    masked = eng.ref_logps(x, mask, response_mask=response)
    assert (masked[~response] == 0).all()
    torch.testing.assert_close(masked[response], r0[response])
    torch.testing.assert_close(r0, eng.policy_logps(x, mask), atol=1e-5, rtol=1e-4)
    for _ in range(3):
        eng.train_step(lm_loss, x)
    torch.testing.assert_close(eng.ref_logps(x, mask), r0)  # frozen
    assert not torch.allclose(eng.policy_logps(x, mask), r0, atol=1e-3)


def test_two_engines_in_one_process_are_independent():
    a = LearnerEngine(tiny_llama(), cfg(zero_stage=2))
    b = LearnerEngine(tiny_llama(), cfg(zero_stage=2))
    before = b.state_dict_for_sync()
    for _ in range(2):
        a.train_step(lm_loss, batch())
    after = b.state_dict_for_sync()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(a.state_dict_for_sync()["lm_head.weight"], before["lm_head.weight"])


def test_gradient_checkpointing_and_bf16_train():
    eng = LearnerEngine(tiny_llama(), cfg(zero_stage=2, gradient_checkpointing=True, dtype="bf16"))
    assert eng.module.is_activation_checkpointing
    x = batch()
    losses = [eng.train_step(lm_loss, x)["train/loss"] for _ in range(5)]
    assert losses[-1] < losses[0]
    assert all(v.dtype == torch.bfloat16 for v in eng.state_dict_for_sync().values())


def test_save_pretrained_roundtrip(tmp_path):
    eng = LearnerEngine(tiny_llama(), cfg(zero_stage=3, lora_rank=2, lora_target_modules=("o_proj",)))
    eng.train_step(lm_loss, batch())
    out = eng.save_pretrained(tmp_path / "hf")
    loaded = transformers.LlamaForCausalLM.from_pretrained(out)
    want = eng.state_dict_for_sync()
    got = loaded.state_dict()
    assert set(want) == set(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k])


def test_train_step_returns_loss_fn_metrics():
    eng = LearnerEngine(tiny_llama(), cfg(zero_stage=0))

    def loss_with_metrics(model, b):
        loss = lm_loss(model, b)
        return loss, {"train/ppl": float(loss.detach().exp())}

    m = eng.train_step(loss_with_metrics, batch())
    assert m["train/ppl"] == pytest.approx(torch.tensor(m["train/loss"]).exp().item(), rel=1e-5)
    with pytest.raises(ValueError, match="scalar"):
        eng.backward(torch.ones(2, requires_grad=True))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"zero_stage": 4}, "zero_stage"),
        ({"dtype": "fp16"}, "dtype"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"lr_schedule": "cosine"}, "total_steps"),
        ({"adam_betas": (0.9, 1.0)}, "adam_betas"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"lora_rank": -2}, "lora_rank"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearnerConfig(**kwargs)


def test_engine_type_errors():
    with pytest.raises(TypeError, match="LearnerConfig"):
        LearnerEngine(tiny_llama(), {"zero_stage": 0})
    with pytest.raises(TypeError, match="nn.Module"):
        LearnerEngine("gpt2", LearnerConfig())
