"""Benchmark: the same reward model in-process vs served by `oat-serve-oracle`.

Four setups score the same random (prompt, response) items with one tiny random Qwen3 reward
model (built offline in a temp dir):

* ``in-process``      -- ``RewardModelOracle.reward`` on the whole workload (micro-batches of
                         ``--rm-batch``), the baseline;
* ``served-batching`` -- ``oat-serve-oracle`` as deployed (supervisor + front + Mosec), one
                         worker, dynamic batching of up to ``--max-batch-size`` requests; with
                         ``--max-wait-ms 0`` (default) a batch is what is queued when the worker
                         is free, items of all merged requests scored in one call;
* ``served-bs1``      -- the same with ``max_batch_size=1`` (no server-side batching);
* ``served-direct``   -- ``served-batching`` without the front (``--no-supervise``, clients talk
                         to Mosec itself), at the lowest and highest client count: what the
                         front costs.

Clients: ``C`` in {1, 8, 64} concurrent asyncio clients, each sending sequential requests of
``--items-per-request`` items through :class:`RemoteOracle` until the workload is done.
Prints items/s, per-request latency p50/p99 (client side, queueing included) and the ratios
(targets: served-batching >= 0.8x in-process and >= 5x served-bs1 at 64 clients, >= 1x served-bs1
at 1 client). Everything runs in this process + the server's on 127.0.0.1, so the client's own
CPU (aiohttp, ~0.1-0.2 ms per request) shares the cores with the server.

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
from typing import Any

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

    def __init__(
        self,
        model_dir: str,
        max_batch_size: int,
        max_wait_ms: int,
        rm_batch: int,
        log: Path,
        front: bool = True,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "oat_env.cli_serve", "--oracle", "reward_model", "--model", model_dir,
            "--oracle-kwargs", json.dumps({"batch_size": rm_batch, "device": "cpu"}),
            "--port", str(self.port), "--workers", "1", "--max-batch-size", str(max_batch_size),
            "--max-wait-ms", str(max_wait_ms), "--timeout", "120", "--log-level", "warning",
            *([] if front else ["--no-supervise"]),
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
) -> dict[str, Any]:
    """Serve ``prompts`` with ``clients`` concurrent clients; returns the wall time ``s``, the
    per-request latencies ``lat`` (s), the server's batch sizes ``calls`` (items per oracle call,
    as each request saw it) and ``busy`` (seconds the oracle itself was computing)."""
    oracle = RemoteOracle(url, chunk_size=per_request, max_concurrency=max(clients, 1), timeout_s=120)
    starts = list(range(0, len(prompts), per_request))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for s in starts:
        queue.put_nowait(s)
    out = np.full(len(prompts), np.nan)
    call_sizes: list[float] = []
    call_latency: list[float] = []
    latency: list[float] = []

    async def client() -> None:
        while not queue.empty():
            s = queue.get_nowait()
            t = time.perf_counter()
            res = await oracle.areward(prompts[s : s + per_request], responses[s : s + per_request])
            latency.append(time.perf_counter() - t)
            out[s : s + per_request] = res.scores
            call_sizes.append(res.metrics.get("server/batch_size", float("nan")))
            call_latency.append(res.metrics.get("server/latency_s", float("nan")))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    dt = time.perf_counter() - t0
    await oracle.aclose()
    if np.isnan(out).any():
        raise RuntimeError("some items were not answered")
    # Time the oracle itself was busy (each call is seen by each of its requests).
    busy = float(np.sum(np.asarray(call_latency) / np.maximum(np.asarray(call_sizes) / per_request, 1.0)))
    return {"s": dt, "lat": latency, "calls": call_sizes, "busy": busy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload and model (~1 min)")
    ap.add_argument("--items", type=int, default=None, help="items per measurement")
    ap.add_argument("--items-per-request", type=int, default=1, help="1 = one env/client per item")
    ap.add_argument("--max-batch-size", type=int, default=64, help="requests merged per oracle call")
    ap.add_argument("--max-wait-ms", type=int, default=0, help="0: batch only what is queued")
    ap.add_argument("--rm-batch", type=int, default=64, help="reward-model micro-batch size")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, in-process and in the server"
    )
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument(
        "--rounds", type=int, default=4, help="each measurement is split into rounds taken in turn"
    )
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
    ref_scores = local.reward(prompts[:64], responses[:64]).scores

    cmin, cmax = min(args.clients), max(args.clients)
    # (name, max batch size, behind the front, client counts measured)
    setups = (
        ("served-batching", args.max_batch_size, True, args.clients),
        ("served-bs1", 1, True, args.clients),
        ("served-direct", args.max_batch_size, False, sorted({cmin, cmax})),
    )
    # All servers run side by side (idle unless measured) so that every measurement can be split
    # into rounds taken in turn: the cores are shared with other jobs whose load drifts, and a
    # ratio of two numbers measured minutes apart measures that drift, not the servers.
    servers: dict[str, Server] = {}
    try:
        for name, mbs, front, _ in setups:
            servers[name] = Server(
                model_dir, mbs, args.max_wait_ms, args.rm_batch, tmp / f"{name}.log", front=front
            )
        for server in servers.values():
            server.wait_ready()
            # Correctness check: served scores equal in-process scores (same weights, same texts).
            check = RemoteOracle(server.url, chunk_size=args.items_per_request)
            served = check.reward(prompts[:64], responses[:64]).scores
            check.close()
            np.testing.assert_allclose(served, ref_scores, rtol=1e-3, atol=1e-3)

        rates: dict[str, dict[int, float]] = {name: {} for name in ["in-process", *servers]}
        bounds = np.linspace(0, n_items, args.rounds + 1).astype(int)
        for c in args.clients:
            names = ["in-process", *(name for name, _, _, counts in setups if c in counts)]
            acc = {name: {"s": 0.0, "lat": [], "calls": [], "busy": 0.0} for name in names}
            for r in range(args.rounds):
                sl = slice(bounds[r], bounds[r + 1])
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
                    if name == "in-process":
                        t0 = time.perf_counter()
                        local.reward(prompts[sl], responses[sl])
                        acc[name]["s"] += time.perf_counter() - t0
                        continue
                    res = asyncio.run(
                        run_clients(servers[name].url, prompts[sl], responses[sl], c, args.items_per_request)
                    )
                    for key in ("s", "busy"):
                        acc[name][key] += res[key]
                    acc[name]["lat"] += res["lat"]
                    acc[name]["calls"] += res["calls"]
            for name in names:
                a = acc[name]
                rate = rates[name][c] = n_items / a["s"]
                if name == "in-process":
                    print(f"{name:>16}: ({c:3d} clients' rounds) {rate:10.1f} items/s")
                    continue
                p50, p99 = np.percentile(a["lat"], [50, 99]) * 1e3
                print(
                    f"{name:>16}: {c:3d} clients {rate:10.1f} items/s  "
                    f"({rate / rates['in-process'][c]:.2f}x in-process, p50 {p50:6.1f} ms, p99 {p99:6.1f} ms, "
                    f"{np.mean(a['calls']):.1f} items/oracle call, oracle busy {a['busy'] / a['s']:.0%})"
                )
    finally:
        for server in servers.values():
            server.stop()

    batching, bs1, direct = rates["served-batching"], rates["served-bs1"], rates["served-direct"]
    checks = (
        (f"served-batching / in-process at {cmax} clients", batching[cmax] / rates["in-process"][cmax], 0.8),
        (f"served-batching / served-bs1 at {cmax} clients", batching[cmax] / bs1[cmax], 5.0),
        (f"served-batching / served-bs1 at {cmin} client(s)", batching[cmin] / bs1[cmin], 1.0),
        (f"front cost: served-batching / served-direct at {cmax} clients", batching[cmax] / direct[cmax], None),
        (f"front cost: served-batching / served-direct at {cmin} client(s)", batching[cmin] / direct[cmin], None),
    )  # fmt: skip
    print()
    for what, ratio, target in checks:
        verdict = "" if target is None else f" (target >= {target:g}x) {'OK' if ratio >= target else 'MISS'}"
        print(f"{what}: {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    main()
