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
from oat_agents.algorithms.shared_prompt import check_packable, pack_shared_prompts
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
    prompts = [[1, 2, 3], [5, 6], [1, 2, 3]]
    ids, attn, resp = collate_responses(prompts, [[10, 11], [12], [13, 14, 15]], pad_token_id=0)
    pack = pack_shared_prompts(ids, attn, resp)
    assert pack is not None
    assert pack.input_ids.tolist() == [[1, 2, 3, 10, 11, 13, 14, 15], [5, 6, 12, 1, 1, 1, 1, 1]]
    assert pack.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 4, 5]  # every segment restarts after the prompt
    assert pack.packed_tokens == 11 and int(attn.sum()) == 14
    allowed = pack.allowed[0, 0]
    assert allowed[5].tolist() == [True, True, True, False, False, True, False, False]  # prompt + itself only
    assert allowed[4].tolist() == [True, True, True, True, True, False, False, False]
    # the first token of each segment is predicted by the last prompt position
    L = ids.shape[1]
    first_of_segment = [i for i, s in enumerate(pack.source.tolist()) if s in (0 * L + 3, 2 * L + 3)]
    assert [pack.predictor_col[i].item() for i in first_of_segment] == [2, 2]
    mask = pack.additive_mask(torch.float32)
    assert mask[0, 0, 5, 3] == torch.finfo(torch.float32).min and mask[0, 0, 5, 0] == 0


def test_nothing_to_pack_gives_none():
    ids, attn, resp = collate_responses([[1, 2], [3, 4]], [[5], [6]], pad_token_id=0)
    assert pack_shared_prompts(ids, attn, resp) is None  # no two rows share a prompt
    resp_no_prompt = torch.tensor([[True, True], [True, True]])
    assert pack_shared_prompts(torch.tensor([[7, 8], [7, 8]]), torch.ones(2, 2), resp_no_prompt) is None


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
    p1, p2, p3 = (torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (6, 3, 5))
    prompts = [p1] * 4 + [p2] + [p3] * 2
    responses = [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in (4, 2, 5, 3, 6, 1, 3)]
    ids, attn, resp = collate_responses(prompts, responses, pad_token_id=0)
    resp[5] = False  # a row with no response token: all-zero log-probs, left out of the pack
    pack = pack_shared_prompts(ids, attn, resp)
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
def process_group():
    pytest.importorskip("deepspeed")
    from oat_agents.learners import init_distributed

    init_distributed()


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


def test_group_rl_agent_takes_the_same_step_with_share_prompt(process_group):
    """Dr.GRPO with a KL to the reference (k3 in the loss) and two mini-batch steps: the policy's and the reference's
    log-probs go through the packed pass, groups of 4 behind one prompt each."""
    from oat_agents.agents.group_rl import GroupRLAgent, GroupRLAgentConfig
    from oat_agents.algorithms.pg import PGConfig
    from oat_agents.learners import LearnerConfig, LearnerEngine
    from oat_agents.policies.hf import HFPolicy
    from oat_agents.tiny import CharTokenizer

    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=2, heads=2, seed=0)
    out, buffer = [], None
    for share in (False, True):
        learner = LearnerEngine(copy.deepcopy(model), LearnerConfig(
            zero_stage=0, learning_rate=1e-2, micro_batch_size=4, adam_eps=1e-2, share_prompt=share),
            ref_model=copy.deepcopy(model))
        agent = GroupRLAgent(HFPolicy(copy.deepcopy(model), tok, device="cpu"), learner, GroupRLAgentConfig(
            num_samples=4, max_new_tokens=4, seed=0, num_mini_batches=2,
            pg=PGConfig(advantage_estimator="dr_grpo", kl_coef=0.1, kl_mode="loss")))
        if buffer is None:
            agent.act(["3+4=", "3+4=", "3+4=", "3+4=", "12+9=", "12+9=", "12+9=", "12+9="])
            agent.observe([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
            buffer = list(agent.buffer)
        agent.buffer = list(buffer)
        out.append((agent.learn(), _weights(learner)))
    (m0, w0), (m1, w1) = out
    for key in [k for k in m0 if k.startswith("train/") and ("loss" in k or "kl" in k or "entropy" in k)]:
        assert m1[key] == pytest.approx(m0[key], rel=1e-4, abs=1e-7), key
    assert "train/entropy" in m0 and any("kl" in k for k in m0)
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], atol=1e-6, rtol=1e-5)
