r"""Shared-prompt packing: one forward pass over a prompt and ALL the responses that continue it.

A DPO micro-batch holds each prompt twice (chosen, rejected) and a GRPO group holds it G times. The plain
forward pass (:func:`~oat_agents.algorithms.logprobs.token_logprobs`) recomputes the prompt for every copy:
``Σ_b (P_b + S_b)`` tokens. Packing puts each distinct prompt ``p`` once in a row, followed by the response
segments ``s_1 … s_k`` that continue it, and lets each segment see only the prompt and itself:

    row      =  p_0 … p_{P-1} | s_1,0 … s_1,S1-1 | s_2,0 … | …         (then right padding)
    position =  0   … P-1     | P   …   P+S1-1   | P   …   | …         (every segment restarts at P)
    mask[q, k] = k ≤ q  and  (k in p  or  k in the segment of q)           (a block-causal 4D mask)

so a response token's hidden state is, up to float rounding, the one it has in its own unpadded sequence, and
its log-prob is read from the logit at the position before it (``p_{P-1}`` for a segment's first token). The
gradient through the shared prompt is the sum of the segments' gradients, as in the unpacked batch.
``P + Σ_i S_i`` tokens instead of ``Σ_i (P + S_i)``: for a 250-token TL;DR prompt and two 64-token summaries,
378 instead of 628 (1.7x fewer); for a 150-token GSM8K prompt and a group of 4 x 64 tokens, 406 instead of
856 (2.1x). The cost is a dense ``(R, 1, L', L')`` mask (``L'`` the longest packed row), so SDPA cannot take
its ``is_causal`` kernel; worth it when prompts are long against responses.

Which rows share a prompt is read from the batch itself: a row's prompt is its real tokens
(``attention_mask == 1``) before its first response token, and rows with equal prompts are packed together,
in batch order. Only attention implementations that honour a custom additive 4D mask can take it
("sdpa" and "eager" in transformers); :func:`check_packable` refuses the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PACKABLE_ATTENTION = ("sdpa", "eager")


@dataclass
class SharedPromptPack:
    """A batch ``(B, L)`` repacked as ``R ≤ B`` rows of ``L'`` tokens; ``N`` = the response-segment tokens."""

    input_ids: torch.Tensor
    """``(R, L')`` packed token ids (right-padded with the batch's first token id: never attended)."""
    position_ids: torch.Tensor
    """``(R, L')`` positions: the prompt ``0 … P-1``, each segment ``P …`` again."""
    allowed: torch.Tensor
    """``(R, 1, L', L')`` bool: query ``q`` may attend key ``k`` (pad queries attend themselves only)."""
    predictor_row: torch.Tensor
    """``(N,)`` packed row of the logit that predicts each segment token."""
    predictor_col: torch.Tensor
    """``(N,)`` packed column of that logit (``P - 1`` for a segment's first token, else the previous one)."""
    target_ids: torch.Tensor
    """``(N,)`` the segment tokens themselves."""
    source: torch.Tensor
    """``(N,)`` flat index ``b * L + t`` of each segment token in the original ``(B, L)`` batch."""

    packed_tokens: int
    """Real token positions the packed pass computes (``Σ_prompts P + Σ_rows S``; the plain pass: every real
    token of the batch)."""

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The ``(R, 1, L', L')`` float mask a transformers model adds to its attention scores: 0 where
        allowed, the dtype's most negative value elsewhere (SDPA and eager attention both take it)."""
        mask = torch.zeros(self.allowed.shape, dtype=dtype, device=self.allowed.device)
        return mask.masked_fill_(~self.allowed, torch.finfo(dtype).min)


def pack_shared_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor, hidden_size: int
) -> SharedPromptPack | None:
    """Pack the rows of a ``(B, L)`` batch that share a prompt (module docstring); ``None`` (the plain pass) when no
    two rows do (nothing to save), when some row with a response has no prompt token before it, or when packing
    would cost more (:func:`packing_pays`; ``hidden_size`` is the model's width).

    A row's segment is its real tokens from its first response token on (later non-response tokens, e.g. a tool's
    output inside a multi-turn response, are kept in the segment, as the plain pass sees them, and masked out of the
    log-probs by the caller). Rows without a response token are left out (their log-probs are all 0).
    """
    B, L = input_ids.shape
    real = attention_mask.bool()
    resp = response_mask.bool() & real
    has_resp = resp.any(1)
    first = torch.where(has_resp, resp.float().argmax(1), torch.full_like(has_resp, L, dtype=torch.long))  # (B,)
    cols = torch.arange(L, device=input_ids.device)
    prompt_part = real & (cols[None] < first[:, None])  # (B, L)
    segment_part = real & (cols[None] >= first[:, None])  # (B, L)
    ids_cpu = input_ids.cpu()
    groups: dict[tuple[int, ...], list[int]] = {}
    for b in range(B):
        if not bool(has_resp[b]):
            continue
        prompt = tuple(ids_cpu[b][prompt_part[b].cpu()].tolist())
        if not prompt:
            return None  # nothing predicts this row's first response token: the plain pass handles it
        groups.setdefault(prompt, []).append(b)
    if not groups or all(len(rows) < 2 for rows in groups.values()):
        return None

    packed_rows: list[list[int]] = []
    packed_pos: list[list[int]] = []
    packed_seg: list[list[int]] = []  # 0 prompt, i >= 1 segment i
    pred_row, pred_col, targets, source = [], [], [], []
    for r, (prompt, rows) in enumerate(groups.items()):
        P = len(prompt)
        ids, pos, seg = list(prompt), list(range(P)), [0] * P
        for i, b in enumerate(rows, start=1):
            where = segment_part[b].nonzero().squeeze(1).cpu()  # (S,) original columns of the segment
            tokens = ids_cpu[b, where].tolist()
            start = len(ids)
            for k, (t, col) in enumerate(zip(tokens, where.tolist())):
                pred_row.append(r)
                pred_col.append(P - 1 if k == 0 else start + k - 1)
                targets.append(t)
                source.append(b * L + col)
            ids += tokens
            pos += range(P, P + len(tokens))
            seg += [i] * len(tokens)
        packed_rows.append(ids)
        packed_pos.append(pos)
        packed_seg.append(seg)

    width = max(len(x) for x in packed_rows)
    R = len(packed_rows)
    if not packing_pays(B, L, R, width, hidden_size):
        return None
    pad_id = int(ids_cpu[0, 0])
    ids_t = torch.full((R, width), pad_id, dtype=torch.long)
    pos_t = torch.zeros((R, width), dtype=torch.long)
    seg_t = torch.full((R, width), -1, dtype=torch.long)  # -1: padding
    for r in range(R):
        n = len(packed_rows[r])
        ids_t[r, :n] = torch.tensor(packed_rows[r])
        pos_t[r, :n] = torch.tensor(packed_pos[r])
        seg_t[r, :n] = torch.tensor(packed_seg[r])
    seg_q, seg_k = seg_t[:, :, None], seg_t[:, None, :]  # (R, L', 1), (R, 1, L')
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # (L', L'): k <= q
    allowed = causal & (seg_k >= 0) & ((seg_k == 0) | (seg_k == seg_q))  # (R, L', L')
    allowed |= torch.eye(width, dtype=torch.bool) & (seg_q < 0)  # a pad query attends itself: no all-masked row
    device = input_ids.device
    pack = SharedPromptPack(
        input_ids=ids_t.to(device),
        position_ids=pos_t.to(device),
        allowed=allowed.unsqueeze(1).to(device),  # (R, 1, L', L'): one mask for every head
        predictor_row=torch.tensor(pred_row, dtype=torch.long, device=device),
        predictor_col=torch.tensor(pred_col, dtype=torch.long, device=device),
        target_ids=torch.tensor(targets, dtype=torch.long, device=device),
        source=torch.tensor(source, dtype=torch.long, device=device),
        packed_tokens=sum(len(x) for x in packed_rows),
    )
    return pack


MAX_MASK_ENTRIES = 1 << 26
"""The largest packed mask (``R·L'²`` entries) a pass builds: ~320 MB with its float copy."""


def packing_pays(B: int, L: int, R: int, packed_width: int, hidden_size: int) -> bool:
    """Whether ``R`` packed rows of ``packed_width`` cost no more than the plain ``(B, L)`` batch.

    Per layer, a row of ``n`` positions costs about ``24·d²·n`` FLOPs in its projections and MLP and ``4·d·n²`` in
    attention scores and values (a dense mask computes every pair), ``d = hidden_size``; divided by ``4·d``:
    ``n·6d + n²``. Packing trades fewer positions for longer rows, so many long responses behind a short prompt can
    cost more packed than plain. The packed mask is also capped at :data:`MAX_MASK_ENTRIES`.
    """
    plain = B * (L * 6 * hidden_size + L * L)
    packed = R * (packed_width * 6 * hidden_size + packed_width * packed_width)
    return packed <= plain and R * packed_width * packed_width <= MAX_MASK_ENTRIES


def check_packable(model: torch.nn.Module) -> None:
    """Raise unless ``model`` (a transformers causal LM, under a DeepSpeed engine or peft wrapper) can take a packed
    batch: an attention implementation that honours a custom 4D mask, rotary or absolute positions read from
    ``position_ids`` (not ALiBi), and no sliding-window layers (a custom 4D mask replaces the window)."""
    from oat_agents.algorithms.logprobs import inner_model

    inner = inner_model(model)
    config = getattr(inner, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    way_out = "or set share_prompt=False"
    if impl not in PACKABLE_ATTENTION:
        raise ValueError(
            f"share_prompt needs a model whose attention takes a custom 4D mask ({' or '.join(PACKABLE_ATTENTION)}),"
            f" got attn_implementation={impl!r}: load the model with attn_implementation='sdpa', {way_out}"
        )
    import inspect

    if "position_ids" not in inspect.signature(inner.forward).parameters or getattr(config, "alibi", False):
        raise ValueError(f"share_prompt needs a model that reads position_ids (not ALiBi), got "
                         f"{type(inner).__name__}: {way_out}")
    layer_types = getattr(config, "layer_types", None) or ()
    sliding = "sliding_attention" in layer_types or (
        getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True))
    if sliding:
        raise ValueError(f"share_prompt does not support sliding-window attention ({type(inner).__name__}, "
                         f"sliding_window={getattr(config, 'sliding_window', None)}): the packed mask would replace the "
                         f"window; {way_out}")
