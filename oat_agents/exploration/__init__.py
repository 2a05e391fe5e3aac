"""Exploration: the epistemic reward model (SEA), pair selectors, feature backbones, APL and XPO pieces.

* :mod:`~oat_agents.exploration.enn` — :class:`EpistemicRewardModel`, an anchored MLP ensemble on frozen
  features trained online with a Bradley–Terry loss.
* :mod:`~oat_agents.exploration.selectors` — ``passive``, ``ee_ts``, ``bai_ts``, ``uncertainty``,
  ``random`` (the random-pair control), ``ids`` (information-directed sampling), ``best_of_n`` pair
  selection from ensemble rewards ``(E, B, K)``; model-rollout helpers.
* :mod:`~oat_agents.exploration.features` — batched feature extractors (policy / reward-model hidden
  states, sentence embeddings). Imported lazily by users (it pulls in transformers).
* :mod:`~oat_agents.exploration.prompt_entropy` — APL prompt entropy and implicit-reward-margin pair choice.
* :mod:`~oat_agents.exploration.optimism` — the XPO optimism term.
"""

from oat_agents.exploration.enn import (
    EnsembleMLP,
    EpistemicRewardModel,
    ERMConfig,
    anchored_loss,
    bradley_terry_losses,
    member_seeds,
)
from oat_agents.exploration.optimism import xpo_exploration_term, xpo_loss
from oat_agents.exploration.prompt_entropy import (
    implicit_reward_margin_pairs,
    implicit_rewards,
    predictive_entropy,
    select_high_entropy_prompts,
    select_prompts_by_margin,
    sequence_logps,
)
from oat_agents.exploration.selectors import (
    CLASH_FALLBACKS,
    SELECTORS,
    Selection,
    distinguishable_pairs,
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

__all__ = [
    "CLASH_FALLBACKS",
    "SELECTORS",
    "ERMConfig",
    "EnsembleMLP",
    "EpistemicRewardModel",
    "Selection",
    "anchored_loss",
    "bradley_terry_losses",
    "distinguishable_pairs",
    "duel_variance",
    "erm_labels",
    "gather_pair_rewards",
    "ids_terms",
    "implicit_reward_margin_pairs",
    "implicit_rewards",
    "member_seeds",
    "pair_epistemic_variance",
    "predictive_entropy",
    "select_bai_ts",
    "select_best_of_n",
    "select_ee_ts",
    "select_high_entropy_prompts",
    "select_ids",
    "select_pairs",
    "select_passive",
    "select_prompts_by_margin",
    "select_random",
    "select_uncertainty",
    "sequence_logps",
    "split_model_rollout",
    "ts_agreement",
    "xpo_exploration_term",
    "xpo_loss",
]
