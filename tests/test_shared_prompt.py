"""Shared-prompt packing (:mod:`oat_agents.algorithms.shared_prompt`): the packed layout, and the same log-probs,
entropies and gradients as the plain forward pass for DPO pairs, GRPO groups, unique prompts, rows without a
response, multi-turn responses with holes, left padding and both attention kernels; the learner and the agents
with ``LearnerConfig.share_prompt`` take the same steps."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.algorithms.logprobs import sequence_logprobs, token_logprobs
from oat_agents.algorithms.shared_prompt import check_packable, pack_shared_prompts, packing_pays
from oat_agents.tiny import build_tiny_llama

VOCAB = 40


def tiny(attn: str = "sdpa", seed: int = 3) -> torch.nn.Module:
    m = build_tiny_llama(VOCAB, hidden=32, layers=2, heads=2, seed=seed)
    m.config._attn_implementation = attn
    return m


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def both_ways(model, ids, attn, resp, temperature=1.0):
    """(logps, entropy, grad) of the plain and of the packed pass, the loss using both outputs."""
    assert pack_shared_prompts(ids, attn, resp, model.config.hidden_size) is not None  # the packed path runs
    out = []
    for share in (False, True):
        model.zero_grad()
        lp, ent = token_logprobs(model, ids, attn, temperature, resp, with_entropy=True, share_prompt=share)
        (lp.sum() + 0.1 * ent.sum()).backward()
        out.append((lp.detach(), ent.detach(), grads(model).clone()))
    return out


def assert_same(plain, packed):
    torch.testing.assert_close(packed[0], plain[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[1], plain[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[2], plain[2], atol=1e-5, rtol=1e-4)


def test_layout_of_a_pack():
    p = [1, 2, 3, 4, 5, 6, 7]
    ids, attn, resp = collate_responses([p, [8, 9], p], [[10, 11], [12], [13, 14, 15]], pad_token_id=0)
    pack = pack_shared_prompts(ids, attn, resp, hidden_size=32)
    assert pack is not None
    assert pack.input_ids.tolist() == [p + [10, 11, 13, 14, 15], [8, 9, 12] + [1] * 9]
    assert pack.position_ids[0].tolist() == list(range(9)) + [7, 8, 9]  # every segment restarts after the prompt
    assert pack.packed_tokens == 15 and int(attn.sum()) == 22
    allowed = pack.allowed[0, 0]
    assert allowed[9].tolist() == [True] * 7 + [False, False, True, False, False]  # the prompt and itself only
    assert allowed[8].tolist() == [True] * 9 + [False] * 3
    # the first token of each segment is predicted by the last prompt position
    L = ids.shape[1]
    first_of_segment = [i for i, s in enumerate(pack.source.tolist()) if s in (0 * L + 7, 2 * L + 7)]
    assert [pack.predictor_col[i].item() for i in first_of_segment] == [6, 6]
    mask = pack.additive_mask(torch.float32)
    assert mask[0, 0, 9, 7] == torch.finfo(torch.float32).min and mask[0, 0, 9, 0] == 0


def test_nothing_to_pack_gives_none():
    ids, attn, resp = collate_responses([[1, 2], [3, 4]], [[5], [6]], pad_token_id=0)
    assert pack_shared_prompts(ids, attn, resp, hidden_size=32) is None  # no two rows share a prompt
    resp_no_prompt = torch.tensor([[True, True], [True, True]])
    assert pack_shared_prompts(torch.tensor([[7, 8], [7, 8]]), torch.ones(2, 2), resp_no_prompt, hidden_size=32) is None
    # 8 long responses behind a short prompt, width 32: one packed row of 2 + 64 positions costs 66·192 + 66² = 17,028
    # against the plain 8 · (10·192 + 10²) = 16,160; at width 576 the projections dominate and packing pays
    ids, attn, resp = collate_responses([[1, 2]] * 8, [[3] * 8] * 8, pad_token_id=0)
    assert pack_shared_prompts(ids, attn, resp, hidden_size=32) is None
    assert pack_shared_prompts(ids, attn, resp, hidden_size=576) is not None
    assert packing_pays(B=3, L=4096, R=1, packed_width=8192, hidden_size=10**6)
    assert not packing_pays(B=3, L=4096, R=1, packed_width=8193, hidden_size=10**6)  # cheaper, but over the mask cap


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_dpo_pairs_give_the_plain_logprobs_entropies_and_gradients(attn_impl):
    model = tiny(attn_impl)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (7, 4, 9)]
    chosen = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (3, 6, 2)]
    rejected = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (5, 1, 4)]
    ids, attn, resp = collate_responses(prompts * 2, chosen + rejected, pad_token_id=0)
    plain, packed = both_ways(model, ids, attn, resp, temperature=0.7)
    assert_same(plain, packed)
    assert (packed[0][~resp] == 0).all() and (packed[0][resp] < 0).all()


def test_groups_unique_prompts_and_rows_without_a_response():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    p1, p2, p3 = (torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (16, 3, 9))
    prompts = [p1] * 4 + [p2] + [p3] * 2
    responses = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (4, 2, 5, 3, 6, 1, 3)]
    ids, attn, resp = collate_responses(prompts, responses, pad_token_id=0)
    resp[5] = False  # a row with no response token: all-zero log-probs, left out of the pack
    pack = pack_shared_prompts(ids, attn, resp, hidden_size=32)
    assert pack is not None and pack.input_ids.shape[0] == 3
    plain, packed = both_ways(model, ids, attn, resp)
    assert_same(plain, packed)
    assert (packed[0][5] == 0).all()


def test_left_padding_and_a_multiturn_response_with_a_hole():
    """Left-padded rows, and a response whose middle (a tool's output) is context, not response: the segment keeps
    those tokens as the plain pass sees them; only the response positions carry log-probs."""
    model = tiny()
    L = 12
    rows = [[3, 4, 5, 6, 9, 10, 11, 12], [3, 4, 5, 6, 13, 14], [3, 4, 5, 6, 15, 16, 17, 18, 19]]
    ids = torch.zeros(3, L, dtype=torch.long)
    attn = torch.zeros(3, L, dtype=torch.long)
    resp = torch.zeros(3, L, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, L - len(r):] = torch.tensor(r)
        attn[i, L - len(r):] = 1
        resp[i, L - len(r) + 4:] = True
    resp[2, L - 3] = False  # the hole: token 17 is a tool's output inside the response
    plain, packed = both_ways(model, ids, attn, resp)
    assert_same(plain, packed)
    assert packed[0][2, L - 3] == 0


def test_sequence_logprobs_takes_share_prompt():
    model = tiny()
    ids, attn, resp = collate_responses([[1, 2, 3]] * 2, [[4, 5], [6]], pad_token_id=0)
    with torch.no_grad():
        a = sequence_logprobs(model, ids, attn, resp)
        b = sequence_logprobs(model, ids, attn, resp, share_prompt=True)
    torch.testing.assert_close(b[0], a[0])
    assert torch.equal(b[1], a[1])


def test_attention_without_a_custom_mask_is_refused():
    model = tiny()
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        check_packable(model)
    ids, attn, resp = collate_responses([[1, 2, 3]] * 2, [[4, 5], [6]], pad_token_id=0)
    with pytest.raises(ValueError, match="share_prompt=False"):
        token_logprobs(model, ids, attn, response_mask=resp, share_prompt=True)
    with pytest.raises(ValueError, match="4D mask"):
        check_packable(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------
# The learner and the agents
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_group(learner_process_group):
    pytest.importorskip("deepspeed")


def count_packs(monkeypatch) -> list[int]:
    """Record the packed row count of every pass that packed (``token_logprobs`` took the shared-prompt path)."""
    from oat_agents.algorithms import logprobs

    packs: list[int] = []
    pack = logprobs.pack_shared_prompts

    def recording(*args):
        out = pack(*args)
        if out is not None:
            packs.append(out.input_ids.shape[0])
        return out

    monkeypatch.setattr(logprobs, "pack_shared_prompts", recording)
    return packs


def _weights(learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.state_dict_for_sync().items()}


def test_learner_refuses_share_prompt_for_an_unpackable_model_before_building(process_group):
    from oat_agents.learners import LearnerConfig, LearnerEngine

    model = tiny()
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="share_prompt"):
        LearnerEngine(model, LearnerConfig(zero_stage=0, share_prompt=True))


@pytest.mark.parametrize("zero_stage", [0, 3])
def test_dap_agent_takes_the_same_step_with_share_prompt(process_group, zero_stage):
    from oat_agents.agents.dap import DAPAgent, DAPAgentConfig, PreferencePair
    from oat_agents.algorithms.dap import DAPConfig
    from oat_agents.learners import LearnerConfig, LearnerEngine

    g = torch.Generator().manual_seed(3)
    pairs = []
    for plen, (lc, lr_) in zip((5, 7, 6, 8), ((4, 6), (3, 3), (6, 2), (1, 5))):
        ids = torch.randint(1, VOCAB, (plen + lc + lr_,), generator=g).tolist()
        pairs.append(PreferencePair(ids[:plen], ids[plen:plen + lc], ids[plen + lc:]))
    model = tiny()
    tok = types.SimpleNamespace(pad_token_id=0, eos_token_id=0)
    out = []
    for share in (False, True):
        # a large Adam eps: the update is proportional to the gradient, so float rounding stays rounding-sized
        learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(
            zero_stage=zero_stage, learning_rate=1e-2, micro_batch_size=2, gradient_accumulation_steps=2,
            adam_eps=1e-2, share_prompt=share), ref_model=copy.deepcopy(model))
        agent = DAPAgent(types.SimpleNamespace(tokenizer=tok), learner,
                         DAPAgentConfig(num_samples=2, max_seq_length=64, dap=DAPConfig(loss_type="dpo", beta=0.1)))
        agent.buffer = list(pairs)
        out.append((agent.learn(), _weights(learner)))
    (m0, w0), (m1, w1) = out
    assert m1["train/loss"] == pytest.approx(m0["train/loss"], rel=1e-5)
    assert m1["train/grad_norm"] == pytest.approx(m0["train/grad_norm"], rel=1e-4)
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], atol=1e-6, rtol=1e-5)


def test_group_rl_agent_takes_the_same_step_with_share_prompt(process_group, monkeypatch):
    """Dr.GRPO with a KL to the reference (k3 in the loss) and two epochs (PPO-style old log-probs): the policy's,
    the reference's and the old log-probs go through the packed pass, groups of 4 behind one prompt each."""
    from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.learners import LearnerConfig, LearnerEngine
    from oat_agents.policies.hf import HFPolicy
    from oat_agents.tiny import CharTokenizer

    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0)
    packs = count_packs(monkeypatch)
    out, buffer = [], None
    for share in (False, True):
        learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(
            zero_stage=0, learning_rate=1e-2, micro_batch_size=4, adam_eps=1e-2, share_prompt=share),
            ref_model=copy.deepcopy(model))
        agent = GroupRLAgent(HFPolicy(copy.deepcopy(model), tok, device="cpu"), learner, GroupRLAgentConfig(
            num_samples=4, max_new_tokens=4, seed=0, learn_epochs=2,
            pg=PGConfig(advantage_estimator="dr_grpo", kl_coef=0.1, kl_mode="loss")))
        if buffer is None:
            agent.act(["11+22+33+44="] * 4 + ["55+66+77+88+99="] * 4)
            agent.observe([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
            buffer = list(agent.buffer)
        agent.buffer = list(buffer)
        out.append((agent.learn(), _weights(learner)))
        if not share:
            assert packs == []
    # share_prompt: the reference and old log-probs and both epochs' steps over the 8 rows pack into 2 rows each
    assert packs == [2, 2, 2, 2]
    # each epoch's order permutes whole groups: rows that share a prompt stay adjacent (for mini-batches and chunks)
    for _ in range(5):
        order = agent._epoch_order(buffer)
        prompts = [tuple(buffer[i].prompt_ids) for i in order]
        assert prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4 and prompts[0] != prompts[4]
    (m0, w0), (m1, w1) = out
    for key in [k for k in m0 if k.startswith("train/") and ("loss" in k or "kl" in k or "entropy" in k)]:
        assert m1[key] == pytest.approx(m0[key], rel=1e-4, abs=1e-7), key
    assert "train/entropy" in m0 and any("kl" in k for k in m0)
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], atol=1e-6, rtol=1e-5)


def test_engine_reference_and_policy_logps_take_share_prompt(process_group, monkeypatch):
    """``LearnerEngine.ref_logps`` (a frozen reference and, with LoRA, the base model with adapters disabled) and
    ``policy_logps`` pack when ``share_prompt`` is on, with the plain pass's numbers."""
    pytest.importorskip("peft")
    from oat_agents.learners import LearnerConfig, LearnerEngine

    packs = count_packs(monkeypatch)
    g = torch.Generator().manual_seed(5)
    prompt = torch.randint(1, VOCAB, (12,), generator=g).tolist()
    ids, attn, resp = collate_responses([prompt] * 3, [[4, 5, 6], [7], [8, 9]], pad_token_id=0)
    model = tiny()
    for lora in (0, 4):
        got = {}
        for share in (False, True):
            learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(zero_stage=0, share_prompt=share, lora_rank=lora),
                                    ref_model=None if lora else copy.deepcopy(model))
            got[share] = (learner.ref_logps(ids, attn, 0.8, resp), learner.policy_logps(ids, attn, 0.8, resp))
        for a, b in zip(got[False], got[True]):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert packs == [1] * 4  # (ref, policy) x (full, LoRA), each one packed row


def test_bf16_packing_matches_the_plain_pass():
    model = tiny().to(torch.bfloat16)
    ids, attn, resp = collate_responses([list(range(1, 13))] * 2, [[20, 21, 22], [23, 24]], pad_token_id=0)
    with torch.no_grad():
        a, _ = token_logprobs(model, ids, attn, response_mask=resp)
        b, _ = token_logprobs(model, ids, attn, response_mask=resp, share_prompt=True)
    torch.testing.assert_close(b, a, atol=0.1, rtol=0.02)  # bf16 rounding; the mask is in the model's dtype


def test_sliding_window_and_alibi_models_are_refused():
    import transformers

    mistral = transformers.MistralForCausalLM(transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, sliding_window=8))
    with pytest.raises(ValueError, match="sliding-window"):
        check_packable(mistral)
    mistral.config.sliding_window = None
    check_packable(mistral)  # no window: fine
    bloom = transformers.BloomForCausalLM(transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="position_ids"):
        check_packable(bloom)
