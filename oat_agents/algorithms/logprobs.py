r"""THE log-prob convention of oat_agents: per-token log-probabilities of a causal LM, in one forward pass.

Every log-prob the agents compute -- the learner's policy, the frozen reference, PPO's old log-probs, APL's
candidate scores, the DAP losses' sequence sums -- comes from :func:`token_logprobs` (or
:func:`sequence_logprobs`, its masked sum). One shape convention:

* ``out[b, t] = log p_θ(x_t | x_{<t}) = log softmax(f_θ(x_{<t}) / T)[x_t]``, shape ``(B, L)``, **aligned with
  ``input_ids``** (the log-prob of the token at ``t``, not of the token after it); ``out[:, 0] = 0`` (nothing
  predicts the first token) and, with a ``response_mask``, 0 off the response;
* ``T`` is an explicit argument, never implicit: ``T = 1`` is the model's own distribution; log-probs that are
  compared with a sampler's (importance ratios, KL to the reference in RL) use the sampling temperature;
* position ids follow the attention mask (``cumsum − 1``, :func:`position_ids`), so left- and right-padded
  batches give the log-probs of the unpadded sequences, as ``generate`` does;
* computed in float32 as ``logit − logsumexp`` (:func:`gather_token_logps`).

``response_mask[:, 0]`` must be False. Chosen and rejected responses go through the model as one batch:
concatenate them along the batch axis (pad to a common length) and split the outputs, e.g.
``sum_logps[:B], sum_logps[B:]``.

With ``share_prompt=True`` rows that share a prompt (DPO's chosen and rejected, a GRPO group) are packed so the
prompt goes through the model once (:mod:`oat_agents.algorithms.shared_prompt`); the outputs keep this layout and
equal the plain pass's up to float rounding.
"""

from __future__ import annotations

import torch

from oat_agents.algorithms.shared_prompt import SharedPromptPack, check_packable, pack_shared_prompts


def gather_token_logps(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[targets]`` per position, computed as ``logit − logsumexp`` in float32
    (no ``(B, T, V)`` log-softmax tensor is kept). ``logits``: ``(..., V)``, ``targets``: ``(...)``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy ``H = −Σ_v p_v log p_v = logsumexp(z) − Σ_v p_v z_v`` of ``softmax(logits)``,
    computed in float32. ``logits``: ``(..., V)`` → ``(...)``."""
    z = logits.float()
    p = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (p * z).sum(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` position ids that skip padding: ``cumsum(mask) − 1`` (0 on leading pads). Every forward pass of
    a model over a padded batch (log-probs, the critic, the ERM's features) uses these."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    response_mask: torch.Tensor | None = None,
    with_entropy: bool = False,
    entropy_grad: bool = True,
    share_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs ``(B, L)`` aligned with ``input_ids`` (module docstring), one forward pass.

    Args:
        model: a causal LM returning ``.logits`` ``(B, L, V)`` (a DeepSpeed engine wrapping one works too).
        input_ids: ``(B, L)`` token ids.
        attention_mask: ``(B, L)`` 1 for real tokens, 0 for padding (default: all real).
        temperature: divide the logits by this before the softmax.
        response_mask: ``(B, L)`` bool; when given, positions where it is False are 0.
        with_entropy: also return the entropy ``(B, L)`` of the tempered next-token distribution that predicts
            ``x_t`` (same alignment, same masking).
        entropy_grad: whether the entropy keeps its graph (False saves memory when it is only logged).
        share_prompt: with a ``response_mask``, pack the rows that share a prompt into one row each
            (:mod:`~oat_agents.algorithms.shared_prompt`: the prompt is computed once); the same outputs up to
            float rounding. Needs an attention implementation that takes a 4D mask ("sdpa", "eager").

    Returns:
        ``(logps, entropy)``; ``entropy`` is None unless ``with_entropy``. Gradients flow as the model's do.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    B, L = input_ids.shape
    if share_prompt and response_mask is not None:
        pack = pack_shared_prompts(input_ids, attention_mask, response_mask, _hidden_size(model))
        if pack is not None:
            return _packed_token_logprobs(model, pack, (B, L), temperature, response_mask, with_entropy, entropy_grad)
    # Only the positions that predict a response token need the LM head (a V-wide matmul and logsumexp per
    # position): with a response mask, keep the last K = L - first + 1 positions, `first` the earliest response
    # token of the batch (a TL;DR prompt of ~250 tokens and a 64-token summary: ~3x fewer head positions).
    kwargs: dict = {}
    first = 1
    if response_mask is not None and bool(response_mask.any()) and takes_logits_to_keep(model):
        first = max(int(response_mask.bool().any(0).nonzero()[0]), 1)
        kwargs["logits_to_keep"] = L - first + 1
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                   **kwargs).logits
    shifted = logits[:, -(L - first + 1) : -1]  # (B, L-first, V): the logits at t predict input_ids[:, t + 1]
    picked = gather_token_logps(shifted, input_ids[:, first:], temperature)  # (B, L-first): tokens first..L-1
    logps = torch.cat([picked.new_zeros(B, first), picked], dim=1)  # (B, L): aligned with input_ids
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
            ent = token_entropy(shifted.float() / temperature)  # (B, L-first)
        entropy = torch.cat([ent.new_zeros(B, first), ent], dim=1)  # (B, L)
    if response_mask is not None:
        keep = response_mask.bool()
        logps = torch.where(keep, logps, torch.zeros_like(logps))
        if entropy is not None:
            entropy = torch.where(keep, entropy, torch.zeros_like(entropy))
    return logps, entropy


def _packed_token_logprobs(
    model: torch.nn.Module,
    pack: SharedPromptPack,
    shape: tuple[int, int],
    temperature: float,
    response_mask: torch.Tensor,
    with_entropy: bool,
    entropy_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`token_logprobs` through a shared-prompt pack: one forward pass over the ``(R, L')`` packed rows, the
    logits read at each segment token's predictor and scattered back to the ``(B, L)`` layout."""
    check_packable(model)
    B, L = shape
    R, Lp = pack.input_ids.shape
    dtype = _compute_dtype(model)
    first = int(pack.predictor_col.min())  # the earliest predictor column: the LM head runs from there on
    kwargs: dict = {"logits_to_keep": Lp - first} if takes_logits_to_keep(model) else {}
    logits = model(input_ids=pack.input_ids, attention_mask=pack.additive_mask(dtype), position_ids=pack.position_ids,
                   **kwargs).logits  # (R, K, V), K = Lp - first (or Lp)
    offset = Lp - logits.shape[1]
    predicting = logits[pack.predictor_row, pack.predictor_col - offset]  # (N, V): the logit before each token
    picked = gather_token_logps(predicting, pack.target_ids, temperature)  # (N,)
    keep = response_mask.bool()
    # out-of-place index_put keeps the graph: (B * L,) zeros with the N segment log-probs put in, then (B, L)
    logps = picked.new_zeros(B * L).index_put((pack.source,), picked).view(B, L)
    logps = torch.where(keep, logps, torch.zeros_like(logps))
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
            ent = token_entropy(predicting.float() / temperature)  # (N,)
        entropy = ent.new_zeros(B * L).index_put((pack.source,), ent).view(B, L)
        entropy = torch.where(keep, entropy, torch.zeros_like(entropy))
    return logps, entropy


def _hidden_size(model: torch.nn.Module) -> int:
    """The model's width ``d`` (``config.hidden_size``; 1024 when the config does not say), for the packing cost."""
    config = getattr(inner_model(model), "config", None)
    return int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 1024)


def _compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the model's attention computes in (the input embeddings' weight; SDPA wants the mask in it)."""
    inner = inner_model(model)
    embeddings = inner.get_input_embeddings() if hasattr(inner, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return weight.dtype
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a DeepSpeed engine and/or a peft wrapper (``model`` itself if neither)."""
    inner = model
    for _ in range(4):  # DeepSpeedEngine.module -> PeftModel.base_model.model -> the HF model
        if hasattr(inner, "module") and isinstance(inner.module, torch.nn.Module):
            inner = inner.module
        elif type(inner).__name__.startswith("Peft") and hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()
        else:
            break
    return inner


_LOGITS_TO_KEEP: dict[type, bool] = {}


def takes_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the causal LM (under a DeepSpeed engine or peft wrapper, if any) takes ``logits_to_keep``
    (transformers' causal LMs do); cached per class."""
    inner = inner_model(model)
    key = type(inner)
    if key not in _LOGITS_TO_KEEP:
        import inspect

        try:
            _LOGITS_TO_KEEP[key] = "logits_to_keep" in inspect.signature(inner.forward).parameters
        except (TypeError, ValueError):
            _LOGITS_TO_KEEP[key] = False
    return _LOGITS_TO_KEEP[key]


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    share_prompt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs of the response tokens of each sequence, in a single forward pass.

    Args:
        model: a causal LM returning ``.logits`` of shape ``(B, L, V)`` (e.g. ``LlamaForCausalLM``).
        input_ids: ``(B, L)`` token ids.
        attention_mask: ``(B, L)`` 1 for real tokens, 0 for padding.
        response_mask: ``(B, L)`` bool, True at response tokens (must be real tokens, never position 0).
        temperature: divide logits by this before the softmax (match the sampler's temperature).
        share_prompt: compute each shared prompt once (:func:`token_logprobs`).

    Returns:
        ``(sum_logps, lengths, per_token_logps)``: ``(B,)`` summed response log-probs (float32, with
        grad if the model has it), ``(B,)`` response lengths (long), and ``(B, L)`` per-token log-probs
        aligned with ``input_ids`` (``per_token_logps[b, t] = log p(x_t | x_<t)``; 0 off the response).
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape or response_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} and response_mask {tuple(response_mask.shape)} "
            f"must match input_ids {tuple(input_ids.shape)}"
        )
    response_mask = response_mask.bool()
    if input_ids.shape[1] < 2:
        raise ValueError("sequences need at least 2 tokens (a context and a response token)")
    if bool(response_mask[:, 0].any()):
        raise ValueError("response_mask[:, 0] must be False: the first token has no context to predict it")
    if bool((response_mask & ~attention_mask.bool()).any()):
        raise ValueError("response_mask marks padding positions (attention_mask == 0)")

    per_token, _ = token_logprobs(model, input_ids, attention_mask, temperature, response_mask,
                                  share_prompt=share_prompt)  # (B, L)
    return per_token.sum(-1), response_mask.sum(-1), per_token
