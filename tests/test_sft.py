"""SFT loss and assistant-only label building (oat_agents.algorithms.sft)."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from oat_agents.algorithms.sft import (
    IGNORE_INDEX,
    assistant_char_spans,
    build_sft_example,
    collate_sft,
    masked_nll,
    sft_loss,
    validate_messages,
)
from oat_agents.tiny import CharTokenizer, build_tiny_llama

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "and 3+3?"},
    {"role": "assistant", "content": "It is 6."},
]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def char_tok() -> PreTrainedTokenizerFast:
    return CharTokenizer()


@pytest.fixture(scope="module")
def bpe_tok() -> PreTrainedTokenizerFast:
    """A tiny byte-level BPE with ChatML special tokens, trained in-process (no hub)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = ["It is 6. Be brief. and 3+3? user assistant system", "hello world, the answer is 4"] * 20
    backend.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHATML
    return tok


def _labelled_runs(example: dict[str, list[int]], tok: PreTrainedTokenizerFast) -> list[str]:
    """Decode each maximal run of labelled tokens."""
    runs: list[list[int]] = []
    prev = False
    for tid, lab in zip(example["input_ids"], example["labels"]):
        on = lab != IGNORE_INDEX
        if on:
            assert lab == tid
            if not prev:
                runs.append([])
            runs[-1].append(tid)
        prev = on
    return [tok.decode(r, skip_special_tokens=False) for r in runs]


# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------


def test_char_tokenizer_labels_exactly_the_assistant_characters(char_tok) -> None:
    ex = build_sft_example(CONV, char_tok, include_turn_end=False)
    text = char_tok.apply_chat_template(CONV, tokenize=False)
    assert text == "system: Be brief.\nuser: 2+2?\nassistant: 4\nuser: and 3+3?\nassistant: It is 6.\n"
    # One token per character: label positions are character positions.
    assert len(ex["input_ids"]) == len(text)
    first = text.index("assistant: 4") + len("assistant: ")
    second = text.index("assistant: It") + len("assistant: ")
    expected = set(range(first, first + 1)) | set(range(second, second + len("It is 6.")))
    labelled = {i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX}
    assert labelled == expected
    assert _labelled_runs(ex, char_tok) == ["4", "It is 6."]
    assert ex["attention_mask"] == [1] * len(text)


def test_char_tokenizer_turn_end_and_bos(char_tok) -> None:
    ex = build_sft_example(CONV, char_tok, include_turn_end=True, add_special_tokens=True)
    assert ex["input_ids"][0] == char_tok.bos_token_id and ex["labels"][0] == IGNORE_INDEX
    # CharTokenizer's template closes a turn with a newline: it is the stop marker the model must learn.
    assert _labelled_runs(ex, char_tok) == ["4\n", "It is 6.\n"]


def test_bpe_chatml_labels_content_and_im_end(bpe_tok) -> None:
    ex = build_sft_example(CONV, bpe_tok)
    assert _labelled_runs(ex, bpe_tok) == ["4<|im_end|>", "It is 6.<|im_end|>"]
    ex = build_sft_example(CONV, bpe_tok, include_turn_end=False)
    assert _labelled_runs(ex, bpe_tok) == ["4", "It is 6."]
    # Tokens that are not labelled are exactly the template + system/user text.
    text = bpe_tok.apply_chat_template(CONV, tokenize=False)
    assert bpe_tok.decode(ex["input_ids"], skip_special_tokens=False) == text


def test_assistant_span_repeated_in_user_text(char_tok) -> None:
    # The assistant reply also occurs earlier (inside the user turn): the span must be the reply's own.
    conv = [{"role": "user", "content": "say ok"}, {"role": "assistant", "content": "ok"}]
    text, spans = assistant_char_spans(conv, char_tok, include_turn_end=False)
    assert spans == [(text.rindex("ok"), text.rindex("ok") + 2)]


def test_template_that_rewrites_content_raises(char_tok) -> None:
    tok = CharTokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"
    with pytest.raises(ValueError, match=r"messages\[1\]"):
        build_sft_example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        build_sft_example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)


def test_truncation(char_tok) -> None:
    full = build_sft_example(CONV, char_tok)
    cut = build_sft_example(CONV, char_tok, max_length=40)
    assert len(cut["input_ids"]) == 40 == len(cut["labels"]) == len(cut["attention_mask"])
    assert cut["input_ids"] == full["input_ids"][:40] and cut["labels"] == full["labels"][:40]
    tiny = build_sft_example(CONV, char_tok, max_length=5)
    assert all(lab == IGNORE_INDEX for lab in tiny["labels"])
    with pytest.raises(ValueError, match="max_length"):
        build_sft_example(CONV, char_tok, max_length=0)


@pytest.mark.parametrize(
    ("messages", "error", "match"),
    [
        ([], ValueError, "empty"),
        ("hello", TypeError, "list"),
        ([{"role": "assistant", "content": "x"}], ValueError, r"messages\[0\].*'user' is expected"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], ValueError, r"messages\[1\]"),
        ([{"role": "user", "content": "a"}], ValueError, r"messages\[0\] must be an assistant"),
        ([{"role": "bot", "content": "a"}], ValueError, r"messages\[0\] has unknown role"),
        ([{"role": "user", "content": 3}], TypeError, r"messages\[0\] content must be a str"),
        ([{"role": "user"}], ValueError, r"messages\[0\] has no 'content'"),
        (["hi"], TypeError, r"messages\[0\] must be a dict"),
        ([{"role": "system", "content": "s"}], ValueError, "only a system"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": "s"},
                {"role": "assistant", "content": "c"},
            ],
            ValueError,
            r"messages\[2\] has role 'system' only as the first",
        ),
    ],
)
def test_validation_errors(messages, error, match) -> None:
    with pytest.raises(error, match=match):
        validate_messages(messages)


def test_validation_accepts_valid_conversations() -> None:
    validate_messages(CONV)
    validate_messages([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])


def test_collate_pads_both_sides() -> None:
    exs = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
        {"input_ids": [8], "attention_mask": [1], "labels": [8]},
    ]
    right = collate_sft(exs, pad_token_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    left = collate_sft(exs, pad_token_id=0, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    with pytest.raises(ValueError, match="at least one"):
        collate_sft([], pad_token_id=0)


# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def test_sft_loss_hand_computed_with_shift() -> None:
    # Vocab 3; position t's logits predict token t + 1.
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [5.0, 0.0, 0.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 2, 0]])
    lse0 = math.log(math.exp(0) + math.exp(1) + math.exp(2))
    nll1 = -(2.0 - lse0)  # logits[0] predicts label 2
    nll2 = -(1.0 - math.log(3 * math.e))  # logits[1] predicts label 0
    loss, m = sft_loss(logits, labels)
    assert loss.item() == pytest.approx((nll1 + nll2) / 2, rel=1e-6)
    assert m["train/sft_tokens"] == 2.0
    only_first = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX]])
    assert sft_loss(logits, only_first)[0].item() == pytest.approx(nll1, rel=1e-6)
    none = sft_loss(logits.requires_grad_(), torch.full((1, 3), IGNORE_INDEX))[0]
    assert none.item() == 0.0
    none.backward()
    assert logits.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="outside"):
        sft_loss(logits, torch.tensor([[0, 7, 0]]))


def test_masked_nll() -> None:
    lp = torch.tensor([[-1.0, -2.0], [-4.0, -8.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert masked_nll(lp, mask).item() == pytest.approx((1 + 4 + 8) / 3)


def test_sft_on_tiny_llama_reduces_loss(char_tok) -> None:
    torch.manual_seed(0)
    model = build_tiny_llama(len(char_tok), hidden=32, layers=1, heads=2, seed=0)
    batch = collate_sft(
        [build_sft_example(CONV, char_tok, add_special_tokens=True)], pad_token_id=char_tok.pad_token_id
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, _ = sft_loss(logits, batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
