"""HFPolicy on a tiny char-level Llama built from config (no hub)."""

from __future__ import annotations

import copy

import pytest
import torch

from oat_agents.algorithms.logprobs import sequence_logprobs
from oat_agents.policies import Generations, HFPolicy, Policy, SamplingParams
from oat_agents.tiny import CharTokenizer, build_tiny_llama, save_tiny_model

PROMPTS = ["1+2=", "12+34="]
TARGET = "hello world."


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer()


def tiny(tokenizer, seed=0):
    return build_tiny_llama(len(tokenizer), hidden=32, layers=1, heads=2, seed=seed)


@pytest.fixture(scope="module")
def policy(tokenizer):
    return HFPolicy(tiny(tokenizer), tokenizer, device="cpu")


@pytest.fixture(scope="module")
def trained_policy(tokenizer):
    """A model overfit to answer "Q:" with TARGET then EOS, so greedy output is known."""
    model = tiny(tokenizer, seed=1)
    ids = tokenizer("Q:" + TARGET, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id]])], dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for _ in range(60):
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert loss.item() < 0.05
    return HFPolicy(model, tokenizer, device="cpu")


def test_generation_shapes_and_n(policy):
    g = policy.generate(PROMPTS, n=3, sampling=SamplingParams(max_new_tokens=7, seed=0))
    assert isinstance(g, Generations)
    assert [len(x) for x in g.texts] == [3, 3]
    for i in range(2):
        for j in range(3):
            ids, lps = g.token_ids[i][j], g.logprobs[i][j]
            assert 1 <= len(ids) <= 7 and len(lps) == len(ids)
            assert all(lp <= 0.0 and lp == lp for lp in lps)  # finite, non-positive log-probs
            assert g.finish_reasons[i][j] in ("stop", "length")
            if g.finish_reasons[i][j] == "length":
                assert len(ids) == 7
    assert len(g.flat_texts()) == 6
    # n defaults to sampling.n
    g2 = policy.generate(PROMPTS, sampling=SamplingParams(max_new_tokens=3, n=2, seed=0))
    assert [len(x) for x in g2.texts] == [2, 2]
    assert isinstance(policy, Policy)


def test_seed_reproduces_and_leaves_global_rng(policy):
    sp = SamplingParams(max_new_tokens=8, seed=123)
    torch.manual_seed(0)
    a = policy.generate(PROMPTS, n=2, sampling=sp)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3)), "generate(seed=...) must not consume the global RNG"
    b = policy.generate(PROMPTS, n=2, sampling=sp)
    assert a.token_ids == b.token_ids and a.logprobs == b.logprobs and a.texts == b.texts
    c = policy.generate(PROMPTS, n=2, sampling=SamplingParams(max_new_tokens=8, seed=124))
    assert c.token_ids != a.token_ids


def test_greedy_is_deterministic_and_argmax(policy, tokenizer):
    sp = SamplingParams(temperature=0.0, max_new_tokens=6)
    a = policy.generate(PROMPTS, n=2, sampling=sp)
    b = policy.generate(PROMPTS, n=2, sampling=sp)
    assert a.token_ids == b.token_ids
    assert a.token_ids[0][0] == a.token_ids[0][1]
    # The first greedy token is the argmax of a plain forward pass on the prompt.
    ids = tokenizer(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = policy.model(input_ids=ids).logits[0, -1]
    assert a.token_ids[0][0][0] == int(logits.argmax())
    assert a.logprobs[0][0][0] == pytest.approx(float(torch.log_softmax(logits, -1).max()), abs=1e-5)
    # top_k=1 sampling collapses to greedy.
    k1 = policy.generate(PROMPTS, n=1, sampling=SamplingParams(top_k=1, max_new_tokens=6, seed=7))
    assert [r[0] for r in k1.token_ids] == [r[0] for r in a.token_ids]


def test_eos_stop_strings_and_length(trained_policy, tokenizer):
    greedy = SamplingParams(temperature=0.0, max_new_tokens=20)
    g = trained_policy.generate(["Q:"], sampling=greedy)
    assert g.texts == [[TARGET]]
    assert g.finish_reasons == [["stop"]]
    assert g.token_ids[0][0][-1] == tokenizer.eos_token_id  # EOS kept in token ids, not in text

    s = trained_policy.generate(
        ["Q:"], sampling=SamplingParams(temperature=0.0, max_new_tokens=20, stop=(" w",))
    )
    assert s.texts == [["hello"]]
    assert s.finish_reasons == [["stop"]]
    # Token ids run up to and including the tokens that completed the stop string.
    assert tokenizer.decode(s.token_ids[0][0]) == "hello w"
    assert len(s.logprobs[0][0]) == len(s.token_ids[0][0])
    # The earliest of several stop strings wins.
    s2 = trained_policy.generate(
        ["Q:"], sampling=SamplingParams(temperature=0.0, max_new_tokens=20, stop=("d", "ll"))
    )
    assert s2.texts == [["he"]]

    short = trained_policy.generate(["Q:"], sampling=SamplingParams(temperature=0.0, max_new_tokens=3))
    assert short.texts == [["hel"]] and short.finish_reasons == [["length"]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_recomputed_forward(policy, tokenizer, temperature):
    # Prompts of different lengths: generation is left-padded, the recomputation is unpadded.
    g = policy.generate(
        ["7*8=", "123+456+789="],
        n=2,
        sampling=SamplingParams(temperature=temperature, max_new_tokens=6, seed=3),
    )
    for i in range(2):
        for j in range(2):
            prompt_ids = g.prompt_token_ids[i]
            resp = g.token_ids[i][j]
            ids = torch.tensor([prompt_ids + resp])
            response_mask = torch.tensor([[False] * len(prompt_ids) + [True] * len(resp)])
            with torch.no_grad():
                total, length, per_token = sequence_logprobs(
                    policy.model, ids, torch.ones_like(ids), response_mask, temperature=temperature
                )
            recomputed = per_token[0, len(prompt_ids) :].tolist()
            assert recomputed == pytest.approx(g.logprobs[i][j], abs=1e-4)
            assert int(length) == len(resp)


def test_load_weights_changes_and_restores(tokenizer, tmp_path):
    policy = HFPolicy(tiny(tokenizer, seed=0), tokenizer, device="cpu")
    sp = SamplingParams(max_new_tokens=6, seed=5)
    original_state = copy.deepcopy(policy.model.state_dict())
    before = policy.generate(PROMPTS, n=2, sampling=sp)

    other = tiny(tokenizer, seed=99)
    policy.load_weights(other.state_dict())
    changed = policy.generate(PROMPTS, n=2, sampling=sp)
    assert changed.logprobs != before.logprobs
    assert policy.weights_version == 1

    policy.load_weights(original_state)
    restored = policy.generate(PROMPTS, n=2, sampling=sp)
    assert restored.token_ids == before.token_ids and restored.logprobs == before.logprobs

    # From a save_pretrained directory and from a torch.save file.
    save_tiny_model(tmp_path / "other", model=other, tokenizer=tokenizer)
    policy.load_weights(tmp_path / "other")
    assert policy.generate(PROMPTS, n=2, sampling=sp).logprobs == changed.logprobs
    torch.save(original_state, tmp_path / "orig.pt")
    policy.load_weights(str(tmp_path / "orig.pt"))
    assert policy.generate(PROMPTS, n=2, sampling=sp).logprobs == before.logprobs

    # Bad weights are rejected before anything changes.
    with pytest.raises(ValueError, match="unknown"):
        policy.load_weights({"not.a.param": torch.zeros(1)})
    bad = {"model.norm.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="shape mismatch"):
        policy.load_weights(bad)
    with pytest.raises(FileNotFoundError):
        policy.load_weights(tmp_path / "missing.pt")
    assert policy.generate(PROMPTS, n=2, sampling=sp).logprobs == before.logprobs


def test_chat_template_and_message_prompts(tokenizer):
    policy = HFPolicy(tiny(tokenizer), tokenizer, device="cpu", apply_chat_template=True)
    g = policy.generate(["hi"], sampling=SamplingParams(max_new_tokens=2, seed=0))
    assert tokenizer.decode(g.prompt_token_ids[0], skip_special_tokens=True) == "user: hi\nassistant: "
    plain = HFPolicy(tiny(tokenizer), tokenizer, device="cpu")
    m = plain.generate(
        [[{"role": "user", "content": "hi"}]], sampling=SamplingParams(max_new_tokens=2, seed=0)
    )
    assert m.prompt_token_ids == g.prompt_token_ids
    p = plain.generate(["hi"], sampling=SamplingParams(max_new_tokens=2, seed=0))
    assert tokenizer.decode(p.prompt_token_ids[0], skip_special_tokens=True) == "hi"


def test_from_path_and_chunking(tokenizer, tmp_path):
    save_tiny_model(tmp_path / "m", model=tiny(tokenizer), tokenizer=tokenizer)
    policy = HFPolicy(tmp_path / "m", device="cpu", max_batch_size=2)
    sp = SamplingParams(temperature=0.0, max_new_tokens=4)
    chunked = policy.generate(PROMPTS, n=3, sampling=sp)
    whole = HFPolicy(tiny(tokenizer), tokenizer, device="cpu").generate(PROMPTS, n=3, sampling=sp)
    assert chunked.token_ids == whole.token_ids


def test_bad_arguments(policy):
    with pytest.raises(TypeError, match="sequence of prompts"):
        policy.generate("1+2=")
    with pytest.raises(ValueError, match="n must be"):
        policy.generate(PROMPTS, n=0)
    with pytest.raises(ValueError, match="chat_template|messages"):
        HFPolicy(policy.model, _NoTemplate(policy.tokenizer), apply_chat_template=True).generate(["x"])
    assert policy.generate([]).texts == []
    for kwargs in ({"temperature": -1.0}, {"top_p": 0.0}, {"top_k": -1}, {"max_new_tokens": 0}, {"n": 0}):
        with pytest.raises(ValueError):
            SamplingParams(**kwargs)
    with pytest.raises(TypeError):
        SamplingParams(stop="a")  # type: ignore[arg-type]


class _NoTemplate:
    """Tokenizer proxy without a chat template."""

    chat_template = None

    def __init__(self, inner):
        self._inner = inner
        self.eos_token_id = inner.eos_token_id
        self.pad_token_id = inner.pad_token_id
        self.bos_token_id = inner.bos_token_id


def test_sequence_logprobs_is_padding_invariant(policy, tokenizer):
    """Left- or right-padded batches give the unpadded log-probs (position ids follow the mask)."""
    a = tokenizer("12+3=15")["input_ids"]
    b = tokenizer("7=7")["input_ids"]
    pad = tokenizer.pad_token_id

    def single(ids, n_resp):
        t = torch.tensor([ids])
        mask = torch.tensor([[False] * (len(ids) - n_resp) + [True] * n_resp])
        with torch.no_grad():
            return sequence_logprobs(policy.model, t, torch.ones_like(t), mask)[2][0, -n_resp:]

    ref_a, ref_b = single(a, 2), single(b, 1)
    width = len(a)
    for side in ("left", "right"):
        gap = [pad] * (width - len(b))
        row_b = gap + b if side == "left" else b + gap
        att_b = [0] * len(gap) + [1] * len(b) if side == "left" else [1] * len(b) + [0] * len(gap)
        resp_b = [False] * width
        resp_b[(width - 1) if side == "left" else (len(b) - 1)] = True
        ids = torch.tensor([a, row_b])
        att = torch.tensor([[1] * width, att_b])
        resp = torch.tensor([[False] * (width - 2) + [True, True], resp_b])
        with torch.no_grad():
            sums, lengths, per_token = sequence_logprobs(policy.model, ids, att, resp)
        assert torch.allclose(per_token[0, -2:], ref_a, atol=1e-5)
        assert torch.allclose(per_token[1][resp[1]], ref_b, atol=1e-5)
        assert lengths.tolist() == [2, 1]
        assert sums[1].item() == pytest.approx(ref_b.sum().item(), abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_generation_reproducible_and_consistent(tokenizer):
    policy = HFPolicy(tiny(tokenizer), tokenizer, device="cuda")
    sp = SamplingParams(temperature=0.8, max_new_tokens=8, seed=11)
    a = policy.generate(PROMPTS, n=2, sampling=sp)
    b = policy.generate(PROMPTS, n=2, sampling=sp)
    assert a.token_ids == b.token_ids
    prompt_ids, resp = a.prompt_token_ids[1], a.token_ids[1][0]
    ids = torch.tensor([prompt_ids + resp], device="cuda")
    mask = torch.tensor([[False] * len(prompt_ids) + [True] * len(resp)], device="cuda")
    with torch.no_grad():
        per_token = sequence_logprobs(policy.model, ids, torch.ones_like(ids), mask, temperature=0.8)[2]
    assert per_token[0, len(prompt_ids) :].tolist() == pytest.approx(a.logprobs[1][0], abs=1e-3)


def _recording(policy: HFPolicy) -> list[tuple[int, int]]:
    """Record the (rows, columns) of every forward pass of ``policy.model``."""
    shapes: list[tuple[int, int]] = []
    forward = policy.model.forward

    def record(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    policy.model.forward = record
    return shapes


@pytest.mark.parametrize("sampling", [SamplingParams(temperature=0.0, max_new_tokens=6),
                                      SamplingParams(temperature=1.0, max_new_tokens=6, seed=3),
                                      SamplingParams(temperature=0.7, max_new_tokens=8, seed=1, stop=("1",))])
def test_shared_prefill_gives_the_same_generations(tokenizer, sampling):
    """share_prefill: each distinct prompt is prefilled once and its cache copied to its n rows; generate then runs
    one column per step. Same tokens, log-probs, texts and finish reasons as the plain prefill."""
    model = tiny(tokenizer, seed=2)
    plain = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu")
    shared = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu", share_prefill=True)
    shapes = _recording(shared)
    prompts = ["3+4=", "12+9=", "7="]  # different lengths: left padding in the prefill
    a, b = plain.generate(prompts, n=3, sampling=sampling), shared.generate(prompts, n=3, sampling=sampling)
    assert a.token_ids == b.token_ids and a.texts == b.texts and a.finish_reasons == b.finish_reasons
    for la, lb in zip(a.logprobs, b.logprobs):
        for ra, rb in zip(la, lb):
            assert ra == pytest.approx(rb, rel=1e-4, abs=1e-4)  # the batch of 3 vs 9 rows rounds differently
    width = max(len(shared.encode_prompt(p)) for p in prompts)
    assert shapes[0] == (3, width - 1)  # one prefill row per distinct prompt, all but the last column
    assert all(s == (9, 1) for s in shapes[1:])  # then every row, one token at a time


def test_shared_prefill_falls_back_when_nothing_repeats(tokenizer):
    shared = HFPolicy(tiny(tokenizer), tokenizer, device="cpu", share_prefill=True, max_batch_size=2)
    shapes = _recording(shared)
    g = shared.generate(["1+2=", "3+4="], n=1, sampling=SamplingParams(temperature=0.0, max_new_tokens=2))
    assert len(g.texts) == 2 and shapes[0] == (2, len(shared.encode_prompt("1+2=")))  # the plain prefill
    shapes.clear()
    shared.generate(["1+2="], n=3, sampling=SamplingParams(temperature=0.0, max_new_tokens=2))  # chunks of 2 + 1
    assert shapes[0][0] == 1 and shapes[1] == (2, 1)  # the 2-row chunk shares; the 1-row chunk has nothing to share


def test_shared_prefill_when_chunks_split_a_prompts_rows(tokenizer):
    """max_batch_size=4 with 3 samples of 2 prompts: chunks [a a a b] and [b b]; each chunk shares what repeats in it."""
    model = tiny(tokenizer, seed=2)
    plain = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu", max_batch_size=4)
    shared = HFPolicy(copy.deepcopy(model), tokenizer, device="cpu", share_prefill=True, max_batch_size=4)
    shapes = _recording(shared)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=4, seed=7)
    a, b = plain.generate(["12+3=", "4+56="], n=3, sampling=sampling), shared.generate(["12+3=", "4+56="], n=3,
                                                                                      sampling=sampling)
    assert a.token_ids == b.token_ids and a.texts == b.texts
    prefills = [s for s in shapes if s[1] > 1]
    assert [s[0] for s in prefills] == [2, 1]  # 2 distinct rows in the first chunk, 1 in the second
