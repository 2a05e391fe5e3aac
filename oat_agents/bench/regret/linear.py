r"""The ``linear`` testbed: a contextual dueling bandit with a linear latent utility (the setting of the theory).

Task (one per seed, from ``task_seed + seed``): ``C = num_train_contexts + num_eval_contexts`` contexts ``x``, each
with the same number ``Y = num_responses`` of responses ``y``, features ``φ(x, y) ~ N(0, I_d)`` i.i.d.
(``d = feature_dim``), latent utility ``r*(x, y) = θ*ᵀ φ(x, y)`` with ``θ*`` uniform on the sphere of radius
``utility_scale``. The oracle answers a duel ``(a, b)`` with a Bradley–Terry draw
``y ~ Bernoulli(σ(r*(x, a) − r*(x, b)))`` (1 = ``a ≻ b``). Training prompts are drawn uniformly from the first
``num_train_contexts`` contexts (the same stream for every method of a seed); the last ``num_eval_contexts`` are
held out for evaluation.

Policy: a softmax over the ``Y`` responses, ``π_w(y | x) = softmax_y(wᵀ φ(x, y))``; the reference is ``w_0 = 0``
(uniform). DPO's implicit reward ``β log π_w/π_ref = β wᵀφ + c(x)`` is then linear in the same features, so DPO
on a duel is exactly Bradley–Terry logistic regression of ``θ̂ = β w`` and the optimal policy is representable
(``w ∝ θ*`` makes the greedy response optimal). The learner takes ``learn_epochs`` Adam steps (lr
``learning_rate``) per round on the round's ``B = num_envs`` duels (online DPO keeps no replay buffer, like the LLM
agents); β = ``beta``. Candidates are ``K = num_samples`` i.i.d. samples of ``π_w`` at temperature 1 (2 for
``passive``/``offline``/``xpo``), so duplicates occur once ``π_w`` concentrates.

ERM: :class:`~oat_agents.exploration.enn.EpistemicRewardModel` on the same ``φ`` — with the default
``erm_hidden_layers=0`` every member is linear (``r_e = θ_eᵀφ + b_e``), i.e. the ERM can represent ``r*`` exactly
and the anchored ensemble approximates the Bayesian logistic-regression posterior of the theory.

Methods (as in :mod:`~oat_agents.bench.regret.arithmetic`, implemented here in tensors): ``passive`` (two samples
of ``π_w``), ``random`` (a uniform distinguishable pair of the same ``K`` candidates: the "random is hard to beat"
control; its ERM is trained only for the diagnostics), ``offline`` (two samples of ``π_ref``, never of ``π_w``),
``ee_ts``, ``bai_ts``, ``ids``, ``uncertainty`` (the selectors of :mod:`oat_agents.exploration.selectors` on the
ERM's ``(E, B, K)`` rewards), ``sea_rollout`` (``bai_ts`` + as many confident ERM-labelled rollout pairs as oracle
pairs once the ERM has seen ``4B`` labels), ``apl`` (highest predictive-entropy ``B`` of ``apl_pool_factor · B``
contexts, then the largest implicit-reward-margin pair) and ``xpo`` (duel (π sample, π_ref sample), DPO +
``xpo_alpha · log π(ỹ_ref)``).

Why exploration should help here: as ``π_w`` sharpens, two passive samples are often the same response or two
responses the model already ranks correctly, so most labels carry little information about ``θ*``; a selector
that sees ``K`` candidates and a posterior can duel the informative ones (BAI-TS, IDS, uncertainty) or the
near-optimal ones (E&E-TS: low cumulative regret). Anytime regret is that of the greedy policy
``argmax_y wᵀφ(x, y)`` on the held-out contexts, ``E_x[max_y r*(x, y) − r*(x, greedy)]``; cumulative regret is
``Σ_t max_y r*(x_t, y) − ½(r*(x_t, a_t) + r*(x_t, b_t))`` over the dueled pairs.

Budget: a run is a few seconds (tensors of ``B·K·d`` floats); see :data:`LinearConfig` for the defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from oat_agents.bench.regret.config import TWO_SAMPLE_METHODS, CommonConfig
from oat_agents.bench.regret.report import late_means

QUICK_METHODS: tuple[str, ...] = ("passive", "random", "ee_ts", "bai_ts", "ids")
SELECTOR_METHODS: tuple[str, ...] = ("random", "ee_ts", "bai_ts", "ids", "uncertainty", "sea_rollout")


@dataclass
class LinearConfig(CommonConfig):
    """Options of the ``linear`` testbed (module docstring)."""

    testbed: str = "linear"
    queries: int = 4096
    seeds: list[int] = field(default_factory=lambda: list(range(10)))
    num_samples: int = 8
    eval_every: int = 256
    feature_dim: int = 32
    num_responses: int = 64
    num_train_contexts: int = 1024
    num_eval_contexts: int = 256
    utility_scale: float = 2.0
    task_seed: int = 1000
    beta: float = 1.0
    # "lbfgs": DPO solved on all duels so far (the theory's learner); "adam": online steps on each round's duels.
    learner: str = "lbfgs"
    lbfgs_iters: int = 20
    # Ridge on θ̂ = β w in the lbfgs objective (a N(0, 1/dpo_ridge) prior on the implicit reward's weights).
    dpo_ridge: float = 1.0
    learning_rate: float = 0.05
    learn_epochs: int = 2
    xpo_alpha: float = 0.01
    erm_members: int = 10
    erm_hidden_layers: int = 0
    erm_hidden_dim: int = 64
    erm_lambda: float = 1.0
    erm_lr: float = 0.01
    erm_sgd_steps: int = 10
    erm_batch_size: int = 64

    @classmethod
    def quick(cls, out: str) -> LinearConfig:
        return cls(queries=512, seeds=[0, 1], methods=list(QUICK_METHODS), eval_every=128, out=out)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.testbed != "linear":
            raise ValueError(f"LinearConfig is the 'linear' testbed, got testbed={self.testbed!r}")
        if self.learner not in ("lbfgs", "adam"):
            raise ValueError(f"learner must be 'lbfgs' or 'adam', got {self.learner!r}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def describe(self) -> str:
        erm = (
            "linear" if self.erm_hidden_layers == 0 else f"{self.erm_hidden_layers}×{self.erm_hidden_dim} MLP"
        )
        return (
            f"Regret benchmark, testbed `linear`: d = {self.feature_dim} features, {self.num_responses} responses "
            f"per context, ‖θ*‖ = {self.utility_scale}, {self.num_train_contexts} training / "
            f"{self.num_eval_contexts} held-out contexts; softmax policy, DPO β = {self.beta}, Adam lr "
            f"{self.learning_rate} × {self.learn_epochs} steps per round; ERM {self.erm_members} {erm} members, "
            f"λ = {self.erm_lambda}. {self.queries} oracle queries, seeds {self.seeds}, {self.num_envs} contexts "
            f"per round ({self.num_samples} candidates each for the explorers, 2 for "
            f"{', '.join(TWO_SAMPLE_METHODS)})."
        )

    def plot_title(self) -> str:
        return (
            f"linear: contextual dueling bandit, d={self.feature_dim}, {len(self.seeds)} seeds (mean ± s.e.)"
        )


@dataclass
class LinearTask:
    """``features (C, Y, d)``, ``utility (C, Y) = features @ θ*`` and the split (first ``num_train`` contexts)."""

    features: torch.Tensor
    utility: torch.Tensor
    theta_star: torch.Tensor
    num_train: int


def make_task(cfg: LinearConfig, seed: int) -> LinearTask:
    """The seed's bandit: ``φ ~ N(0, I)``, ``θ*`` uniform on the sphere of radius ``utility_scale``."""
    gen = torch.Generator().manual_seed(cfg.task_seed + seed)
    contexts = cfg.num_train_contexts + cfg.num_eval_contexts
    features = torch.randn(contexts, cfg.num_responses, cfg.feature_dim, generator=gen)  # (C, Y, d)
    theta = torch.randn(cfg.feature_dim, generator=gen)
    theta = cfg.utility_scale * theta / theta.norm()
    return LinearTask(features, features @ theta, theta, cfg.num_train_contexts)  # utility (C, Y)


class SoftmaxPolicy:
    """``π_w(y | x) = softmax_y(wᵀφ(x, y))`` over the task's responses, trained by DPO (or XPO): ``learner="lbfgs"``
    minimises the objective over every duel so far, ``"adam"`` takes Adam steps on the round's duels only."""

    def __init__(self, task: LinearTask, cfg: LinearConfig):
        self.task, self.cfg = task, cfg
        self.w = torch.zeros(cfg.feature_dim, requires_grad=True)  # w_0 = 0: π_ref is uniform
        self.optimizer = torch.optim.Adam([self.w], lr=cfg.learning_rate)
        self._history: list[tuple[torch.Tensor, ...]] = []  # (contexts, chosen, rejected, ref samples or -1)

    def log_probs(self, contexts: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """``(n,)`` contexts → ``(n, Y)`` log π (or log π_ref, uniform) over every response."""
        phi = self.task.features[contexts]  # (n, Y, d)
        if reference:
            return torch.full(phi.shape[:2], -float(np.log(phi.shape[1])))
        return F.log_softmax(phi @ self.w, dim=1)  # (n, Y)

    @torch.no_grad()
    def sample(
        self, contexts: torch.Tensor, k: int, gen: torch.Generator, reference: bool = False
    ) -> torch.Tensor:
        """``(n, k)`` response indices, i.i.d. from π_w (or π_ref) at temperature 1."""
        return torch.multinomial(
            self.log_probs(contexts, reference).exp(), k, replacement=True, generator=gen
        )

    @torch.no_grad()
    def greedy(self, contexts: torch.Tensor) -> torch.Tensor:
        """``(n,)`` argmax_y wᵀφ(x, y) (ties → lowest index)."""
        return (self.task.features[contexts] @ self.w).argmax(dim=1)

    def _objective(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        ref_samples: torch.Tensor | None,
    ) -> torch.Tensor:
        """Mean over duels of ``ℓ^DPO`` (+ ``xpo_alpha · log π(ỹ_ref)`` where given). The log-softmax normaliser
        cancels in DPO's margin, so ``ℓ^DPO`` needs only ``wᵀφ`` of the two responses: ``(n, d)`` rows each."""
        from oat_agents.algorithms.dap import dpo_losses

        phi = self.task.features
        lw, ll = phi[contexts, chosen] @ self.w, phi[contexts, rejected] @ self.w  # (n,) unnormalised log π
        zeros = torch.zeros_like(lw)  # log π_ref is a constant: it cancels too
        losses = dpo_losses(lw, ll, zeros, zeros, beta=self.cfg.beta)
        if (
            ref_samples is not None
        ):  # log π(ỹ|x) = wᵀφ(x, ỹ) − log Σ_y exp wᵀφ(x, y), normaliser once per context
            unique, inverse = contexts.unique(return_inverse=True)
            log_z = torch.logsumexp(phi[unique] @ self.w, dim=1)  # (U,)
            logp_ref = phi[contexts, ref_samples] @ self.w - log_z[inverse]  # (n,)
            losses = losses + self.cfg.xpo_alpha * logp_ref
        return losses.mean()

    def learn(
        self,
        contexts: torch.Tensor,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        ref_samples: torch.Tensor | None = None,
    ) -> float:
        """Learn from the round's duels ``chosen ≻ rejected`` (each ``(n,)``; with ``ref_samples``, XPO's
        ``xpo_alpha · log π(ỹ_ref)`` term too). Returns the last loss.

        ``lbfgs``: L-BFGS (warm-started, ``lbfgs_iters`` iterations) on
        ``(1/N) [Σ_{i ≤ N} ℓ_i + (dpo_ridge/2) ‖β w‖²]`` over all ``N`` duels so far — DPO solved on its data,
        so the policy is as good as the duels make it. ``adam``: ``learn_epochs`` Adam steps on the round's mean
        loss (no replay, like the LLM agents)."""
        if self.cfg.learner == "lbfgs":
            self._history.append(
                (contexts, chosen, rejected) + (() if ref_samples is None else (ref_samples,))
            )
            ctx, ch, rj, *rf = (torch.cat(t) for t in zip(*self._history))
            refs = rf[0] if rf else None
            n = ctx.shape[0]
            optimizer = torch.optim.LBFGS(
                [self.w], lr=1.0, max_iter=self.cfg.lbfgs_iters, line_search_fn="strong_wolfe"
            )

            def closure() -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                ridge = (self.cfg.dpo_ridge / (2 * n)) * (self.cfg.beta * self.w).pow(2).sum()
                loss = self._objective(ctx, ch, rj, refs) + ridge
                loss.backward()
                return loss

            return float(optimizer.step(closure).detach())
        from oat_agents.algorithms.dap import dpo_losses
        from oat_agents.exploration.optimism import xpo_loss

        rows = torch.arange(contexts.shape[0])
        ref = -float(np.log(self.cfg.num_responses))
        loss = torch.zeros(())
        for _ in range(self.cfg.learn_epochs):
            logp = self.log_probs(contexts)  # (n, Y)
            lw, ll = logp[rows, chosen], logp[rows, rejected]  # (n,) each
            losses = dpo_losses(
                lw, ll, torch.full_like(lw, ref), torch.full_like(ll, ref), beta=self.cfg.beta
            )
            if ref_samples is None:
                loss = losses.mean()
            else:
                loss, _ = xpo_loss(losses, logp[rows, ref_samples], self.cfg.xpo_alpha)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())


def _erm(cfg: LinearConfig, seed: int) -> Any:
    from oat_agents.exploration.enn import EpistemicRewardModel, ERMConfig

    return EpistemicRewardModel(
        ERMConfig(
            feature_dim=cfg.feature_dim,
            num_members=cfg.erm_members,
            hidden_dim=cfg.erm_hidden_dim,
            num_hidden_layers=cfg.erm_hidden_layers,
            reg_lambda=cfg.erm_lambda,
            lr=cfg.erm_lr,
            sgd_steps=cfg.erm_sgd_steps,
            batch_size=cfg.erm_batch_size,
            seed=seed,
        )
    )


def run_job(method: str, cfg: LinearConfig, seed: int) -> dict[str, Any]:
    """One (method, seed) run; every random stream is derived from ``(seed, purpose)``, the prompt stream and the
    task are the same for every method of a seed."""
    from oat_agents.exploration.prompt_entropy import (
        implicit_reward_margin_pairs,
        predictive_entropy,
        select_high_entropy_prompts,
    )
    from oat_agents.exploration.selectors import select_confident_pairs, select_pairs, ts_agreement

    start = time.perf_counter()
    task = make_task(cfg, seed)
    policy = SoftmaxPolicy(task, cfg)
    prompt_rng = np.random.default_rng([seed, 1])  # the prompt stream: identical across methods
    label_rng = np.random.default_rng([seed, 2])
    rollout_rng = np.random.default_rng([seed, 3])
    sample_gen = torch.Generator().manual_seed(seed * 1000 + 4)
    select_gen = torch.Generator().manual_seed(seed * 1000 + 5)
    erm = _erm(cfg, seed) if method in SELECTOR_METHODS else None
    selector = "bai_ts" if method == "sea_rollout" else method
    k = 2 if method in TWO_SAMPLE_METHODS else cfg.num_samples
    B = cfg.num_envs
    eval_contexts = torch.arange(task.num_train, task.features.shape[0])
    best_eval = task.utility[eval_contexts].max(dim=1).values  # (n_eval,)
    optimal_eval = task.utility[eval_contexts].argmax(dim=1)

    def evaluate() -> tuple[float, float]:
        greedy = policy.greedy(eval_contexts)
        value = task.utility[eval_contexts, greedy]
        return float((best_eval - value).mean()), float((greedy == optimal_eval).float().mean())

    queries, cumulative, model_pairs = 0, 0.0, 0
    eval_queries, anytime, accuracy = [0], *[[v] for v in evaluate()]
    regret_queries, cumulative_regret, rows_log = [], [], []
    next_eval = cfg.eval_every
    while queries < cfg.queries:
        metrics: dict[str, float] = {}
        if method == "apl":
            pool = torch.as_tensor(prompt_rng.integers(0, task.num_train, size=cfg.apl_pool_factor * B))
            cands = policy.sample(pool, k, sample_gen)  # (P, K)
            with torch.no_grad():
                logp = policy.log_probs(pool)  # (P, Y)
            cand_logp = logp.gather(1, cands)  # (P, K)
            entropy = predictive_entropy(cand_logp)  # (P,)
            keep = select_high_entropy_prompts(entropy, B)
            metrics["explorer/apl_entropy"] = float(entropy[keep].mean())
            metrics["explorer/apl_pool_entropy"] = float(entropy.mean())
            contexts, cands = pool[keep], cands[keep]
            pairs, _ = implicit_reward_margin_pairs(
                cand_logp[keep], torch.full_like(cand_logp[keep], -float(np.log(cfg.num_responses))), cfg.beta
            )
        else:
            contexts = torch.as_tensor(prompt_rng.integers(0, task.num_train, size=B))
            if method == "xpo":
                cands = torch.cat(
                    [
                        policy.sample(contexts, 1, sample_gen),
                        policy.sample(contexts, 1, sample_gen, reference=True),
                    ],
                    dim=1,
                )
            else:
                cands = policy.sample(contexts, k, sample_gen, reference=method == "offline")  # (B, K)
            if erm is not None:
                rewards = erm.rewards(task.features[contexts[:, None], cands])  # (E, B, K)
                selection = select_pairs(selector, rewards, select_gen)
                pairs = selection.indices
                metrics.update(selection.metrics)
            else:
                pairs = torch.tensor([[0, 1]]).expand(B, 2)
        rows = torch.arange(B)
        a, b = cands[rows, pairs[:, 0]], cands[rows, pairs[:, 1]]  # (B,) response indices
        r_a, r_b = task.utility[contexts, a], task.utility[contexts, b]
        labels = torch.as_tensor(label_rng.random(B) < torch.sigmoid(r_a - r_b).numpy(), dtype=torch.float32)
        cumulative += float((task.utility[contexts].max(dim=1).values - 0.5 * (r_a + r_b)).sum())
        queries += B
        metrics["explorer/same_pair_rate"] = float((a == b).float().mean())
        sorted_c = cands.sort(dim=1).values
        metrics["explorer/distinct_candidates"] = float(
            (1 + (sorted_c[:, 1:] != sorted_c[:, :-1]).sum(1)).float().mean()
        )
        if erm is not None:
            feat_a, feat_b = task.features[contexts, a], task.features[contexts, b]  # (B, d) each
            distinct = a != b
            if bool(distinct.any()):  # the ERM's accuracy on labels it has not trained on yet
                mean_a, mean_b = erm.rewards(feat_a).mean(0), erm.rewards(feat_b).mean(0)
                correct = ((mean_a > mean_b) == (labels > 0.5)) & distinct
                metrics["eval/rm_accuracy"] = float(correct.sum()) / float(distinct.sum())
            erm.update(feat_a, feat_b, labels, mask=distinct)
        chosen = torch.where(labels > 0.5, a, b)
        rejected = torch.where(labels > 0.5, b, a)
        learn_contexts = contexts
        if method == "sea_rollout" and erm.num_queries >= 4 * B:
            m = int(round(B * cfg.rollout_fraction / (1.0 - cfg.rollout_fraction)))
            extra = torch.as_tensor(rollout_rng.integers(0, task.num_train, size=m))
            extra_cands = policy.sample(extra, cfg.num_samples, sample_gen)  # (M, K)
            extra_rewards = erm.rewards(task.features[extra[:, None], extra_cands])  # (E, M, K)
            conf, _ = select_confident_pairs(extra_rewards, select_gen)  # arm 0 ≻ arm 1 under a random member
            rows_m = torch.arange(m)
            learn_contexts = torch.cat([contexts, extra])
            chosen = torch.cat([chosen, extra_cands[rows_m, conf[:, 0]]])
            rejected = torch.cat([rejected, extra_cands[rows_m, conf[:, 1]]])
            model_pairs += m
            metrics["explorer/model_data_ratio"] = m / (B + m)
            metrics["explorer/ts_agreement_rollout"] = float(ts_agreement(extra_rewards).mean())
        policy.learn(learn_contexts, chosen, rejected, ref_samples=cands[:, 1] if method == "xpo" else None)
        rows_log.append(metrics)
        regret_queries.append(queries)
        cumulative_regret.append(cumulative)
        if queries >= next_eval or queries >= cfg.queries:
            regret, acc = evaluate()
            eval_queries.append(queries)
            anytime.append(regret)
            accuracy.append(acc)
            next_eval += cfg.eval_every
    return {
        **late_means(rows_log),
        "eval_queries": eval_queries,
        "anytime_regret": anytime,
        "accuracy": accuracy,
        "regret_queries": regret_queries,
        "cumulative_regret": cumulative_regret,
        "queries": queries,
        "model_pairs": model_pairs,
        "seconds": time.perf_counter() - start,
    }
