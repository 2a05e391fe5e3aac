r"""SEA agent (Liu et al. 2024, "Sample-Efficient Alignment for LLMs", arXiv 2411.01493): a DAP agent whose
duels are chosen by an epistemic reward model (ERM), plus optional Dyna-style model rollouts.

Per round (``B = num_envs`` oracle-queried prompts):

1. ``act(prompts)``: the policy samples ``num_samples`` candidates for the ``B`` env prompts and for
   ``M`` extra *rollout* prompts (one batched ``generate``); the :class:`~oat_agents.exploration.explorer.Explorer`
   scores all of them with the ERM (one batched feature call). The ``B`` env prompts get the exploration
   selector's pair (``ee_ts`` / ``bai_ts`` / ...); the ``M`` rollout prompts get, by default
   (``rollout_pair="confident"``), oat's ``ModelBasedExplorer`` pair: one uniformly drawn ensemble member's
   max-margin pair (its best vs its worst candidate), labelled by that member — a trust region of
   confident synthetic labels. ``rollout_pair="selector"`` (the former behaviour) gives them the selector's
   pair labelled by the ensemble mean, which for ``bai_ts`` is the maximal-epistemic-variance duel, i.e.
   the noisiest label the ERM can produce. Only the ``B`` env pairs are returned to the env.
2. The env's ``step`` queries the oracle for exactly those ``B`` pairs (one batched call).
3. ``observe(labels)``: the ERM is trained on the ``B`` oracle-labelled pairs
   (:meth:`Explorer.update`); the ``M`` rollout pairs get the ERM's own labels (computed at selection
   time, see ``rollout_pair``). All ``B + M`` pairs go to the DPO buffer.

Model rollout design (why extra prompts). A vector dueling env's ``step`` always queries the oracle for
all ``num_envs`` prompts, so a pair can only escape the oracle if it never goes through ``step``. The
agent therefore serves the env exactly the prompts it wants queried (``num_envs = B``) and draws the
``M`` rollout prompts itself from the *training* split of the env's prompt source
(:func:`training_prompt_sampler`: ``source.sample`` for procedural sources — which rejects held-out
problems — or uniform draws from a dataset's training records), with its own RNG so the env's prompt
stream and its query counter are untouched. Rollout pairs are therefore never oracle queries:
``env.num_queries`` and the regret tracker only ever see the ``B`` queried pairs.

``M`` follows the mixed-preference ratio: with ``f = rollout_fraction``, ``M = round(B·f / (1 − f))`` so
that ``M / (B + M) ≈ f`` of each round's training pairs are model-labelled (``f = 0`` is pure SEA,
``f = 0.5`` doubles the training data per query). Rollouts start once the ERM has seen
``rollout_min_queries`` oracle labels (before that its labels are noise). Metrics:
``explorer/model_data_ratio = M / (B + M)`` this round, ``explorer/model_pairs`` (``M``) and
``explorer/model_pairs_total``; ``explorer/model_label_accuracy`` is never reported because checking it
would cost the oracle queries the rollout is saving.

Evaluation: by default greedy decoding of the policy (as :class:`DAPAgent`); with ``eval_best_of_n > 0``
the agent samples that many candidates and answers with the ERM's best-of-n (SEA's BAI output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oat_agents.agents.dap import DAPAgent, DAPAgentConfig
from oat_agents.exploration.explorer import Explorer

PromptSampler = Callable[[int, np.random.Generator], list[str]]
ROLLOUT_PAIRS: tuple[str, ...] = ("confident", "selector")


@dataclass
class SEAAgentConfig(DAPAgentConfig):
    """:class:`DAPAgentConfig` plus SEA's model-rollout and evaluation options."""

    rollout_fraction: float = 0.0
    """Target fraction ``f`` of each round's training pairs that are ERM-labelled rollouts, in [0, 1)."""
    rollout_min_queries: int = 0
    """Oracle labels the ERM must have seen before rollouts start."""
    rollout_pair: str = "confident"
    """Which pair a rollout prompt gets and how it is labelled. ``"confident"`` (default, oat's
    ``ModelBasedExplorer``): per prompt one uniformly drawn ensemble member ``e``, the pair with the largest
    ``|r_e(a) − r_e(b)|`` (``e``'s best and worst candidate), labelled by ``e`` (best preferred).
    ``"selector"``: the exploration selector's pair (for ``bai_ts`` the max-epistemic-variance duel)
    labelled by the ensemble-mean preference (the least certain labels; the former behaviour)."""
    eval_best_of_n: int = 0
    """0 = evaluate the greedy policy; n >= 2 = answer with the ERM's best of n samples."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.rollout_fraction < 1.0:
            raise ValueError(f"rollout_fraction must be in [0, 1), got {self.rollout_fraction}")
        if self.rollout_pair not in ROLLOUT_PAIRS:
            raise ValueError(f"rollout_pair must be one of {ROLLOUT_PAIRS}, got {self.rollout_pair!r}")
        if self.rollout_min_queries < 0:
            raise ValueError(f"rollout_min_queries must be >= 0, got {self.rollout_min_queries}")
        if self.eval_best_of_n == 1 or self.eval_best_of_n < 0:
            raise ValueError(f"eval_best_of_n must be 0 (greedy) or >= 2, got {self.eval_best_of_n}")


def training_prompt_sampler(env: Any) -> PromptSampler:
    """``(n, rng) -> n`` training-split prompts of a (vector) env's prompt source, drawn without touching
    the env (no query, no change to its prompt stream)."""
    task = getattr(getattr(env, "unwrapped", env), "task", None)
    source = getattr(task, "source", None)
    if source is None:
        raise TypeError(f"{type(env).__name__} has no task.source to draw rollout prompts from")
    if callable(getattr(source, "sample", None)):  # procedural: sample() rejects held-out problems

        def sample(n: int, rng: np.random.Generator) -> list[str]:
            return [source.sample(rng).prompt for _ in range(n)]

        return sample
    records = getattr(source, "records", None)
    if not records:
        raise TypeError(f"prompt source {type(source).__name__} has neither sample() nor training records")

    def draw(n: int, rng: np.random.Generator) -> list[str]:
        return [records[i].prompt for i in rng.integers(0, len(records), size=n)]

    return draw


class SEAAgent(DAPAgent):
    """DAP agent with an ERM explorer and optional model rollouts (module docstring).

    Args:
        policy, learner: as :class:`DAPAgent`.
        config: :class:`SEAAgentConfig`.
        explorer: an :class:`Explorer` (required).
        rollout_prompts: ``(n, rng) -> n`` prompts for model rollouts (e.g.
            ``training_prompt_sampler(env)``); required when ``rollout_fraction > 0``.
    """

    def __init__(
        self,
        policy: Any,
        learner: Any,
        config: SEAAgentConfig | None = None,
        explorer: Explorer | None = None,
        rollout_prompts: PromptSampler | None = None,
    ):
        config = config or SEAAgentConfig()
        if not isinstance(config, SEAAgentConfig):
            raise TypeError(f"config must be a SEAAgentConfig, got {type(config).__name__}")
        if explorer is None:
            raise ValueError("SEAAgent needs an explorer (oat_agents.exploration.explorer.Explorer)")
        if config.rollout_fraction > 0 and rollout_prompts is None:
            raise ValueError("rollout_fraction > 0 needs rollout_prompts (e.g. training_prompt_sampler(env))")
        super().__init__(policy, learner, config, explorer=explorer)
        self.config: SEAAgentConfig = config
        self.rollout_prompts = rollout_prompts
        self._rollout_rng = np.random.default_rng([config.seed, 0x5EA])
        self.model_pairs_total = 0
        self._round_metrics: dict[str, float] = {}  # this act()'s explorer/* numbers
        self._learn_metrics: dict[str, float] = {}  # observed rounds' numbers, reported by the next learn()

    def num_rollout_prompts(self, batch: int) -> int:
        """``M = round(B·f / (1 − f))`` once the ERM has seen ``rollout_min_queries`` labels, else 0."""
        f = self.config.rollout_fraction
        if f <= 0 or self.explorer.erm.num_queries < self.config.rollout_min_queries:
            return 0
        return int(round(batch * f / (1.0 - f)))

    def act(self, prompts: Sequence[str]) -> tuple[list[str], list[str]]:
        """Choose the duels of the ``B`` env prompts (and of ``M`` rollout prompts, kept internal)."""
        if not prompts:
            raise ValueError("act() needs at least one prompt")
        env_prompts = list(prompts)
        b = len(env_prompts)
        m = self.num_rollout_prompts(b)
        extra = self.rollout_prompts(m, self._rollout_rng) if m else []
        all_prompts = env_prompts + list(extra)
        gens = self.policy.generate(all_prompts, n=self.config.num_samples, sampling=self.sampling_params())
        if m and self.config.rollout_pair == "confident":
            rewards = self.explorer.rewards(all_prompts, gens.texts)
            env_pairs = self.explorer.select_from_rewards(rewards[:, :b])
            rollout_pairs, model_labels, _ = self.explorer.confident_pairs(rewards[:, b:])
            pairs = np.concatenate([env_pairs, rollout_pairs], axis=0)
        else:
            pairs, rewards = self.explorer.select_with_rewards(all_prompts, gens.texts)
            model_labels = Explorer.labels_from_rewards(rewards[:, b:], pairs[b:]) if m else np.zeros(0)
        self._pending = {"prompts": all_prompts, "gens": gens, "pairs": pairs, "model_labels": model_labels,
                         "num_env": b}
        self._round_metrics = {
            "explorer/model_pairs": float(m),
            "explorer/model_data_ratio": m / (b + m),
        }
        a = [gens.texts[i][pairs[i, 0]] for i in range(b)]
        bb = [gens.texts[i][pairs[i, 1]] for i in range(b)]
        return a, bb

    def observe(self, labels: Sequence[float] | np.ndarray) -> int:
        """Train the ERM on the ``B`` oracle labels; buffer them plus the ``M`` ERM-labelled rollouts.

        Returns the number of pairs added to the DPO buffer (``B + M``).
        """
        if self._pending is None:
            raise RuntimeError("observe() needs a preceding act()")
        labels = np.asarray(labels, dtype=np.float64)
        b = self._pending["num_env"]
        if labels.shape != (b,):
            raise ValueError(f"got {labels.shape[0] if labels.ndim else 'scalar'} labels for {b} duels")
        prompts, gens, pairs = self._pending["prompts"], self._pending["gens"], self._pending["pairs"]
        resp_a = [gens.texts[i][pairs[i, 0]] for i in range(b)]
        resp_b = [gens.texts[i][pairs[i, 1]] for i in range(b)]
        self.explorer.update(prompts[:b], resp_a, resp_b, labels)
        model_labels = self._pending["model_labels"]
        self.model_pairs_total += len(model_labels)
        self._round_metrics["explorer/model_pairs_total"] = float(self.model_pairs_total)
        added = super().observe(np.concatenate([labels, model_labels]))
        # The round's act- and observe-time metrics are set aside here, so that the next act() (which, in
        # asynchronous mode, runs while learn() reports this round) starts afresh.
        self._learn_metrics.update(self.explorer.pop_metrics())
        self._learn_metrics.update(self._round_metrics)
        self._round_metrics = {}
        return added

    def learn(self) -> dict[str, float]:
        """DPO on the buffer; the round's ``explorer/*`` and ERM metrics are merged into the result."""
        metrics = super().learn()
        metrics.update(self._learn_metrics)
        self._learn_metrics = {}
        return metrics

    def generate_greedy(self, prompts: Sequence[str]) -> list[str]:
        """Greedy policy output, or the ERM's best of ``eval_best_of_n`` samples when that is set."""
        n = self.config.eval_best_of_n
        if n == 0:
            return super().generate_greedy(prompts)
        gens = self.policy.generate(list(prompts), n=n, sampling=self.sampling_params())
        return self.explorer.best_of_n(prompts, gens.texts)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["explorer"] = self.explorer.state_dict()
        state["rollout_rng"] = self._rollout_rng.bit_generator.state
        state["model_pairs_total"] = self.model_pairs_total
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.explorer.load_state_dict(state["explorer"])
        self._rollout_rng.bit_generator.state = state["rollout_rng"]
        self.model_pairs_total = int(state["model_pairs_total"])
