"""Fault tests for `oat-serve-oracle`: killed worker processes, malformed/oversized requests, and
the supervisor giving up. Loopback only; the served oracle is test_oracle_remote's cheap one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mosec")
pytest.importorskip("aiohttp")
psutil = pytest.importorskip("psutil")

from test_oracle_remote import REPO, TESTS, Served, _free_port, make_batch, make_test_oracle  # noqa: E402

from oat_env.oracles.remote import RemoteOracle, codec  # noqa: E402


def _server_main(served: Served) -> psutil.Process:
    """The Mosec server process (the supervisor's child running with --no-supervise)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for child in psutil.Process(served.proc.pid).children():
            if "--no-supervise" in child.cmdline():
                return child
        time.sleep(0.1)
    raise AssertionError("no Mosec server process under the supervisor")


def _ingress_pids(served: Served) -> list[int]:
    """Python worker processes of the Mosec server that are not oracle workers (= ingress)."""
    oracle = served.worker_pids()
    out = []
    for child in _server_main(served).children():
        cmd = " ".join(child.cmdline())
        if "multiprocessing.spawn" in cmd and "resource_tracker" not in cmd and child.pid not in oracle:
            out.append(child.pid)
    return sorted(out)


def _run_clients(served: Served, kill, n: int = 1000, clients: int = 4) -> dict:
    """``clients`` threads share ``n`` queries; ``kill()`` runs mid-run. Returns answers + stats."""
    prompts, responses = make_batch(n, seed=7)
    expected = make_test_oracle().reward(prompts, responses).scores  # the in-process oracle
    share = n // clients
    out: dict = {"res": {}, "err": []}

    def work(k: int) -> None:
        sl = slice(k * share, (k + 1) * share)
        client = RemoteOracle(
            served.url, chunk_size=5, max_concurrency=8, timeout_s=3, backoff_s=0.1, max_attempts=25,
            seed=k,
        )
        try:
            out["res"][k] = client.reward(prompts[sl], responses[sl])
        except BaseException as err:  # surfaced by the assertions
            out["err"].append(err)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.7)
    assert any(t.is_alive() for t in threads), "run finished before the kill"
    kill()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not out["err"], f"{out['err']!r}\n{served.tail()}"
    got = np.concatenate([out["res"][k].scores for k in range(clients)])
    assert got.shape == (n,)  # nothing lost, nothing duplicated (one answer per item)
    np.testing.assert_array_equal(got, expected[: clients * share])  # identical, in order
    retries = sum(out["res"][k].metrics["retries"] for k in range(clients))
    print(f"{n} queries in {time.monotonic() - t0:.1f}s, lost=0, duplicated=0, retries={retries:.0f}")
    return {"retries": retries}


@pytest.mark.parametrize("ingress_workers", [2, 1])
def test_killing_an_ingress_worker_loses_nothing(tmp_path: Path, ingress_workers: int) -> None:
    """2 per route (default): Mosec respawns the killed one, no restart. 1 per route: the stage is
    gone, Mosec stops, the supervisor restarts it; clients retry through the gap either way."""
    served = Served(
        tmp_path, workers=2, max_batch_size=8, delay=0.25, extra=["--ingress-workers", str(ingress_workers)]
    )
    try:
        victims = _ingress_pids(served)
        assert len(victims) == 2 * ingress_workers, victims
        server = _server_main(served)
        # The first-started ingress serves /reward (Mosec starts stages in order).
        victim = min(victims, key=lambda pid: psutil.Process(pid).create_time())
        _run_clients(served, lambda: os.kill(victim, signal.SIGKILL))
        assert served.proc.poll() is None
        if ingress_workers == 2:
            assert _server_main(served).pid == server.pid  # respawned in place, no restart
        else:
            assert _server_main(served).pid != server.pid and "server exited with 3" in served.tail()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_ingress_pids(served)) < 2 * ingress_workers:
            time.sleep(0.1)
        now = _ingress_pids(served)
        assert len(now) == 2 * ingress_workers and victim not in now
    finally:
        served.stop()


def test_killing_the_only_oracle_worker_restarts_the_server(tmp_path: Path) -> None:
    served = Served(tmp_path, workers=1, max_batch_size=8, delay=0.1)
    try:
        first = _server_main(served).pid
        (victim,) = served.worker_pids()
        probe = RemoteOracle(served.url, timeout_s=1, max_attempts=1)

        def kill() -> None:
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)

            def measure() -> None:  # kill -> first answer from the restarted server
                while time.monotonic() - t0 < 60:
                    if len(served.worker_pids()) > 1:
                        try:
                            probe.reward(["p"], ["r"])
                            print(f"restart: served again {time.monotonic() - t0:.1f}s after the kill")
                            return
                        except Exception:  # noqa: BLE001 - not up yet
                            pass
                    time.sleep(0.05)

            threading.Thread(target=measure, daemon=True).start()

        stats = _run_clients(served, kill)
        assert stats["retries"] >= 1
        assert "server exited with 3" in served.tail()  # a crash, not a clean exit
        assert served.proc.poll() is None, "supervisor exited"
        assert _server_main(served).pid != first, "Mosec was not restarted"
        assert "server exited" in served.tail()
    finally:
        served.stop()


def test_malformed_and_oversized_requests_get_clean_4xx(tmp_path: Path) -> None:
    import aiohttp

    served = Served(tmp_path, workers=1, max_batch_size=8, delay=0.0)
    kb = "x" * 1000

    async def post(path: str, body: bytes) -> tuple[int, str, float]:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s, s.post(served.url + path, data=body) as resp:
            return resp.status, await resp.text(errors="replace"), time.monotonic() - t0

    cases = [
        # Mosec alone would answer an empty body 200 "no data provided"; the supervisor's front
        # forwards it as a marker the ingress rejects (issue #16).
        ("/reward", b"", 400, "empty body"),
        ("/compare", b"", 400, "empty body"),
        ("/reward", b"\xc1 not msgpack", 400, "msgpack"),
        ("/reward", codec.pack([1, 2]), 422, "map"),
        ("/reward", codec.pack({"prompts": "a", "responses": ["b"]}), 422, "array"),
        ("/reward", codec.pack({"prompts": ["a", "b"], "responses": ["b"]}), 422, "items"),
        ("/compare", codec.pack({"prompts": ["a"], "responses_a": [1], "responses_b": ["b"]}), 422, "[0]"),
        ("/reward", codec.pack({"prompts": ["a"] * 5000, "responses": ["b"] * 5000}), 422, "limit"),
        ("/reward", codec.pack({"prompts": ["p" * 300_000], "responses": ["b"]}), 422, "per-item limit"),
        ("/reward", codec.pack({"prompts": [kb] * 4096, "responses": [kb] * 4096}), 413, ""),
        ("/reward", codec.pack({"prompts": ["x" * 7_000_000], "responses": ["b"]}), 413, ""),
    ]

    async def main() -> list:
        return [await post(path, body) for path, body, _, _ in cases]

    try:
        results = asyncio.run(main())
        for (path, body, status, word), (got, text, secs) in zip(cases, results, strict=True):
            assert got == status, (path, body[:40], got, text)
            assert word in text, (word, text)
            assert secs < 5, (secs, text)  # rejected up front, never a 408 after the timeout
            for leak in ("/", "frame", "File ", "Traceback", "0x"):
                assert leak not in text, (leak, text)
        # The largest request inside the limits is answered, fast.
        big = codec.encode_request(
            "reward", 1, {"prompts": [kb] * 1800, "responses": [kb] * 1800, "references": None}
        )
        status, _, secs = asyncio.run(post("/reward", big))
        assert status == 200 and secs < 5, (status, secs)
    finally:
        served.stop()


def test_supervisor_gives_up_with_nonzero_exit(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "oat_env.cli_serve", "--oracle", "no_such_module_xyz:make",
        "--port", str(_free_port()), "--log-level", "error", "--max-restarts", "1",
        "--restart-window", "60",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), TMPDIR=str(tmp_path))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "giving up" in proc.stderr
    print(f"gave up after 2 server deaths in {time.monotonic() - t0:.1f}s")


def test_timeout_message_has_no_frame_repr() -> None:
    import mosec.coordinator

    from oat_env.oracles.remote import server

    # Patched at import, so also in Mosec's spawned workers (they import this module).
    assert mosec.coordinator.set_mosec_timeout is server._clean_timeout
    with pytest.raises(mosec.coordinator.MosecTimeoutError) as info:
        with server._clean_timeout(0.05):
            time.sleep(2)
    assert str(info.value) == "forward timeout after 0.05s"
