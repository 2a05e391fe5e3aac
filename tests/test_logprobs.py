"""The one log-prob convention (:mod:`oat_agents.algorithms.logprobs`): shape and alignment, padding on either side,
temperature, masking, entropy, and every consumer (learner, reference, PPO old log-probs) returning the same numbers."""

from __future__ import annotations

import copy

import pytest
import torch

from oat_agents.algorithms.logprobs import position_ids, sequence_logprobs, token_entropy, token_logprobs
from oat_agents.tiny import build_tiny_llama


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_tiny_llama(40, hidden=32, layers=2, heads=2, seed=3)
    m.eval()
    return m


def by_hand(model, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[x_t]`` for one unpadded sequence, aligned with it (entry 0 is 0)."""
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0, :-1].double() / temperature
    picked = logits.log_softmax(-1).gather(-1, x[0, 1:, None]).squeeze(-1)
    return torch.cat([torch.zeros(1, dtype=torch.double), picked]).float()


def test_aligned_with_input_ids_and_independent_of_padding_side(model):
    seqs = [[5, 6, 7, 8, 9], [11, 12, 13]]
    L, pad = 5, 0
    right = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
    left = torch.tensor([[pad] * (L - len(s)) + s for s in seqs])
    mask_right = (torch.arange(L)[None] < torch.tensor([[len(s)] for s in seqs])).long()
    mask_left = mask_right.flip(-1)
    with torch.no_grad():
        lp_right, _ = token_logprobs(model, right, mask_right, temperature=0.7)
        lp_left, _ = token_logprobs(model, left, mask_left, temperature=0.7)
    assert lp_right.shape == right.shape and (lp_right[:, 0] == 0).all()
    for i, s in enumerate(seqs):
        expected = by_hand(model, s, temperature=0.7)
        torch.testing.assert_close(lp_right[i, : len(s)], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(lp_left[i, L - len(s) + 1 :], expected[1:], atol=2e-5, rtol=1e-4)
    assert position_ids(mask_left)[1].tolist() == [0, 0, 0, 1, 2]


def test_response_mask_entropy_and_sequence_sums(model):
    x = torch.tensor([[3, 4, 5, 6, 7, 8]])
    attn = torch.ones_like(x)
    response = torch.tensor([[False, False, False, True, True, True]])
    with torch.no_grad():
        full, ent_full = token_logprobs(model, x, attn, with_entropy=True)
        masked, ent = token_logprobs(model, x, attn, response_mask=response, with_entropy=True)
        total, length, per_token = sequence_logprobs(model, x, attn, response)
        logits = model(input_ids=x).logits[:, :-1]
    assert (masked[~response] == 0).all() and torch.equal(masked[response], full[response])
    assert (ent[~response] == 0).all() and (ent[response] > 0).all()
    torch.testing.assert_close(ent_full[:, 1:], token_entropy(logits))  # entropy of the distribution that predicts x_t
    torch.testing.assert_close(total, masked.sum(-1))
    assert torch.equal(per_token, masked)
    assert length.tolist() == [3]


def test_learner_reference_and_old_logprobs_share_the_convention(model):
    from oat_agents.learners import LearnerConfig, LearnerEngine, init_distributed

    init_distributed()
    engine = LearnerEngine(copy.deepcopy(model), LearnerConfig(zero_stage=0, micro_batch_size=2),
                           ref_model=copy.deepcopy(model))
    x = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 10, 11]])
    attn = (x != 0).long()
    response = attn.bool() & (torch.arange(5)[None] >= 2)
    with torch.no_grad():
        direct, _ = token_logprobs(model, x, attn, temperature=0.5, response_mask=response)
    for got in (engine.ref_logps(x, attn, temperature=0.5, response_mask=response),
                engine.policy_logps(x, attn, temperature=0.5, response_mask=response)):
        torch.testing.assert_close(got, direct, atol=1e-5, rtol=1e-4)


def test_only_positions_that_predict_a_response_token_reach_the_lm_head(model):
    """With a response mask the LM head runs on the last ``L - first + 1`` positions only (``logits_to_keep``), and
    the log-probs equal the full computation's."""
    seen = []
    forward = model.forward

    def recording(*args, **kwargs):
        seen.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    x = torch.tensor([[3, 4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 0]])
    attn = (x != 0).long()
    response = torch.zeros_like(x, dtype=torch.bool)
    response[0, 4:] = True
    response[1, 5:6] = True
    with torch.no_grad():
        full, full_ent = token_logprobs(model, x, attn, temperature=0.8, with_entropy=True)
        model.forward = recording
        try:
            part, part_ent = token_logprobs(model, x, attn, temperature=0.8, response_mask=response, with_entropy=True)
        finally:
            del model.forward
    assert seen == [4]  # positions 3..6 predict tokens 4..7 (the earliest response token is at 4)
    torch.testing.assert_close(part[response], full[response], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part_ent[response], full_ent[response], atol=1e-5, rtol=1e-5)
    assert (part[~response] == 0).all()
