r"""A value model (critic) for PPO-style RL on LLMs: a causal LM backbone plus a scalar head.

``V_φ(s)`` of a token sequence ``s`` (a prompt, or a multi-turn conversation so far) is read from the
backbone's final hidden state **at the last non-pad token of the state**:
``V(s) = w · h_L(s)[last] + b`` where ``last`` is :func:`~oat_agents.algorithms.pg.last_token_index` of
the attention mask (left or right padding). That position has attended to the whole state; oat's
multi-turn critic read position 0, which sees only the first token and so cannot tell states apart.

:meth:`Critic.token_values` gives ``V`` at every position (``(B, L)``), for token-level GAE:
the value of the state in which token ``t`` is generated is ``values[:, t − 1]``.

The head starts at zero (``w = 0, b = 0``) so the initial baseline is 0 and the first advantages are
the raw returns. The critic has its own AdamW (:class:`CriticTrainer`); it never shares the policy's
parameters or optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from oat_agents.algorithms.logprobs import position_ids
from oat_agents.algorithms.pg import last_token_index, value_loss


class Critic(nn.Module):
    """``V_φ``: a transformer backbone (the base model of a causal LM) and a linear value head.

    Args:
        model: a Hugging Face ``PreTrainedModel``; for a ``*ForCausalLM`` its ``base_model`` (the
            decoder without the LM head) is used, so e.g. a copy of the policy makes a critic.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        backbone = getattr(model, "base_model", model)
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        if hidden is None:
            raise ValueError("the critic needs a model whose config has hidden_size")
        self.backbone = backbone
        self.head = nn.Linear(int(hidden), 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def token_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` values ``V(x_{≤t})`` at every position (float32); padding positions are garbage
        and must be masked by the caller. Position ids follow the attention mask (as in generation)."""
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                "must both be (B, L)"
            )
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids(attention_mask))
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return self.head(hidden.float()).squeeze(-1)

    def state_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``V(s)`` read at each row's last non-pad token."""
        values = self.token_values(input_ids, attention_mask)
        last = last_token_index(attention_mask)
        return values.gather(1, last.unsqueeze(1)).squeeze(1)


@dataclass
class CriticConfig:
    """Options of the critic's optimizer and loss."""

    learning_rate: float = 1e-4
    """AdamW learning rate of the critic."""
    max_grad_norm: float = 1.0
    """Clip the critic's gradient L2 norm (0 = off)."""
    value_clip: float | None = None
    """PPO value clipping radius around the values at rollout time (None = plain squared error)."""

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.value_clip is not None and not self.value_clip > 0:
            raise ValueError(f"value_clip must be > 0 or None, got {self.value_clip}")


class CriticTrainer:
    """Fits a :class:`Critic` to returns: ``L_V = ½ · mean max((V − R)², (V_old + clip(V − V_old) − R)²)``
    (:func:`~oat_agents.algorithms.pg.value_loss`), one AdamW step per :meth:`step` call."""

    def __init__(self, critic: Critic, config: CriticConfig | None = None):
        if not isinstance(critic, Critic):
            raise TypeError(f"critic must be a Critic, got {type(critic).__name__}")
        self.critic = critic
        self.config = config or CriticConfig()
        self.optimizer = torch.optim.AdamW(critic.parameters(), lr=self.config.learning_rate, weight_decay=0.0)

    @property
    def device(self) -> torch.device:
        return next(self.critic.parameters()).device

    @torch.no_grad()
    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` state values without gradient (eval mode)."""
        self.critic.eval()
        return self.critic.state_values(input_ids.to(self.device), attention_mask.to(self.device))

    def loss(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        returns: torch.Tensor,
        old_values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Value loss of a batch of states (``(B,)`` returns); call ``backward`` yourself or use :meth:`step`."""
        self.critic.train()
        values = self.critic.state_values(input_ids.to(self.device), attention_mask.to(self.device))
        returns = returns.to(values.device).float()
        if returns.shape != values.shape:
            raise ValueError(f"returns must be {tuple(values.shape)}, got {tuple(returns.shape)}")
        ones = torch.ones_like(values, dtype=torch.bool)
        old = None if old_values is None else old_values.to(values.device).float().unsqueeze(-1)
        loss, frac = value_loss(values.unsqueeze(-1), old, returns.unsqueeze(-1), ones.unsqueeze(-1), self.config.value_clip)
        metrics = {
            "critic/value_loss": float(loss.detach()),
            "critic/value_mean": float(values.detach().mean()),
            "critic/value_clip_frac": float(frac),
        }
        return loss, metrics

    def step(self) -> dict[str, float]:
        """Clip and apply the accumulated gradient, then zero it."""
        params = [p for p in self.critic.parameters() if p.grad is not None]
        norm = 0.0
        if params:
            if self.config.max_grad_norm > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm))
            else:
                norm = float(torch.stack([p.grad.detach().float().norm() for p in params]).norm())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"critic/grad_norm": norm}
