"""Tiny character-level models for CPU experiments: build them and warm them up on arithmetic.

The CPU demo, the end-to-end tests and the regret benchmark all start from the same recipe: a
~0.9 M-parameter Llama with a per-character tokenizer (``oat_agents.models``), briefly supervised on
procedurally generated ``"a+b="`` → ``"c"`` problems so that it is a weak but non-trivial policy,
then improved online from oracle feedback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oat_agents.agents.batching import collate_responses
from oat_agents.progress import Progress


@dataclass
class WarmupConfig:
    """Options of :func:`sft_warmup`."""

    steps: int = 300
    """Optimizer steps of supervised warm-up (0 = none)."""
    batch_size: int = 64
    """Problems per step."""
    learning_rate: float = 3e-3
    """AdamW learning rate."""
    seed: int = 0
    """Seed of the problems drawn and of the optimizer's data order."""


def arithmetic_sft_batch(problems: Any, tokenizer: Any, rng: np.random.Generator, batch_size: int):
    """A batch of ``prompt → reference answer + EOS`` examples from a problem generator."""
    prompt_ids, answer_ids = [], []
    for _ in range(batch_size):
        record = problems.sample(rng)
        prompt_ids.append(tokenizer(record.prompt)["input_ids"])
        answer_ids.append(tokenizer(record.reference, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    return collate_responses(prompt_ids, answer_ids, tokenizer.pad_token_id)


def sft_warmup(model: torch.nn.Module, tokenizer: Any, problems: Any, config: WarmupConfig,
               progress: bool = False) -> dict[str, float]:
    """Supervised warm-up: next-token NLL on the answer tokens only (prompt tokens are context).

    ``problems`` is a :class:`~oat_env.data.ProceduralPrompts` (its training split; the held-out
    split is never seen). With ``progress`` it shows the steps and the loss (a bar on a terminal, else a
    line every 10 s and one at the end). Returns the final loss and the wall time.
    """
    if config.steps <= 0:
        return {"warmup/loss": float("nan"), "warmup/seconds": 0.0}
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    model.train()
    loss_value = float("nan")
    bar = Progress(config.steps, unit="steps", desc="warm-up", interval_s=10.0) if progress else None
    for step in range(config.steps):
        input_ids, attention_mask, response_mask = arithmetic_sft_batch(problems, tokenizer, rng, config.batch_size)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        targets = input_ids[:, 1:]
        mask = response_mask[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        loss = (nll * mask.reshape(-1)).sum() / mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(loss.detach())
        if bar is not None:
            bar.update(step + 1, {"sft_loss": loss_value})
    if bar is not None:
        bar.close()
    # Leave no gradient behind: the learner's first step would otherwise add the warm-up's last one.
    model.zero_grad(set_to_none=True)
    model.eval()
    return {"warmup/loss": loss_value, "warmup/seconds": time.perf_counter() - start}
