"""Tiny, hub-free character-level models for CPU experiments, tests and demos: build them and warm them up.

The CPU demo, the end-to-end tests and the regret benchmark all start from the same recipe: a ~0.1-0.9 M-parameter
Llama with a per-character tokenizer, briefly supervised on procedurally generated ``"a+b="`` → ``"c"`` problems so
that it is a weak but non-trivial policy, then improved online from oracle feedback.

* :func:`CharTokenizer` — a per-character tokenizer that transformers treats like any fast tokenizer
  (a ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model whose pre-tokenizer isolates
  every character). ``decode(encode(s), skip_special_tokens=True) == s`` for any ``s`` over its
  alphabet (printable ASCII, tab and newline).
* :func:`build_tiny_llama` — a ``LlamaForCausalLM`` built from a config (no download); the defaults (hidden 128,
  4 layers, 4 heads, MLP 384, tied embeddings) give ~0.86M parameters with the character vocabulary.
* :func:`save_tiny_model` — writes a model + tokenizer directory loadable with ``from_pretrained``.
* :func:`sft_warmup` (:class:`WarmupConfig`) — the supervised warm-up on an env's procedural problems.
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from oat_agents.agents.batching import collate_responses
from oat_agents.progress import Progress

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)

# Printable ASCII (digits, letters, operators, punctuation, space) plus tab and newline.
# string.printable also holds \r, \x0b, \x0c: left out so every character decodes to itself visibly.
DEFAULT_CHARS: str = "".join(c for c in string.printable if c not in "\r\x0b\x0c")

# A minimal chat template over the character alphabet: "user: ...\nassistant: ".
CHAR_CHAT_TEMPLATE: str = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def CharTokenizer(chars: str = DEFAULT_CHARS, add_bos: bool = True) -> PreTrainedTokenizerFast:  # noqa: N802
    """Build a per-character ``PreTrainedTokenizerFast``.

    Ids: ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``, then one id per character of ``chars`` in order.
    Encoding with ``add_special_tokens=True`` prepends ``<bos>`` when ``add_bos`` (no ``<eos>``: the
    model must learn to emit it). Characters outside ``chars`` map to ``<unk>``. Special-token
    spellings in text (``"<eos>"``) are split into characters, never parsed as special tokens. Decoding fuses tokens
    with no separator, so text round-trips exactly (``clean_up_tokenization_spaces`` is off).

    Args:
        chars: the alphabet; duplicates are rejected.
        add_bos: prepend ``<bos>`` when special tokens are added.

    Returns:
        a tokenizer with ``padding_side="left"`` (generation default) and a simple chat template.
    """
    if not isinstance(chars, str) or not chars:
        raise ValueError("chars must be a non-empty string")
    if len(set(chars)) != len(chars):
        raise ValueError("chars contains duplicate characters")
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in chars:
        vocab[c] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # "[\s\S]" isolates every character, newline included, as its own pre-token.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A",
            pair=f"{BOS_TOKEN} $A $B",
            special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        # Text such as "<eos>" inside a prompt or response stays plain characters, never a control token,
        # so any string over the alphabet round-trips.
        split_special_tokens=True,
    )
    tokenizer.chat_template = CHAR_CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(
    vocab_size: int,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    intermediate: int | None = None,
    max_position_embeddings: int = 512,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
    tie_word_embeddings: bool = True,
    seed: int | None = 0,
) -> LlamaForCausalLM:
    """Build a small ``LlamaForCausalLM`` from a config (no hub access).

    Args:
        vocab_size: embedding rows; use ``len(tokenizer)``.
        hidden: model width; must be divisible by ``heads``.
        layers: decoder layers.
        heads: attention heads (also key/value heads: plain multi-head attention).
        intermediate: MLP width; default ``3 * hidden``.
        max_position_embeddings: longest sequence (RoPE table size).
        pad_token_id, bos_token_id, eos_token_id: special ids (``CharTokenizer`` layout by default).
        tie_word_embeddings: share input embedding and LM head (saves ``vocab_size * hidden`` params).
        seed: if not None, initialise weights under ``torch.manual_seed(seed)`` inside a forked RNG
            (global RNG state is restored afterwards) so the same arguments give the same weights.

    Returns:
        the model in train mode, float32, on CPU.
    """
    import torch

    for name, value in (("vocab_size", vocab_size), ("hidden", hidden), ("layers", layers), ("heads", heads)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if hidden % heads != 0:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate if intermediate is not None else 3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    if seed is None:
        return LlamaForCausalLM(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def save_tiny_model(
    directory: str | Path,
    model: LlamaForCausalLM | None = None,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """Save a tiny model and its tokenizer so ``AutoModelForCausalLM/AutoTokenizer.from_pretrained``
    can load them from ``directory``. Builds the default :func:`CharTokenizer` and
    :func:`build_tiny_llama` when not given. Returns the directory as a ``Path``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        tokenizer = CharTokenizer()
    if model is None:
        model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


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
