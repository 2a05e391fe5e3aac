"""Shared test fixtures: the offline shared data directory and hub isolation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# DeepSpeed JIT-builds its CPU shared-memory op on first use, into one cache per user by default: two venvs (or two
# clones) then rebuild each other's build, and a build killed midway leaves a lock every later build waits on
# forever. Each venv gets its own cache (children inherit it).
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repo; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


# Set in this pytest process by init_distributed() once a learner exists; a child process that
# inherited them would try to join (and collide with) this process's rendezvous port.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python process: this one's, minus the distributed launch
    variables, offline from any hub, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


def sandbox_processes(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


# -- the learner tests' tiny Llama (test_learner_engine, test_learner_checkpoint, test_learner_speed_engine) ---------
LEARNER_VOCAB = 64


def tiny_learner_llama(seed: int = 0):
    """A 2-layer, width-32 ``LlamaForCausalLM`` over ``LEARNER_VOCAB`` tokens (GQA: 4 heads, 2 KV heads), seeded."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=LEARNER_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def learner_process_group():
    """One gloo process group for the whole session (``init_distributed`` is idempotent)."""
    from oat_agents.learners import init_distributed

    init_distributed()
    yield
