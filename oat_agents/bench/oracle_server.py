"""Benchmark: the same reward model in-process vs served by `oat-serve-oracle`.

Three setups score the same random (prompt, response) items with one tiny random Qwen3 reward
model (built offline in a temp dir):

* ``in-process``      -- ``RewardModelOracle.reward`` on the whole workload (micro-batches of
                         ``--rm-batch``), the baseline;
* ``served-batching`` -- one Mosec worker, dynamic batching (``--max-batch-size`` requests,
                         ``--max-wait-ms``), items of all merged requests scored in one call;
* ``served-bs1``      -- one Mosec worker with ``max_batch_size=1`` (no server-side batching).

Clients: ``C`` in {1, 8, 64} concurrent asyncio clients, each sending sequential requests of
``--items-per-request`` items through :class:`RemoteOracle` until the workload is done.
Prints items/s and the ratios (targets: served-batching >= 5x served-bs1 at 64 clients, and
>= 0.7x in-process). Everything runs in this process + the server's on 127.0.0.1.

    oat-bench oracle-server            # full
    oat-bench oracle-server --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oat_env.oracles.remote import RemoteOracle
from oat_env.oracles.reward_model import RewardModelOracle, save_tiny_reward_model

WORDS = "the a of to and is in it you that this summary post good bad tl dr".split()


def make_items(n: int, seed: int, words: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    prompts = [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]
    responses = [" ".join(rng.choice(WORDS, size=int(rng.integers(words // 2, words)))) for _ in range(n)]
    return prompts, responses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """An `oat-serve-oracle` subprocess in its own process group (always killed on exit)."""

    def __init__(self, model_dir: str, max_batch_size: int, max_wait_ms: int, rm_batch: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "oat_env.cli_serve", "--oracle", "reward_model", "--model", model_dir,
            "--oracle-kwargs", json.dumps({"batch_size": rm_batch, "device": "cpu"}),
            "--port", str(self.port), "--workers", "1", "--max-batch-size", str(max_batch_size),
            "--max-wait-ms", str(max_wait_ms), "--timeout", "120", "--log-level", "warning",
        ]  # fmt: skip
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        self.log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        client = RemoteOracle(self.url, timeout_s=5, max_attempts=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
                try:
                    client.reward(["warm up"], ["warm up"])
                    return
                except Exception:
                    time.sleep(0.3)
        finally:
            client.close()
        raise RuntimeError(f"server not ready in {timeout}s")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.log.close()


async def run_clients(
    url: str, prompts: list[str], responses: list[str], clients: int, per_request: int
) -> tuple[float, float, float]:
    """(items/s, mean items per oracle call, oracle busy fraction) for ``clients`` concurrent clients."""
    oracle = RemoteOracle(url, chunk_size=per_request, max_concurrency=max(clients, 1), timeout_s=120)
    starts = list(range(0, len(prompts), per_request))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in starts:
        queue.put_nowait(s)
    out = np.full(len(prompts), np.nan)
    call_sizes: list[float] = []
    call_latency: list[float] = []

    async def client() -> None:
        while not queue.empty():
            s = queue.get_nowait()
            res = await oracle.areward(prompts[s : s + per_request], responses[s : s + per_request])
            out[s : s + per_request] = res.scores
            call_sizes.append(res.metrics.get("server/batch_size", float("nan")))
            call_latency.append(res.metrics.get("server/latency_s", float("nan")))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    dt = time.perf_counter() - t0
    await oracle.aclose()
    if np.isnan(out).any():
        raise RuntimeError("some items were not answered")
    # Fraction of the wall time the oracle itself was busy (each call is seen by each of its requests).
    busy = (
        float(np.sum(np.asarray(call_latency) / np.maximum(np.asarray(call_sizes) / per_request, 1.0))) / dt
    )
    return len(prompts) / dt, float(np.mean(call_sizes)), busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload and model (~1 min)")
    ap.add_argument("--items", type=int, default=None, help="items per measurement")
    ap.add_argument("--items-per-request", type=int, default=1, help="1 = one env/client per item")
    ap.add_argument("--max-batch-size", type=int, default=64, help="requests merged per oracle call")
    ap.add_argument("--max-wait-ms", type=int, default=5)
    ap.add_argument("--rm-batch", type=int, default=64, help="reward-model micro-batch size")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, in-process and in the server"
    )
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    args = ap.parse_args()
    n_items = args.items or (1024 if args.quick else 4096)
    import torch

    # Same thread budget for the in-process baseline and the server worker (inherits the env).
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    hidden, layers, words = (64, 2, 8) if args.quick else (64, 2, 12)

    tmp = Path(tempfile.mkdtemp(prefix="oat_bench_oracle_"))
    model_dir = save_tiny_reward_model(
        tmp / "rm", seed=0, vocab_texts=WORDS, hidden_size=hidden, num_layers=layers
    )
    prompts, responses = make_items(n_items, seed=0, words=words)
    print(
        f"workload: {n_items} items, {args.items_per_request} items/request, model hidden={hidden} layers={layers}"
    )

    local = RewardModelOracle(model_dir, batch_size=args.rm_batch, device="cpu")
    local.reward(prompts[:64], responses[:64])  # warm up
    t0 = time.perf_counter()
    ref_scores = local.reward(prompts, responses).scores
    in_process = n_items / (time.perf_counter() - t0)
    print(f"{'in-process':>16}: {in_process:10.1f} items/s")
    del local

    results: dict[str, dict[int, float]] = {}
    for name, mbs in (("served-batching", args.max_batch_size), ("served-bs1", 1)):
        server = Server(model_dir, mbs, args.max_wait_ms, args.rm_batch, tmp / f"{name}.log")
        try:
            server.wait_ready()
            # Correctness check: served scores equal in-process scores (same weights, same texts).
            check = RemoteOracle(server.url, chunk_size=args.items_per_request)
            served = check.reward(prompts[:64], responses[:64]).scores
            check.close()
            np.testing.assert_allclose(served, ref_scores[:64], rtol=1e-3, atol=1e-3)
            results[name] = {}
            for c in args.clients:
                rate, call, busy = asyncio.run(
                    run_clients(server.url, prompts, responses, c, args.items_per_request)
                )
                results[name][c] = rate
                print(
                    f"{name:>16}: {c:3d} clients {rate:10.1f} items/s  ({rate / in_process:.2f}x in-process, "
                    f"{call:.1f} items/oracle call, oracle busy {busy:.0%})"
                )
        finally:
            server.stop()

    cmax = max(args.clients)
    batching, bs1 = results["served-batching"][cmax], results["served-bs1"][cmax]
    r1, r2 = batching / bs1, batching / in_process
    print(
        f"\nserved-batching / served-bs1 at {cmax} clients: {r1:.2f}x (target >= 5x) {'OK' if r1 >= 5 else 'MISS'}"
    )
    print(
        f"served-batching / in-process at {cmax} clients: {r2:.2f}x (target >= 0.7x) {'OK' if r2 >= 0.7 else 'MISS'}"
    )


if __name__ == "__main__":
    main()
