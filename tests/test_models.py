"""Tiny char tokenizer and Llama builder: round-trips, layout, save/load, and that gradients flow."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from oat_agents.tiny import DEFAULT_CHARS, CharTokenizer, build_tiny_llama, save_tiny_model


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer()


_TOK = CharTokenizer()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=DEFAULT_CHARS, max_size=80))
def test_decode_round_trips(text):
    tok = _TOK
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) + 1  # one id per character plus <bos>
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_layout_and_special_tokens(tokenizer):
    assert (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.unk_token_id,
    ) == (
        0,
        1,
        2,
        3,
    )
    assert len(tokenizer) == 4 + len(DEFAULT_CHARS)
    for ch in "0123456789+-*/= \n.,aZ":
        assert ch in DEFAULT_CHARS
    # Each character is its own token, in alphabet order after the 4 specials.
    assert tokenizer("0")["input_ids"] == [1, 4 + DEFAULT_CHARS.index("0")]
    assert tokenizer("ab", add_special_tokens=False)["input_ids"] == [
        4 + DEFAULT_CHARS.index("a"),
        4 + DEFAULT_CHARS.index("b"),
    ]
    # Unknown characters map to <unk>; decode of special tokens is visible unless skipped.
    assert tokenizer("é", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    assert tokenizer.decode([1, 4 + DEFAULT_CHARS.index("x"), 2]) == "<bos>x<eos>"


def test_left_padding_and_chat_template(tokenizer):
    enc = tokenizer(["ab", "abcd"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, :2].tolist() == [0, 0]
    assert enc["attention_mask"][0].tolist() == [0, 0, 1, 1, 1]
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "user: 2+2\nassistant: "


def test_bad_alphabet():
    with pytest.raises(ValueError, match="duplicate"):
        CharTokenizer("aab")
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer("")


def test_default_model_size_and_seeded_init(tokenizer):
    model = build_tiny_llama(len(tokenizer))
    assert isinstance(model, LlamaForCausalLM)
    n_params = sum(p.numel() for p in model.parameters())
    assert 500_000 <= n_params <= 1_000_000
    torch.manual_seed(0)
    expected_next = torch.rand(2)
    torch.manual_seed(0)
    again = build_tiny_llama(len(tokenizer))
    assert torch.equal(torch.rand(2), expected_next), "seeded init must not consume the global RNG"
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    different = build_tiny_llama(len(tokenizer), seed=1)
    assert not torch.equal(different.lm_head.weight, model.lm_head.weight)
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_llama(10, hidden=30, heads=4)
    with pytest.raises(ValueError, match="positive"):
        build_tiny_llama(0)


def test_save_and_from_pretrained_round_trip(tokenizer, tmp_path):
    model = build_tiny_llama(len(tokenizer), hidden=32, layers=1, heads=2)
    path = save_tiny_model(tmp_path / "tiny", model=model, tokenizer=tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(path)
    tok2 = AutoTokenizer.from_pretrained(path)
    text = "12+34=46\n"
    assert tok2(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tok2.decode(tok2(text)["input_ids"], skip_special_tokens=True) == text
    assert tok2.padding_side == "left" and tok2.chat_template == tokenizer.chat_template
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)
    # Defaults build both pieces.
    default_dir = save_tiny_model(tmp_path / "default")
    assert (default_dir / "config.json").exists() and (default_dir / "tokenizer.json").exists()


def test_tiny_model_overfits_a_fixed_string(tokenizer):
    """20 Adam steps on one string: the LM loss must drop a lot (gradients flow end to end)."""
    model = build_tiny_llama(len(tokenizer), hidden=32, layers=2, heads=2, seed=0)
    ids = tokenizer("12+34=46\n57+8=65\n", return_tensors="pt")["input_ids"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 4.0  # ~log(vocab) at init
    assert losses[-1] < 0.5 * losses[0]
