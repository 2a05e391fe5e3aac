"""Turning (prompt tokens, response tokens) into padded training tensors, and one optimizer step's rows
into its gradient-accumulation micro-batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def collate_responses(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, response_mask)`` of ``prompt + response`` rows.

    Right padding keeps position ids equal to ``arange`` for every real token, so log-probs match
    those of an unpadded forward pass whether or not the model is given position ids. Rows longer
    than ``max_length`` lose response tokens from the end (the prompt is kept whole; a prompt alone
    longer than ``max_length`` is an error, since no response token would be left to train on).
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if not prompt_ids:
        raise ValueError("empty batch")
    rows, starts = [], []
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if len(p) == 0:
            raise ValueError(f"row {i}: empty prompt (a response token needs a context to be predicted from)")
        row = list(p) + list(r)
        if max_length is not None and len(row) > max_length:
            if len(p) >= max_length:
                raise ValueError(f"row {i}: prompt of {len(p)} tokens does not fit max_length={max_length}")
            row = row[:max_length]
        rows.append(row)
        starts.append(len(p))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, start) in enumerate(zip(rows, starts)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        response_mask[i, start : len(row)] = True
    return input_ids, attention_mask, response_mask


def accumulation_chunks(rows: np.ndarray, gradient_accumulation_steps: int) -> list[np.ndarray]:
    """The ``gradient_accumulation_steps`` micro-batches of ONE optimizer step, as index arrays.

    Every optimizer step is computed in exactly ``gradient_accumulation_steps`` micro-steps, so a
    ``learn()`` always ends on an accumulation boundary: no gradient is left accumulated into the next
    ``learn()`` (whose synced weights would miss it). Sizes differ by at most one; with fewer rows than
    micro-steps some chunks are empty and come FIRST, so the boundary micro-step (the last: its backward
    reduces the gradients) always has rows. Pair each chunk's loss with its share of the step's loss
    (:meth:`~oat_agents.learners.LearnerEngine.backward`'s ``share``).
    """
    if gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    if len(rows) == 0:
        raise ValueError("an optimizer step needs at least one row")
    chunks = np.array_split(np.asarray(rows), gradient_accumulation_steps)
    return [c for c in chunks if len(c) == 0] + [c for c in chunks if len(c) > 0]
