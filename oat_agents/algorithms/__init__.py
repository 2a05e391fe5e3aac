"""Training objectives: direct alignment from preferences (``dap``), policy gradient (``pg``), SFT, and the one
log-prob convention every agent, learner and reference uses (``logprobs``)."""

from oat_agents.algorithms.dap import (
    LOSS_TYPES,
    DAPConfig,
    TokenLogps,
    dap_loss,
    dpo_losses,
    ipo_losses,
    length_desensitized_logps,
    simpo_losses,
    slic_losses,
)
from oat_agents.algorithms.logprobs import (
    gather_token_logps,
    position_ids,
    sequence_logprobs,
    token_entropy,
    token_logprobs,
)
from oat_agents.algorithms.pg import (
    ADVANTAGE_ESTIMATORS,
    Advantages,
    PGConfig,
    compute_advantages,
    discounted_turn_returns,
    last_token_index,
    pg_loss,
)
from oat_agents.algorithms.sft import build_sft_example, collate_sft, sft_loss, validate_messages

__all__ = [
    "LOSS_TYPES",
    "DAPConfig",
    "TokenLogps",
    "dap_loss",
    "dpo_losses",
    "gather_token_logps",
    "ipo_losses",
    "length_desensitized_logps",
    "position_ids",
    "sequence_logprobs",
    "token_entropy",
    "token_logprobs",
    "simpo_losses",
    "slic_losses",
    "ADVANTAGE_ESTIMATORS",
    "Advantages",
    "PGConfig",
    "compute_advantages",
    "discounted_turn_returns",
    "last_token_index",
    "pg_loss",
    "build_sft_example",
    "collate_sft",
    "sft_loss",
    "validate_messages",
]
