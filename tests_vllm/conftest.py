"""Fixtures of the vLLM backend tests (``make test-vllm``; run with ``.venv-vllm/bin/python -m pytest tests_vllm``).

These tests need real vLLM (``vllm-cpu`` on CPU, from ``scripts/setup_vllm_venv.sh``); they are kept out of the
main suite (``testpaths = tests``) because vLLM lives in its own venv. One engine serves the whole session:
building a vLLM engine costs ~20 s on CPU, and engines are not meant to be created over and over in a process.
"""

import copy
import gc
import os

# Before vllm is imported: the engine runs in this process (so tensors can be handed to reload_weights and
# failures surface here), nothing touches the network, and the CPU KV cache stays small.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("vllm", reason="vllm is not installed: run scripts/setup_vllm_venv.sh and use .venv-vllm")

from oat_agents.policies.hf import HFPolicy  # noqa: E402
from oat_agents.policies.vllm import VLLMPolicy  # noqa: E402
from oat_agents.tiny import CharTokenizer, build_tiny_llama, save_tiny_model  # noqa: E402

# hidden 64 with 2 heads: head size 32, which vLLM's CPU attention supports; 2 layers keep everything fast.
MODEL_KWARGS = {"hidden": 64, "layers": 2, "heads": 2, "max_position_embeddings": 256}


def scrambled_tiny_llama(seed: int):
    """A tiny Llama whose matrices get N(0, 0.3^2) noise: a freshly initialised one just repeats the last
    prompt character under greedy decoding, which would make parity and stop-string tests vacuous."""
    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), seed=seed, **MODEL_KWARGS)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model, tokenizer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    model, tokenizer = scrambled_tiny_llama(seed=2)
    return save_tiny_model(tmp_path_factory.mktemp("tiny_llama"), model, tokenizer)


@pytest.fixture(scope="session")
def other_weights():
    """A state dict of the same architecture with different values (HF names)."""
    model, _ = scrambled_tiny_llama(seed=7)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def hf_policy(model_dir):
    return HFPolicy(model_dir, device="cpu")


@pytest.fixture(scope="session")
def vllm_policy(model_dir):
    policy = VLLMPolicy(model_dir, dtype="float32", max_model_len=256, enforce_eager=True, max_num_seqs=64)
    yield policy
    del policy
    gc.collect()


@pytest.fixture
def restore_weights(vllm_policy, model_dir):
    """Tests that load other weights into the shared engine put the original ones back afterwards."""
    yield
    vllm_policy.load_weights(model_dir)


@pytest.fixture
def hf_model_copy(hf_policy):
    return copy.deepcopy(hf_policy.model)
