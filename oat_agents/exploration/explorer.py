r"""The SEA explorer: frozen features → epistemic reward model → pair selection, updated from the oracle.

One round with ``B`` prompts and ``K = num_samples`` candidates each:

1. :meth:`Explorer.select` encodes all ``B·K`` (prompt, candidate) texts in one batched call of the
   feature backbone (``φ(x, y) ∈ R^D``, e.g. the frozen initial policy's last hidden state), evaluates
   the ensemble ``R[e, b, k] = r_e(φ(x_b, y_{b,k}))`` (``(E, B, K)``) and picks a pair per prompt with
   the configured selector (``passive``, ``ee_ts``, ``bai_ts``, ``uncertainty``, ``random``, ``ids``,
   ``best_of_n``; see :mod:`oat_agents.exploration.selectors`).
2. After the env's ``step``, :meth:`Explorer.update` receives the oracle labels of the chosen pairs
   (1 = ``a ≻ b``). *Before* training on them it scores the ERM's own prediction
   ``ŷ = 1[mean_e r_e(a) > mean_e r_e(b)]`` against the labels: ``eval/rm_accuracy`` is therefore
   measured on pairs the ERM has never been trained on (held-out by construction). Then it runs
   :meth:`EpistemicRewardModel.update` (anchored Bradley–Terry, ``sgd_steps`` Adam steps on its replay
   buffer). Pairs of identical responses are masked (no preference signal) but still count as queries.
3. :meth:`Explorer.model_labels` labels pairs with the ERM itself (ensemble-mean preference) and
   :meth:`Explorer.confident_pairs` picks oat's model-rollout pairs (one random member's max-margin pair,
   ordered by it) for Dyna-style model rollouts; they never reach the ERM's buffer (that would be
   self-training).
4. :meth:`Explorer.best_of_n` returns, per prompt, the candidate with the highest ensemble-mean reward.

Metrics (:meth:`Explorer.pop_metrics`): the selector's ``explorer/*`` (``ts_agreement``,
``pair_epistemic_var``, ``clash_rate``, ``same_pair_rate``), ``explorer/reward_std`` (mean over
prompts/candidates of the ensemble standard deviation of ``R``), ``eval/rm_accuracy`` and the ERM's
``train/rm/*``. Selection randomness comes from a ``torch.Generator`` seeded with ``config.seed``, so a
run is reproducible from its seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from oat_agents.exploration.enn import EpistemicRewardModel, ERMConfig
from oat_agents.exploration.selectors import (
    CLASH_FALLBACKS,
    SELECTORS,
    erm_labels,
    gather_pair_rewards,
    select_confident_pairs,
    select_pairs,
)

FeatureFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor]


@dataclass
class ExplorerConfig:
    """Options of :class:`Explorer` (selector + the ERM it trains)."""

    method: str = "ee_ts"
    """Pair selector: ``passive``, ``ee_ts`` (E&E double TS), ``bai_ts`` (SEA BAI), ``uncertainty``,
    ``random`` (random distinguishable pair: the control), ``ids`` (information-directed sampling),
    ``best_of_n``."""
    num_members: int = 10
    """Ensemble members ``E`` of the ERM."""
    hidden_dim: int = 64
    """Width of each member MLP."""
    num_hidden_layers: int = 1
    """Hidden layers per member MLP."""
    reg_lambda: float = 1.0
    """Anchor-prior strength λ (the loss uses λ / N)."""
    lr: float = 3e-3
    """Adam learning rate of the ERM."""
    sgd_steps: int = 10
    """ERM optimiser steps per update (per round)."""
    batch_size: int = 64
    """ERM minibatch (pairs)."""
    buffer_size: int = 100_000
    """ERM replay buffer capacity (pairs)."""
    max_tries: int | None = None
    """``ee_ts`` only: members tried for the second arm (default E)."""
    clash_fallback: str = "second_best"
    """``ee_ts`` only: what to do when every tried member agrees with the first arm."""
    seed: int = 0
    """Seeds the ERM initialisation/minibatches and the selector's random draws."""

    def __post_init__(self) -> None:
        if self.method not in SELECTORS:
            raise ValueError(f"method must be one of {SELECTORS}, got {self.method!r}")
        if self.clash_fallback not in CLASH_FALLBACKS:
            raise ValueError(f"clash_fallback must be one of {CLASH_FALLBACKS}, got {self.clash_fallback!r}")
        if self.method == "ee_ts" and self.num_members < 2:
            raise ValueError("ee_ts needs num_members >= 2 (two Thompson draws)")

    def erm_config(self, feature_dim: int) -> ERMConfig:
        return ERMConfig(
            feature_dim=feature_dim,
            num_members=self.num_members,
            hidden_dim=self.hidden_dim,
            num_hidden_layers=self.num_hidden_layers,
            reg_lambda=self.reg_lambda,
            lr=self.lr,
            sgd_steps=self.sgd_steps,
            batch_size=self.batch_size,
            buffer_size=self.buffer_size,
            seed=self.seed,
        )


def _check_candidates(prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> int:
    """Validate ``B`` prompts with ``K`` candidates each; returns ``K``."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not a single string")
    if len(prompts) == 0:
        raise ValueError("need at least one prompt")
    if len(candidates) != len(prompts):
        raise ValueError(f"got {len(candidates)} candidate lists for {len(prompts)} prompts")
    sizes = {len(c) for c in candidates}
    if len(sizes) != 1:
        raise ValueError(f"every prompt needs the same number of candidates, got sizes {sorted(sizes)}")
    (k,) = sizes
    if k < 2:
        raise ValueError(f"need at least 2 candidates per prompt, got {k}")
    return k


class Explorer:
    """Pair selection with an epistemic reward model on frozen features (module docstring).

    Args:
        features: ``(prompts, responses) -> (N, D)`` float tensor with a ``dim`` attribute, e.g.
            :class:`~oat_agents.exploration.features.HiddenStateFeatures` over the frozen initial policy.
        config: :class:`ExplorerConfig`.
        device: where the ERM lives.
    """

    def __init__(self, features: FeatureFn, config: ExplorerConfig | None = None, device: str = "cpu"):
        dim = getattr(features, "dim", None)
        if not callable(features) or not isinstance(dim, int) or dim < 1:
            raise TypeError("features must be callable (prompts, responses) -> (N, D) with an int attribute dim")
        self.features = features
        self.config = config or ExplorerConfig()
        self.erm = EpistemicRewardModel(self.config.erm_config(dim), device=device)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._metrics: dict[str, float] = {}

    # -- scoring ---------------------------------------------------------------------------
    def candidate_features(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(B, K, D)`` features of every candidate, computed in one batched backbone call."""
        k = _check_candidates(prompts, candidates)
        flat_prompts = [p for p in prompts for _ in range(k)]
        flat_responses = [r for c in candidates for r in c]
        feats = self.features(flat_prompts, flat_responses)
        return feats.reshape(len(prompts), k, -1)

    def rewards(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(E, B, K)`` rewards of every ensemble member for every candidate."""
        return self.erm.rewards(self.candidate_features(prompts, candidates))

    def select(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
        """``(B, 2)`` indices of the pair to duel per prompt, by ``config.method``."""
        return self.select_with_rewards(prompts, candidates)[0]

    def select_with_rewards(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Like :meth:`select`, also returning the ``(E, B, K)`` rewards it used."""
        rewards = self.rewards(prompts, candidates)
        return self.select_from_rewards(rewards), rewards

    def select_from_rewards(self, rewards: torch.Tensor) -> np.ndarray:
        """``(B, 2)`` pairs by ``config.method`` from already computed ``(E, B, K)`` rewards."""
        c = self.config
        opts: dict[str, Any] = {}
        if c.method == "ee_ts":
            opts = {"max_tries": c.max_tries, "clash_fallback": c.clash_fallback}
        selection = select_pairs(c.method, rewards, self.generator, **opts)
        self._metrics.update(selection.metrics)
        self._metrics["explorer/reward_std"] = float(rewards.std(dim=0).mean()) if rewards.shape[0] > 1 else 0.0
        return selection.indices.numpy().astype(np.int64)

    def confident_pairs(self, rewards: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model-rollout pairs as oat's ``ModelBasedExplorer``: per prompt one uniformly drawn member's
        max-margin pair, ordered by that member (:func:`select_confident_pairs`).

        Returns ``(pairs (B, 2), labels (B,), members (B,))``; every label is ``1.0`` (arm 0 is the
        sampled member's best candidate, arm 1 its worst).
        """
        pairs, members = select_confident_pairs(rewards, self.generator)
        b = pairs.shape[0]
        return pairs.numpy().astype(np.int64), np.ones(b, dtype=np.float64), members.numpy().astype(np.int64)

    # -- model labels and best-of-n ---------------------------------------------------------
    def model_labels(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> np.ndarray:
        """ERM labels ``1[mean_e r_e(a) > mean_e r_e(b)]`` (``(B,)`` float) — no oracle involved."""
        rewards = self.rewards(prompts, [[a, b] for a, b in zip(responses_a, responses_b, strict=True)])
        return erm_labels(rewards).numpy().astype(np.float64)

    @staticmethod
    def labels_from_rewards(rewards: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
        """ERM labels of already-scored candidates: ``rewards (E, B, K)``, ``pairs (B, 2)`` → ``(B,)``."""
        pair_rewards = gather_pair_rewards(rewards, torch.as_tensor(pairs, dtype=torch.long))
        return erm_labels(pair_rewards).numpy().astype(np.float64)

    def best_of_n(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[str]:
        """Per prompt, the candidate with the highest ensemble-mean reward."""
        rewards = self.rewards(prompts, candidates)
        best = rewards.mean(dim=0).argmax(dim=1).tolist()
        return [candidates[i][k] for i, k in enumerate(best)]

    # -- learning --------------------------------------------------------------------------
    def update(
        self,
        prompts: Sequence[str],
        responses_a: Sequence[str],
        responses_b: Sequence[str],
        labels: Sequence[float] | np.ndarray,
    ) -> dict[str, float]:
        """Train the ERM on oracle-labelled pairs (1 = ``a ≻ b``); returns (and keeps) its metrics.

        ``eval/rm_accuracy`` is the ERM's accuracy on these pairs *before* training on them, over the
        pairs with distinct responses (identical ones have no preference to predict).
        """
        n = len(prompts)
        if not (len(responses_a) == len(responses_b) == n):
            raise ValueError(f"got {n} prompts, {len(responses_a)} responses_a, {len(responses_b)} responses_b")
        labels_t = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        if labels_t.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels_t.shape)}")
        if n == 0:
            return {}
        feats = self.features(list(prompts) * 2, list(responses_a) + list(responses_b))
        feat_a, feat_b = feats[:n], feats[n:]
        distinct = torch.tensor([a != b for a, b in zip(responses_a, responses_b)], dtype=torch.bool)
        metrics: dict[str, float] = {}
        if bool(distinct.any()):
            with torch.no_grad():
                mean_a = self.erm.rewards(feat_a).mean(dim=0)
                mean_b = self.erm.rewards(feat_b).mean(dim=0)
            predicted = mean_a > mean_b
            correct = (predicted == (labels_t > 0.5)) & distinct
            metrics["eval/rm_accuracy"] = float(correct.sum()) / float(distinct.sum())
        metrics.update(self.erm.update(feat_a, feat_b, labels_t, mask=distinct))
        self._metrics.update(metrics)
        return metrics

    def pop_metrics(self) -> dict[str, float]:
        """The metrics gathered since the last call (selection + update), then cleared."""
        out, self._metrics = self._metrics, {}
        return out

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "erm": self.erm.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if dict(state["config"]) != asdict(self.config):
            raise ValueError(f"config mismatch: checkpoint {state['config']} vs explorer {asdict(self.config)}")
        self.erm.load_state_dict(state["erm"])
        self.generator.set_state(state["generator"])
