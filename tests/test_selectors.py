"""Pair selectors over ensemble rewards (E, B, K), and the model-rollout helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from oat_agents.exploration.selectors import (
    SELECTORS,
    duel_variance,
    erm_labels,
    gather_pair_rewards,
    ids_terms,
    pair_epistemic_variance,
    select_bai_ts,
    select_best_of_n,
    select_ee_ts,
    select_ids,
    select_pairs,
    select_passive,
    select_random,
    select_uncertainty,
    split_model_rollout,
    ts_agreement,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tile(member_rows: list[list[float]], num_prompts: int) -> torch.Tensor:
    """Same per-member rewards for every prompt: (E, K) → (E, B, K)."""
    r = torch.tensor(member_rows, dtype=torch.float32)
    return r.unsqueeze(1).expand(-1, num_prompts, -1).contiguous()


# ------------------------------------------------------------------------------------ shared checks


@pytest.mark.parametrize("method", SELECTORS)
def test_every_selector_shapes_determinism_and_metrics(method):
    rewards = torch.randn(6, 5, 7, generator=gen(1))
    a = select_pairs(method, rewards, gen(3))
    b = select_pairs(method, rewards, gen(3))
    assert a.indices.shape == (5, 2) and a.indices.dtype == torch.long
    assert torch.equal(a.indices, b.indices) and a.metrics == b.metrics
    assert bool(((a.indices >= 0) & (a.indices < 7)).all())
    assert bool((a.indices[:, 0] != a.indices[:, 1]).all())  # default settings never duel a response with itself
    assert set(a.metrics) >= {"explorer/ts_agreement", "explorer/pair_epistemic_var", "explorer/clash_rate"}
    assert a.metrics["explorer/pair_epistemic_var"] == pytest.approx(
        float(pair_epistemic_variance(rewards, a.indices).mean())
    )


def test_input_validation():
    with pytest.raises(ValueError, match="unknown selector"):
        select_pairs("greedy", torch.randn(2, 1, 3), gen())
    with pytest.raises(ValueError, match=r"\(E, B, K\)"):
        select_passive(torch.randn(3, 4), gen())
    with pytest.raises(ValueError, match="at least 2 candidates"):
        select_bai_ts(torch.randn(3, 4, 1), gen())
    with pytest.raises(TypeError, match="torch.Generator"):
        select_passive(torch.randn(2, 2, 3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        select_uncertainty(torch.full((2, 1, 3), float("nan")))
    with pytest.raises(ValueError, match="at least 2 ensemble members"):
        select_ee_ts(torch.randn(1, 2, 3), gen())
    with pytest.raises(ValueError, match="max_tries"):
        select_ee_ts(torch.randn(3, 2, 3), gen(), max_tries=4)
    with pytest.raises(ValueError, match="clash_fallback"):
        select_ee_ts(torch.randn(3, 2, 3), gen(), clash_fallback="skip")


# ---------------------------------------------------------------------------------------- metrics


def test_metric_formulas_by_hand():
    # Members' argmaxes: 0, 0, 1  →  counts c = [2, 1, 0]  →  agreement = (2·1) / (3·2) = 1/3.
    rewards = tile([[3.0, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 4.0, 1.0]], 2)
    assert torch.allclose(ts_agreement(rewards), torch.full((2,), 1 / 3))
    assert torch.equal(ts_agreement(tile([[1.0, 0.0]], 3)), torch.ones(3))  # E = 1
    # Var_e(R_0 − R_1) with differences [2, 2, −4]: mean 0, unbiased var (4 + 4 + 16) / 2 = 12.
    idx = torch.tensor([[0, 1], [1, 0]])
    assert torch.allclose(pair_epistemic_variance(rewards, idx), torch.tensor([12.0, 12.0]))
    v = duel_variance(rewards)
    assert v.shape == (2, 3, 3)
    assert torch.allclose(v, v.transpose(1, 2)) and torch.equal(torch.diagonal(v, dim1=1, dim2=2), torch.zeros(2, 3))
    assert v[0, 0, 1].item() == pytest.approx(12.0)


# ----------------------------------------------------------------------------------------- passive


def test_passive_is_uniform_over_distinct_pairs():
    rewards = torch.zeros(1, 6000, 3)
    sel = select_passive(rewards, gen(0))
    pairs = sel.indices
    assert bool((pairs[:, 0] != pairs[:, 1]).all())
    counts = {p: 0 for p in itertools.permutations(range(3), 2)}
    for i, j in pairs.tolist():
        counts[(i, j)] += 1
    # 6 ordered pairs, each ≈ 1000 times.
    assert all(850 < c < 1150 for c in counts.values()), counts
    assert not torch.equal(select_passive(rewards, gen(1)).indices, pairs)


# ----------------------------------------------------------------------------------------- E&E TS


def test_ee_ts_two_members_with_different_winners_duel_them():
    rewards = tile([[5.0, 1.0, 0.0, 2.0], [0.0, 1.0, 6.0, 2.0]], 50)
    sel = select_ee_ts(rewards, gen(0))
    assert {tuple(sorted(p)) for p in sel.indices.tolist()} == {(0, 2)}
    assert sel.metrics["explorer/clash_rate"] == 0.0
    # Both orders occur: the first arm is a Thompson draw.
    assert {p[0] for p in sel.indices.tolist()} == {0, 2}


def test_ee_ts_resamples_members_before_falling_back():
    # Members 0 and 1 prefer candidate 0; member 2 prefers candidate 1.
    rewards = tile([[3.0, 1.0, 2.0], [3.0, 2.0, 1.0], [1.0, 3.0, 2.0]], 600)
    sel = select_ee_ts(rewards, gen(0))  # max_tries = E = 3: always resolves to {0, 1}
    assert {tuple(sorted(p)) for p in sel.indices.tolist()} == {(0, 1)}
    # Initial clash = member order starts with members 0 and 1: probability 2/6 = 1/3.
    assert sel.metrics["explorer/clash_rate"] == pytest.approx(1 / 3, abs=0.06)
    # With only 2 tries and no fallback the clashes stay (identical pair, to be masked by the caller).
    kept = select_ee_ts(rewards, gen(0), max_tries=2, clash_fallback="none")
    same = kept.indices[:, 0] == kept.indices[:, 1]
    assert kept.metrics["explorer/same_pair_rate"] == pytest.approx(float(same.float().mean()))
    assert kept.metrics["explorer/same_pair_rate"] == pytest.approx(kept.metrics["explorer/clash_rate"])
    assert bool((kept.indices[same, 0] == 0).all())


def test_ee_ts_clash_fallbacks():
    # Every member ranks 2 > 0 > 1 > 3: every Thompson draw clashes.
    rewards = tile([[2.0, 1.0, 3.0, 0.0], [2.5, 1.0, 3.0, 0.5], [1.0, 0.0, 3.0, -1.0]], 400)
    sb = select_ee_ts(rewards, gen(0))
    assert sb.metrics["explorer/clash_rate"] == 1.0
    assert torch.equal(sb.indices, torch.tensor([[2, 0]]).expand(400, 2))  # member 2's second best
    rnd = select_ee_ts(rewards, gen(0), clash_fallback="random")
    assert bool((rnd.indices[:, 0] == 2).all()) and bool((rnd.indices[:, 1] != 2).all())
    assert set(rnd.indices[:, 1].tolist()) == {0, 1, 3}
    none = select_ee_ts(rewards, gen(0), clash_fallback="none")
    assert none.metrics["explorer/same_pair_rate"] == 1.0


def test_ee_ts_first_arm_matches_thompson_probabilities():
    # Three of four members prefer candidate 0: P(first arm = 0) = 3/4.
    rewards = tile([[2.0, 1.0], [2.0, 1.0], [2.0, 1.0], [1.0, 2.0]], 4000)
    sel = select_ee_ts(rewards, gen(5))
    freq = (sel.indices[:, 0] == 0).float().mean().item()
    assert freq == pytest.approx(0.75, abs=0.03)
    assert sel.metrics["explorer/ts_agreement"] == pytest.approx(0.5)  # (3·2 + 0) / (4·3)


# ------------------------------------------------------------------------------------------ BAI TS


def test_bai_ts_second_arm_maximises_duel_variance_against_first():
    # All members prefer candidate 0, so the first arm is 0. Duel variances against 0:
    # k=1: diffs [−1, −1, −1] → 0;  k=2: diffs [−1, −3, −5] → var 4;  k=3: diffs [−2, −2, −4] → var 4/3.
    rewards = tile([[5.0, 4.0, 4.0, 3.0], [5.0, 4.0, 2.0, 3.0], [5.0, 4.0, 0.0, 1.0]], 10)
    sel = select_bai_ts(rewards, gen(0))
    assert torch.equal(sel.indices, torch.tensor([[0, 2]]).expand(10, 2))
    assert sel.metrics["explorer/pair_epistemic_var"] == pytest.approx(4.0)


def test_bai_ts_random_brute_force():
    rewards = torch.randn(5, 30, 6, generator=gen(2))
    sel = select_bai_ts(rewards, gen(4))
    for b, (i, j) in enumerate(sel.indices.tolist()):
        assert i in set(rewards[:, b].argmax(dim=1).tolist())  # some member's argmax
        scores = [(rewards[:, b, k] - rewards[:, b, i]).var().item() if k != i else -1.0 for k in range(6)]
        assert j == int(np.argmax(scores))


# ------------------------------------------------------------------------------ uncertainty, BoN


def test_uncertainty_picks_most_uncertain_pair_brute_force():
    rewards = torch.randn(4, 20, 5, generator=gen(7))
    sel = select_uncertainty(rewards)
    for b, (i, j) in enumerate(sel.indices.tolist()):
        best = max(
            itertools.combinations(range(5), 2),
            key=lambda p: (rewards[:, b, p[0]] - rewards[:, b, p[1]]).var().item(),
        )
        assert (i, j) == best
    # A single member has no epistemic variance: deterministic first pair.
    assert select_uncertainty(torch.randn(1, 3, 4)).indices.tolist() == [[0, 1]] * 3


def test_best_of_n_uses_ensemble_mean():
    # Means: [1.5, 2.0, 0.5, 1.9]; member 0 alone would pick candidate 0.
    rewards = tile([[3.0, 1.0, 0.0, 1.8], [0.0, 3.0, 1.0, 2.0]], 2)
    sel = select_best_of_n(rewards)
    assert sel.indices.tolist() == [[1, 3], [1, 3]]


# ------------------------------------------------------------------------------ random-pair control


def test_random_is_uniform_over_distinguishable_pairs_in_both_orders():
    # Candidates 1 and 2 are identical under every member (same features): (1, 2) is never dueled; the other
    # 5 unordered pairs of K = 4 each have probability 1/5, and each order 1/10.
    rewards = tile([[0.0, 1.0, 1.0, 2.0], [3.0, -1.0, -1.0, 0.5]], 5000)
    sel = select_random(rewards, gen(0))
    pairs = [tuple(p) for p in sel.indices.tolist()]
    assert all(i != j for i, j in pairs)
    assert not any(sorted(p) == [1, 2] for p in pairs)
    unordered = {q: sum(tuple(sorted(p)) == q for p in pairs) for q in itertools.combinations(range(4), 2)}
    assert unordered[(1, 2)] == 0
    assert all(880 < c < 1120 for q, c in unordered.items() if q != (1, 2)), unordered  # 1000 ± 3.5 sd
    first_smaller = sum(i < j for i, j in pairs) / len(pairs)
    assert first_smaller == pytest.approx(0.5, abs=0.03)
    assert not torch.equal(select_random(rewards, gen(1)).indices, sel.indices)


def test_random_falls_back_to_distinct_indices_when_all_candidates_are_identical():
    sel = select_random(tile([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], 300), gen(0))
    assert bool((sel.indices[:, 0] != sel.indices[:, 1]).all())
    assert set(map(tuple, sel.indices.tolist())) == set(itertools.permutations(range(3), 2))


# ---------------------------------------------------------------------- information-directed sampling


def _ids_by_hand(member_rewards: list[list[float]]) -> dict[tuple[int, int], tuple[float, float]]:
    """``{(i, j): (Δ, g)}`` for one prompt from the module docstring's formulas, in plain Python."""
    def h(p: float) -> float:
        return 0.0 if p in (0.0, 1.0) else -p * np.log(p) - (1 - p) * np.log(1 - p)

    E, K = len(member_rewards), len(member_rewards[0])
    out = {}
    for i, j in itertools.combinations(range(K), 2):
        regret = sum(max(r) - 0.5 * (r[i] + r[j]) for r in member_rewards) / E
        ps = [1 / (1 + np.exp(-(r[i] - r[j]))) for r in member_rewards]
        gain = h(sum(ps) / E) - sum(h(p) for p in ps) / E
        out[(i, j)] = (regret, gain)
    return out


def test_ids_picks_the_pair_of_least_information_ratio_on_a_hand_made_ensemble():
    # Candidate 0 is the best under both members; the members disagree about 1 vs 2 (the most uncertain duel,
    # which `uncertainty` picks) but both rate them far below 0. By the formulas (values from _ids_by_hand):
    #   (0, 1): Δ = 1.000, g = 0.0501 → Ψ = 19.96    (0, 2): Δ = 1.000, g = 0.0501 → Ψ = 19.96
    #   (1, 2): Δ = 2.000, g = 0.3278 → Ψ = 12.2   ← least ratio: the disagreement is worth the regret.
    members = [[4.0, 3.0, 1.0], [4.0, 1.0, 3.0]]
    table = _ids_by_hand(members)
    ratio = {q: d**2 / g for q, (d, g) in table.items()}
    assert min(ratio, key=ratio.get) == (1, 2)
    sel = select_ids(tile(members, 3), gen())
    assert sorted(sel.indices[0].tolist()) == [1, 2] and select_uncertainty(tile(members, 1)).indices.tolist() == [[1, 2]]
    regret, gain = ids_terms(tile(members, 1))
    for (i, j), (d, g) in table.items():
        assert regret[0, i, j].item() == pytest.approx(d, rel=1e-5) and gain[0, i, j].item() == pytest.approx(g, rel=1e-4)
        assert regret[0, j, i].item() == pytest.approx(d, rel=1e-5) and gain[0, j, i].item() == pytest.approx(g, rel=1e-4)
    assert sel.metrics["explorer/ids_regret"] == pytest.approx(table[(1, 2)][0], rel=1e-5)
    assert sel.metrics["explorer/ids_info_gain"] == pytest.approx(table[(1, 2)][1], rel=1e-4)
    assert sel.metrics["explorer/ids_fallback_rate"] == 0.0
    # Now the members dispute which of 0 and 1 is best. Ψ: (0, 1) 0.4167² / 0.0703 = 2.47, (0, 2) 338, (1, 2) 5204.
    # `uncertainty` would duel (0, 2) (Var_e(R_0 − R_2) = 1.083 > 1.0 for (0, 1)); IDS duels the cheap,
    # informative top pair.
    members = [[4.0, 3.5, 0.0], [3.0, 3.5, 0.5], [4.5, 3.0, 0.0]]
    table = _ids_by_hand(members)
    ratio = {q: d**2 / g for q, (d, g) in table.items()}
    assert min(ratio, key=ratio.get) == (0, 1)
    assert sorted(select_ids(tile(members, 2), gen()).indices[0].tolist()) == [0, 1]
    assert select_uncertainty(tile(members, 1)).indices.tolist() == [[0, 2]]


def test_ids_orders_arms_by_mean_and_matches_brute_force_on_random_ensembles():
    rewards = torch.randn(6, 40, 5, generator=gen(11)) * 2
    sel = select_ids(rewards)
    mean = rewards.mean(dim=0)
    for b, (i, j) in enumerate(sel.indices.tolist()):
        table = _ids_by_hand(rewards[:, b].tolist())
        ratio = {q: d**2 / g for q, (d, g) in table.items() if g > 1e-9}
        best = min(ratio.values())
        assert ratio[tuple(sorted((i, j)))] == pytest.approx(best, rel=1e-4)
        assert mean[b, i] >= mean[b, j]  # arm 0 = higher ensemble-mean reward


def test_ids_without_information_exploits_the_least_regret_pair():
    # One member: no disagreement, g = 0 everywhere → the pair of least Δ = the top two (2, then 0).
    sel = select_ids(tile([[1.0, -1.0, 3.0, 0.5]], 4))
    assert sel.indices.tolist() == [[2, 0]] * 4
    assert sel.metrics["explorer/ids_fallback_rate"] == 1.0
    # Identical candidates (2 and 3) are never dueled while an informative pair exists.
    sel = select_ids(tile([[0.0, 1.0, 5.0, 5.0], [1.0, 0.0, 5.0, 5.0]], 2))
    assert sorted(sel.indices[0].tolist()) != [2, 3]
    with pytest.raises(ValueError, match="ids_min_gain"):
        select_ids(torch.randn(2, 1, 3), ids_min_gain=-1.0)
    assert torch.equal(select_pairs("ids", tile([[1.0, -1.0, 3.0]], 2), gen(), ids_min_gain=0.0).indices,
                       torch.tensor([[2, 0], [2, 0]]))


# ---------------------------------------------------------------------------------- model rollout


def test_split_model_rollout_masks():
    model, oracle = split_model_rollout(10, 0.3, torch.Generator().manual_seed(0))
    assert model.dtype == bool and model.shape == (10,)
    assert model.sum() == 3 and oracle.sum() == 7 and not bool((model & oracle).any())
    again, _ = split_model_rollout(10, 0.3, torch.Generator().manual_seed(0))
    assert np.array_equal(model, again)
    np_model, _ = split_model_rollout(10, 0.3, np.random.default_rng(1))
    assert np_model.sum() == 3
    assert split_model_rollout(4, 0.0, np.random.default_rng(0))[0].sum() == 0
    assert split_model_rollout(4, 1.0, np.random.default_rng(0))[1].sum() == 0
    # Every prompt gets picked for model labels eventually (uniform choice).
    hits = sum(split_model_rollout(5, 0.2, np.random.default_rng(s))[0] for s in range(200))
    assert hits.min() > 20
    with pytest.raises(ValueError, match="fraction"):
        split_model_rollout(4, 1.5, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        split_model_rollout(4, 0.5, 0)


def test_erm_labels_and_pair_gather():
    # Members' (arm0, arm1) rewards for 3 prompts.
    pair = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]],
            [[0.0, 0.5], [0.0, -1.0], [2.0, 2.0]],
        ]
    )
    # Mean differences: [0.25, −0.5, 0] → hard labels [1, 0, 0] (tie → 0).
    assert erm_labels(pair).tolist() == [1.0, 0.0, 0.0]
    soft = erm_labels(pair, soft=True)
    sig = torch.sigmoid
    expected = torch.stack(
        [
            (sig(torch.tensor(1.0)) + sig(torch.tensor(-0.5))) / 2,
            (sig(torch.tensor(-2.0)) + sig(torch.tensor(1.0))) / 2,
            torch.tensor(0.5),
        ]
    )
    assert torch.allclose(soft, expected)
    rewards = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    idx = torch.tensor([[0, 3], [2, 1], [1, 1]])
    got = gather_pair_rewards(rewards, idx)
    assert got.shape == (2, 3, 2)
    assert got[1, 1].tolist() == [rewards[1, 1, 2].item(), rewards[1, 1, 1].item()]
    with pytest.raises(ValueError, match=r"\(E, B, 2\)"):
        erm_labels(torch.zeros(2, 3))
