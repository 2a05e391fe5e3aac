"""Remote oracle: real `oat-serve-oracle` Mosec server on 127.0.0.1 + RemoteOracle client.

The served oracle is a cheap deterministic one defined here (``test_oracle_remote:make_test_oracle``,
imported by the server's worker processes through PYTHONPATH), so expected answers are exact.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mosec")
pytest.importorskip("aiohttp")
pytest.importorskip("msgpack")

from oat_env.oracles.base import OracleResult, PreferenceOracle, RewardOracle, sigmoid  # noqa: E402
from oat_env.oracles.remote import (  # noqa: E402
    RemoteCallError,
    RemoteOracle,
    codec,  # noqa: E402
)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- served oracle
class _TestOracle:
    """score = len(response) + 0.01 * len(prompt); needs references iff `need_refs`."""

    def __init__(self, delay: float, need_refs: bool) -> None:
        self.delay = delay
        self.need_refs = need_refs

    def reward(self, prompts: Sequence[str], responses: Sequence[str], references=None) -> OracleResult:
        if self.need_refs and (references is None or any(r is None for r in references)):
            raise ValueError("references required")
        if any(r == "REJECT" for r in responses):
            raise ValueError("response REJECT is not allowed")
        time.sleep(self.delay)
        n = len(prompts)
        scores = np.array([expected_score(p, r) for p, r in zip(prompts, responses, strict=True)])
        return OracleResult(scores=scores, info={"call_items": np.full(n, n), "pid": np.full(n, os.getpid())})


def expected_score(prompt: str, response: str) -> float:
    return len(response) + 0.01 * len(prompt)


def make_test_oracle(delay: float = 0.0, pid_dir: str | None = None, need_refs: bool = False) -> _TestOracle:
    if pid_dir:
        Path(pid_dir, str(os.getpid())).write_text("worker")
    return _TestOracle(delay, need_refs)


# ----------------------------------------------------------------------------- server fixture
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(
        self, tmp: Path, workers: int = 2, max_batch_size: int = 16, extra: Sequence[str] = (), **kw
    ):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid_dir = tmp / f"pids_{self.port}"
        self.pid_dir.mkdir()
        kwargs = {
            "delay": kw.get("delay", 0.002),
            "pid_dir": str(self.pid_dir),
            "need_refs": kw.get("need_refs", False),
        }
        import json

        cmd = [
            sys.executable, "-m", "oat_env.cli_serve",
            "--oracle", "test_oracle_remote:make_test_oracle",
            "--oracle-kwargs", json.dumps(kwargs),
            "--port", str(self.port), "--workers", str(workers),
            "--max-batch-size", str(max_batch_size), "--max-wait-ms", "5",
            "--timeout", "10", "--log-level", "warning", *extra,
        ]  # fmt: skip
        pythonpath = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
        # TMPDIR: Mosec's IPC socket dir lands in the test's tmp dir even if the server is SIGKILLed.
        env = dict(os.environ, PYTHONPATH=pythonpath, TMPDIR=str(tmp))
        self.log = open(tmp / f"server_{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_ready(workers, timeout=45)

    def worker_pids(self) -> set[int]:
        return {int(p.name) for p in self.pid_dir.iterdir()}

    def wait_ready(self, workers: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = RemoteOracle(self.url, timeout_s=2, max_attempts=1)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
                if len(self.worker_pids()) >= workers and client.healthy():
                    try:
                        client.reward(["p"], ["r"], ["ref"])
                        return
                    except RemoteCallError:
                        pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"server not ready within {timeout}s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:  # always reap the whole group (worker processes included)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("srv"), workers=2, max_batch_size=16)
    try:
        yield server
    finally:
        server.stop()


def make_batch(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    prompts = [f"prompt {i}" + "x" * int(rng.integers(0, 50)) for i in range(n)]
    responses = ["y" * int(rng.integers(0, 200)) for _ in range(n)]
    return prompts, responses


# ----------------------------------------------------------------------------- tests
def test_codec_roundtrip_and_validation() -> None:
    payload = codec.encode_request("reward", 7, {"prompts": ["a"], "responses": ["b"], "references": None})
    req = codec.decode_request("reward", payload, max_items=10)
    assert req == {"prompts": ["a"], "responses": ["b"], "op": "reward", "id": 7, "n": 1, "references": None}
    with pytest.raises(codec.BodyDecodeError):
        codec.decode_request("reward", b"\xc1", 10)
    with pytest.raises(codec.RequestError, match="more than the server's limit"):
        codec.decode_request("reward", codec.pack({"prompts": ["a"] * 11, "responses": ["b"] * 11}), 10)
    with pytest.raises(codec.RequestError, match="`responses_b` has 2 items"):
        codec.decode_request(
            "compare", codec.pack({"prompts": ["a"], "responses_a": ["b"], "responses_b": ["c", "d"]}), 10
        )
    res = OracleResult(scores=np.array([1.0, 2.0, 3.0]), info={"k": np.array([1, 2, 3])})
    wire = codec.unpack(codec.pack(codec.result_to_response("reward", 5, res, 1, 3)))
    back = codec.response_to_result("reward", wire, 5, 2)
    np.testing.assert_array_equal(back.scores, [2.0, 3.0])
    np.testing.assert_array_equal(back.info["k"], [2, 3])
    with pytest.raises(ValueError, match="does not match"):
        codec.response_to_result("reward", wire, 6, 2)


def test_reward_and_compare_exact(served: Served) -> None:
    prompts, responses = make_batch(100)
    with RemoteOracle(served.url, chunk_size=7, max_concurrency=8) as client:
        assert isinstance(client, RewardOracle) and isinstance(client, PreferenceOracle)
        res = client.reward(prompts, responses)
        expected = np.array([expected_score(p, r) for p, r in zip(prompts, responses, strict=True)])
        np.testing.assert_allclose(res.scores, expected)
        assert res.metrics["requests"] == 15  # ceil(100 / 7)
        other = responses[::-1]
        cmp = client.compare(prompts, responses, other)
        exp_b = np.array([expected_score(p, r) for p, r in zip(prompts, other, strict=True)])
        np.testing.assert_allclose(cmp.prob_a_wins, sigmoid(expected - exp_b))
        np.testing.assert_allclose(cmp.info["score_a"], expected)


def test_dynamic_batching_merges_requests(served: Served) -> None:
    """64 concurrent 1-item requests are merged server-side into multi-request oracle calls."""
    prompts, responses = make_batch(64, seed=1)
    with RemoteOracle(served.url, chunk_size=1, max_concurrency=64) as client:
        res = client.reward(prompts, responses)
    assert res.info["call_items"].max() > 1
    assert res.info["call_items"].max() <= 16  # max_batch_size requests of 1 item


def test_async_api_inside_running_loop(served: Served) -> None:
    prompts, responses = make_batch(20, seed=2)
    client = RemoteOracle(served.url, chunk_size=3)

    async def main() -> tuple[np.ndarray, np.ndarray]:
        a = await client.areward(prompts, responses)
        b = client.reward(prompts, responses)  # sync API also works from inside a running loop
        await client.aclose()
        return a.scores, b.scores

    a, b = asyncio.run(main())
    np.testing.assert_array_equal(a, b)
    client.close()


def test_malformed_bodies_get_4xx(served: Served) -> None:
    import aiohttp

    async def post(path: str, body: bytes) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.post(served.url + path, data=body) as resp:
            return resp.status, await resp.text()

    async def main() -> list[tuple[int, str]]:
        return [
            await post("/reward", b"\xc1 not msgpack"),
            await post("/reward", codec.pack({"prompts": ["a"]})),
            await post("/compare", codec.pack({"prompts": ["a"], "responses_a": [1], "responses_b": ["b"]})),
            await post("/reward", codec.pack({"prompts": ["a"] * 5000, "responses": ["b"] * 5000})),
            await post("/reward", codec.pack({"prompts": ["x" * (9 * 1024 * 1024)], "responses": ["b"]})),
            await post("/reward", b""),
        ]

    (s1, t1), (s2, t2), (s3, t3), (s4, t4), (s5, _), (s6, t6) = asyncio.run(main())
    assert s1 == 400 and "msgpack" in t1
    assert s2 == 422 and "missing field" in t2
    assert s3 == 422 and "responses_a[0]" in t3
    assert s4 == 422 and "limit" in t4
    assert s5 == 413
    assert s6 == 400 and t6 == "decoding error: empty body: expected a msgpack map"  # not Mosec's 200


def test_oracle_rejection_is_isolated_to_its_request(served: Served) -> None:
    with RemoteOracle(served.url, chunk_size=1, max_concurrency=8) as client:
        with pytest.raises(RemoteCallError, match="REJECT is not allowed"):
            client.reward(["p"] * 8, ["ok"] * 7 + ["REJECT"])
        good = client.reward(["p"] * 8, ["ok"] * 8)  # the server still answers normally
        np.testing.assert_allclose(good.scores, expected_score("p", "ok"))


def test_bad_client_arguments(served: Served) -> None:
    with pytest.raises(ValueError, match="url"):
        RemoteOracle("127.0.0.1:8000")
    with RemoteOracle(served.url) as client, pytest.raises(ValueError, match="batch sizes differ"):
        client.reward(["a", "b"], ["c"])


def test_unreachable_server_fails_clearly() -> None:
    client = RemoteOracle(f"http://127.0.0.1:{_free_port()}", max_attempts=2, backoff_s=0.01, timeout_s=1)
    with pytest.raises(RemoteCallError, match="after 2 attempts"):
        client.reward(["a"], ["b"])
    client.close()


def test_exactly_once_when_a_worker_is_killed(tmp_path: Path) -> None:
    # ~25 oracle calls of 8 requests x 5 items, 0.2 s each, over 2 workers: a ~2.5 s run.
    server = Served(tmp_path, workers=2, max_batch_size=8, delay=0.2)
    try:
        prompts, responses = make_batch(1000, seed=3)
        expected = np.array([expected_score(p, r) for p, r in zip(prompts, responses, strict=True)])
        first_pids = server.worker_pids()
        assert len(first_pids) == 2
        client = RemoteOracle(
            server.url, chunk_size=5, max_concurrency=16, timeout_s=2, backoff_s=0.05, max_attempts=10
        )
        out: dict = {}

        def run() -> None:
            try:
                out["res"] = client.reward(prompts, responses)
            except BaseException as err:  # surfaced by the assertion below
                out["err"] = err

        thread = threading.Thread(target=run)
        t0 = time.monotonic()
        thread.start()
        time.sleep(0.8)  # mid-run, while the victim is inside a batched oracle call
        victim = sorted(first_pids)[0]
        os.kill(victim, signal.SIGKILL)
        assert thread.is_alive(), "run finished before the kill; the test would prove nothing"
        thread.join(60)
        assert not thread.is_alive(), "client hung after a worker was killed"
        assert "err" not in out, f"run failed: {out.get('err')!r}\n{server.tail()}"
        res = out["res"]
        np.testing.assert_allclose(res.scores, expected)  # every item, once, in order
        assert res.scores.shape == (1000,)
        assert res.metrics["retries"] >= 1, "the killed worker's requests must have been retried"
        print(f"killed {victim}; run took {time.monotonic() - t0:.1f}s, retries={res.metrics['retries']}")
        client.close()
    finally:
        server.stop()


def test_cli_spec_and_build_oracle_errors() -> None:
    from oat_env.cli_serve import build_parser, parse_spec
    from oat_env.oracles.remote.server import build_oracle

    args = build_parser().parse_args(["--oracle", "m:f", "--oracle-kwargs", '{"a": 1}', "--max-items", "5"])
    assert args.host == "127.0.0.1"  # local-only unless told otherwise
    spec = parse_spec(args)
    assert spec == {"oracle": "m:f", "model": None, "kwargs": {"a": 1}, "temperature": 1.0, "max_items": 5}
    with pytest.raises(SystemExit, match="JSON"):
        parse_spec(build_parser().parse_args(["--oracle", "judge", "--oracle-kwargs", "{bad"]))
    with pytest.raises(ValueError, match="unknown oracle"):
        build_oracle({"oracle": "nope"})
    with pytest.raises(ValueError, match="cannot import"):
        build_oracle({"oracle": "no_such_module_xyz:make"})
    oracle = build_oracle({"oracle": "test_oracle_remote:make_test_oracle", "kwargs": {"delay": 0.0}})
    assert isinstance(oracle, _TestOracle)


@pytest.mark.slow
def test_served_reward_model_matches_in_process(tmp_path: Path) -> None:
    """`--oracle reward_model --model DIR` serves the same scores as the in-process oracle."""
    pytest.importorskip("transformers")
    import json

    from oat_env.oracles.reward_model import RewardModelOracle, save_tiny_reward_model

    model_dir = save_tiny_reward_model(tmp_path / "rm", seed=1)
    prompts, responses = make_batch(40, seed=4)
    local = RewardModelOracle(model_dir, device="cpu").reward(prompts, responses).scores
    port = _free_port()
    cmd = [
        sys.executable, "-m", "oat_env.cli_serve", "--oracle", "reward_model", "--model", model_dir,
        "--oracle-kwargs", json.dumps({"device": "cpu"}), "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        client = RemoteOracle(
            f"http://127.0.0.1:{port}", chunk_size=6, timeout_s=30, max_attempts=40, backoff_s=0.5
        )
        served = client.reward(prompts, responses)  # retries until the workers have loaded the model
        np.testing.assert_allclose(served.scores, local, rtol=1e-4, atol=1e-4)
        cmp = client.compare(prompts[:5], responses[:5], responses[5:10])
        np.testing.assert_allclose(cmp.prob_a_wins, sigmoid(local[:5] - local[5:10]), atol=1e-4)
        client.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
