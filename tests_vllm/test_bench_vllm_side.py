"""The vLLM side of the real-model benchmarks (``oat-bench dap-vs-trl|grpo-vs-trl --backend vllm``): the worker of
:mod:`oat_agents.bench.vllm_side`, run for real as the benchmarks run it (a subprocess of this venv's python, its
result read from the ``OAT_BENCH_RESULT`` line), on a tiny Llama built from a config instead of SmolLM2."""

import sys

import numpy as np
import pytest

from oat_agents.bench.vllm_side import run_worker
from oat_agents.smollm import TLDR_SAMPLES
from oat_agents.tiny import CharTokenizer, build_tiny_llama, save_tiny_model
from oat_env.oracles.base import OracleResult

# Head size 32 (vLLM's CPU attention supports it); long positions for the TL;DR posts (up to ~1,250 characters).
TINY = {"hidden": 64, "layers": 2, "heads": 2, "max_position_embeddings": 2048}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tokenizer = CharTokenizer()
    model = build_tiny_llama(len(tokenizer), seed=3, **TINY)
    return str(save_tiny_model(tmp_path_factory.mktemp("bench_tiny"), model, tokenizer))


class CountingVerifier:
    """The env's own verifier, graded in this process (through the bridge); counts its calls."""

    def __init__(self, verifier):
        self.verifier, self.calls = verifier, 0

    def reward(self, prompts, responses, references=None):
        self.calls += 1
        return self.verifier.reward(prompts, responses, references=references)


def test_grpo_worker_times_rounds_and_syncs_every_one(tiny_dir):
    from oat_agents.bench.grpo_vs_trl import env_verifier, tiny_work

    verifier = CountingVerifier(env_verifier(tiny_work()))
    spec = {"job": "grpo", "workload": "tiny-arithmetic", "model_dir": tiny_dir, "threads": 1, "seed": 0,
            "params": {"steps": 3, "prompts": 2, "group": 2, "max_new_tokens": 4, "lr": 1e-3, "max_seq_length": 64,
                       "share_prompt": True}}  # as the benchmark sends it
    result = run_worker(spec, oracle=verifier, python=sys.executable, timeout_s=900, echo=False)
    assert verifier.calls == 3  # one batched grading per round, in this process
    assert result["backend"] == "vllm" and result["job"] == "grpo"
    assert result["seconds"] > 0  # per completion, rounds 2..3
    assert len(result["rounds"]) == 3
    assert all(r["generate_s"] > 0 and r["learn_s"] > 0 and r["sync_s"] > 0 for r in result["rounds"])
    assert result["weights_version"] == 3  # VLLMPolicy.load_weights after every round


class LengthOracle:
    """The parent's oracle: longer response wins (Bradley--Terry-free, deterministic); counts its calls."""

    def __init__(self):
        self.calls = 0

    def compare(self, prompts, responses_a, responses_b, references=None):
        self.calls += 1
        assert references is not None and len(references) == len(prompts)  # the env's post-reference rule
        a = np.array([len(r) for r in responses_a], dtype=float)
        b = np.array([len(r) for r in responses_b], dtype=float)
        return OracleResult(prob_a_wins=np.where(a > b, 0.9, 0.1))


def test_dap_worker_on_tldr_through_the_oracle_bridge(tiny_dir):
    if not TLDR_SAMPLES.is_file():
        pytest.skip(f"TL;DR samples not found at {TLDR_SAMPLES}")
    oracle = LengthOracle()
    spec = {"job": "dap", "workload": "smollm2-tldr", "model_dir": tiny_dir, "threads": 1, "seed": 0,
            "chat": False,  # the char tokenizer has no chat template
            "params": {"pairs": 4, "batch": 2, "max_new_tokens": 4, "max_length": 2048, "share_prompt": True}}
    result = run_worker(spec, oracle=oracle, python=sys.executable, timeout_s=900, echo=False)
    assert result["job"] == "dap" and result["seconds"] > 0
    assert oracle.calls == 2  # one batched compare per round, answered in this process
    assert [r.get("generate_s", 0) > 0 for r in result["rounds"]] == [True, True]
    assert result["weights_version"] == 2
