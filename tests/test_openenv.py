"""``oat-serve-env``: real servers on 127.0.0.1 (subprocesses), driven by openenv-core's own clients.

Three servers (``oat/Arithmetic-v0``, ``oat/Arithmetic-Duel-v0``, ``oat/MathMultiTurn-v0``) start
once, in parallel, on free ports (``--port 0``; the port is read from the server's start line);
every wait is bounded. The last test stops them with SIGTERM and checks they exit cleanly.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("openenv.core")

from conftest import subprocess_env  # noqa: E402
from openenv.core import GenericEnvClient  # noqa: E402

from oat_env.data.arithmetic import evaluate_expression  # noqa: E402
from oat_env.integrations.openenv import (  # noqa: E402
    DuelAction,
    OatEnvClient,
    TextAction,
    check_host,
    is_loopback,
    jsonable,
    main,
)

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0
ARITH_KWARGS = {"max_response_length": 64}
SERVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "arith": ("oat/Arithmetic-v0", ARITH_KWARGS),
    "duel": ("oat/Arithmetic-Duel-v0", {}),
    "multi": ("oat/MathMultiTurn-v0", {"max_turns": 3}),
}


class Server:
    """One ``python -m oat_env.integrations.openenv`` process (the ``oat-serve-env`` CLI)."""

    def __init__(self, tmp: Path, name: str, env_id: str, env_kwargs: dict[str, Any]) -> None:
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.out_path, self.err_path = tmp / f"{name}.out", tmp / f"{name}.err"
        cmd = [
            sys.executable, "-m", "oat_env.integrations.openenv", "--env-id", env_id, "--port", "0",
            "--env-kwargs", json.dumps(env_kwargs), "--max-sessions", "4",
        ]  # fmt: skip
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, stdout=out, stderr=err, env=subprocess_env(OMP_NUM_THREADS="1")
            )
        self.url = ""

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.env_id} server exited {self.proc.returncode}: {self.stderr()}")
            if not self.url:
                m = re.search(r"serving \S+ on (http://127\.0\.0\.1:\d+)", self.out_path.read_text())
                self.url = m.group(1) if m else ""
            if self.url:
                try:
                    if http_json("GET", self.url + "/health")[1] == {"status": "healthy"}:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.env_id} server not ready in {START_TIMEOUT_S}s: {self.stderr()}")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    tmp = tmp_path_factory.mktemp("openenv")
    started: dict[str, Server] = {}
    try:
        for name, (env_id, kwargs) in SERVERS.items():
            started[name] = Server(tmp, name, env_id, kwargs)
        deadline = time.monotonic() + START_TIMEOUT_S
        for server in started.values():
            server.wait_ready(deadline)
        yield started
    finally:
        for server in started.values():
            server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)


def generic(server: Server) -> Any:
    """openenv-core's GenericEnvClient (raw dicts), synchronous wrapper, bounded timeouts."""
    return GenericEnvClient(base_url=server.url, connect_timeout_s=10, message_timeout_s=30).sync()


def typed(server: Server) -> OatEnvClient:
    return OatEnvClient(base_url=server.url, connect_timeout_s=10, message_timeout_s=30)


def answer(prompt: str) -> str:
    """The exact answer of an arithmetic prompt ("What is 67+34? ..."), by the library's evaluator."""
    expression = re.match(r"What is ([0-9+\-* ]+)\?", prompt)
    assert expression, prompt
    tokens = re.findall(r"\d+|[-+*]", expression.group(1))
    return str(evaluate_expression([int(t) for t in tokens[::2]], tokens[1::2]))


def local_reset(env_id: str, kwargs: dict[str, Any], seed: int) -> tuple[gym.Env, Any, dict]:
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    return env, obs, info


# ----------------------------------------------------------------------------- single turn
def test_arithmetic_reset_step_right_and_wrong(servers: dict[str, Server]) -> None:
    server = servers["arith"]
    local, local_obs, local_info = local_reset(server.env_id, ARITH_KWARGS, seed=0)
    right = answer(local_obs)
    assert local.step(right)[1] == 1.0  # the local env agrees the answer is right

    with generic(server) as client:
        result = client.reset(seed=0)
        assert result.observation["prompt"] == local_obs
        assert result.observation["info"] == jsonable(local_info)
        assert result.reward is None and result.done is False
        assert client.state()["step_count"] == 0

        result = client.step(TextAction(response=right))
        assert result.reward == 1.0 and result.done is True
        obs = result.observation
        assert obs["terminated"] is True and obs["truncated"] is False
        assert obs["info"]["correct"] is True and obs["info"]["extracted_answer"] == right
        state = client.state()
        assert state["step_count"] == 1 and state["done"] is True and state["env_id"] == server.env_id

        client.reset(seed=0)
        result = client.step({"response": str(int(right) + 1)})
        assert result.reward == 0.0 and result.done is True
        assert result.observation["info"]["correct"] is False

    async def typed_episode() -> Any:
        async with typed(server) as client:
            await client.reset(seed=0)
            return await client.step(TextAction(response=right))

    result = asyncio.run(typed_episode())
    assert result.reward == 1.0 and result.done is True
    assert result.observation.metadata["terminated"] is True
    assert result.observation.metadata["truncated"] is False
    assert result.observation.metadata["info"]["correct"] is True


def test_duel_pair_action(servers: dict[str, Server]) -> None:
    server = servers["duel"]
    local, local_obs, _ = local_reset(server.env_id, {}, seed=3)
    pair = (answer(local_obs), "I do not know")
    _, local_reward, _, _, local_info = local.step(pair)
    with typed(server).sync() as client:
        result = client.reset(seed=3)
        assert result.observation.prompt == local_obs
        result = client.step(DuelAction(response_a=pair[0], response_b=pair[1]))
        assert result.done is True and result.reward == local_reward == 1.0
        assert result.observation.metadata == {"terminated": True, "truncated": False, "info": jsonable(local_info)}
        info = result.observation.info
        assert info["utility_a"] > info["utility_b"] and 0.5 < info["prob_a_wins"] <= 1.0
        assert isinstance(info["label"], bool)


def test_multiturn_several_turns_until_done(servers: dict[str, Server]) -> None:
    server = servers["multi"]
    local, local_obs, _ = local_reset(server.env_id, {"max_turns": 3}, seed=0)
    with generic(server) as client:
        result = client.reset(seed=0)
        assert result.observation["prompt"] == local_obs and result.observation["info"]["turn"] == 0
        prompts = [result.observation["prompt"]]
        for turn in (1, 2, 3):
            result = client.step({"response": "The answer is 123456."})
            local_result = local.step("The answer is 123456.")
            obs = result.observation
            assert obs["prompt"] == local_result[0] and obs["info"] == jsonable(local_result[4])
            assert obs["info"]["turn"] == turn and result.reward == 0.0
            assert result.done is (turn == 3) and obs["terminated"] is (turn == 3) and obs["truncated"] is False
            prompts.append(obs["prompt"])
        assert prompts[1].startswith(prompts[0]) and "incorrect" in prompts[1]
        assert client.state()["step_count"] == 3

        result = client.reset(seed=5)
        result = client.step({"response": answer(result.observation["prompt"])})
        assert result.done is True and result.reward == 1.0 and result.observation["info"]["turn"] == 1


# ----------------------------------------------------------------------------- sessions
def test_concurrent_sessions_get_independent_envs(servers: dict[str, Server]) -> None:
    server = servers["arith"]

    async def run() -> None:
        async with typed(server) as a, typed(server) as b:
            ra, rb = await asyncio.gather(a.reset(seed=0), b.reset(seed=1))
            assert ra.observation.prompt != rb.observation.prompt
            sa, sb = await asyncio.gather(a.state(), b.state())
            assert sa.episode_id != sb.episode_id
            # a finishes its episode; b's env is untouched by it.
            done_a = await a.step(TextAction(response=answer(ra.observation.prompt)))
            assert done_a.done and done_a.reward == 1.0
            sb = await b.state()
            assert sb.step_count == 0 and sb.done is False
            steps = await asyncio.gather(
                a.step(TextAction(response="0")),  # a's episode is over: an error for a only
                b.step(TextAction(response=answer(rb.observation.prompt))),
                return_exceptions=True,
            )
            assert isinstance(steps[0], RuntimeError) and "episode is over" in str(steps[0])
            assert not isinstance(steps[1], BaseException) and steps[1].reward == 1.0
            # each session's seeded stream is its own: reseeding a gives its first prompt again
            assert (await a.reset(seed=0)).observation.prompt == ra.observation.prompt

    asyncio.run(asyncio.wait_for(run(), timeout=60))


def test_bad_actions_get_clear_errors_and_the_server_keeps_serving(servers: dict[str, Server]) -> None:
    from websockets.sync.client import connect

    server = servers["arith"]
    with generic(server) as client:
        with pytest.raises(RuntimeError, match="send a reset first"):
            client.step({"response": "1"})
        prompt = client.reset(seed=0).observation["prompt"]
        bad: list[tuple[dict[str, Any], str]] = [
            ({"response": 5}, "VALIDATION_ERROR"),  # wrong type
            ({"answer": "1"}, "VALIDATION_ERROR"),  # wrong field
            ({"response_a": "1", "response_b": "2"}, "VALIDATION_ERROR"),  # a duel action on a text env
            ({"response": "x" * 65}, r"response has 65 characters, more than max_length=64.*EXECUTION_ERROR"),
        ]
        for action, message in bad:
            with pytest.raises(RuntimeError, match=message):
                client.step(action)
        result = client.step({"response": answer(prompt)})  # the same session still works
        assert result.reward == 1.0 and result.done is True

    # OpenEnv's raw WebSocket messages carry the details the clients summarise.
    with connect(server.url.replace("http", "ws") + "/ws", open_timeout=10) as ws:
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10))["data"]["code"] == "INVALID_JSON"
        ws.send(json.dumps({"type": "reset", "data": {"seed": 0, "bogus": 1}}))
        error = json.loads(ws.recv(timeout=10))["data"]
        assert error["code"] == "EXECUTION_ERROR" and "unknown reset parameter(s) ['bogus']" in error["message"]
        ws.send(json.dumps({"type": "reset", "data": {"seed": 0}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "observation"
        ws.send(json.dumps({"type": "step", "data": {"response": 5}}))
        error = json.loads(ws.recv(timeout=10))["data"]
        assert error["code"] == "VALIDATION_ERROR" and error["errors"][0]["loc"] == ["response"]
        ws.send(json.dumps({"type": "close"}))

    with generic(server) as client:  # a new session after all that
        assert client.reset(seed=0).observation["prompt"] == prompt


def test_http_endpoints(servers: dict[str, Server]) -> None:
    arith, duel = servers["arith"], servers["duel"]
    status, schema = http_json("GET", arith.url + "/schema")
    assert status == 200 and schema["action"]["required"] == ["response"]
    assert {"prompt", "terminated", "truncated", "info"} <= set(schema["observation"]["properties"])
    assert http_json("GET", duel.url + "/schema")[1]["action"]["required"] == ["response_a", "response_b"]
    status, meta = http_json("GET", arith.url + "/metadata")
    assert status == 200 and meta["name"] == "oat/Arithmetic-v0" and "at most 64 characters" in meta["description"]

    status, body = http_json("POST", arith.url + "/reset", {"seed": 0})
    assert status == 200 and body["observation"]["prompt"].startswith("What is") and body["done"] is False
    status, body = http_json("POST", arith.url + "/step", {"action": {"response": "1"}})
    assert status == 409 and "/ws" in body["detail"]  # OpenEnv's HTTP step is stateless
    status, body = http_json("POST", arith.url + "/step", {"action": {"response": 1}})
    assert status == 422


def test_in_process_app_conversations_and_session_capacity() -> None:
    from fastapi.testclient import TestClient

    from oat_env.integrations.openenv import make_app

    app = make_app("oat/MathMultiTurn-v0", {"observation_format": "messages", "max_turns": 2}, max_sessions=1)
    with TestClient(app) as http, http.websocket_connect("/ws") as ws:
        ws.send_json({"type": "reset", "data": {"seed": 0}})
        prompt = ws.receive_json()["data"]["observation"]["prompt"]
        assert isinstance(prompt, list) and prompt[0]["role"] == "user"
        ws.send_json({"type": "step", "data": {"response": "The answer is 123456."}})
        data = ws.receive_json()["data"]
        assert [m["role"] for m in data["observation"]["prompt"]] == ["user", "assistant", "user"]
        assert data["done"] is False and data["observation"]["info"]["turn"] == 1
        with http.websocket_connect("/ws") as second:  # one session at most
            second.send_json({"type": "reset", "data": {}})
            assert second.receive_json()["data"]["code"] == "CAPACITY_REACHED"
        ws.send_json({"type": "state"})
        assert ws.receive_json()["data"]["step_count"] == 1  # the first session is unaffected


# ----------------------------------------------------------------------------- CLI and helpers
def test_cli_refuses_remote_hosts_and_bad_arguments() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        assert not is_loopback(host), host
    with pytest.raises(SystemExit, match="--allow-remote"):
        main(["--env-id", "oat/Arithmetic-v0", "--host", "0.0.0.0"])
    with pytest.warns(UserWarning, match="without authentication"):
        check_host("0.0.0.0", allow_remote=True)
    with pytest.raises(SystemExit, match="not valid JSON"):
        main(["--env-id", "oat/Arithmetic-v0", "--env-kwargs", "{nope"])
    with pytest.raises(SystemExit, match="must be a JSON object"):
        main(["--env-id", "oat/Arithmetic-v0", "--env-kwargs", "[1]"])
    with pytest.raises(SystemExit, match="cannot serve 'oat/NoSuch-v0'"):
        main(["--env-id", "oat/NoSuch-v0"])
    with pytest.raises(SystemExit, match="cannot serve 'oat/Arithmetic-v0'"):
        main(["--env-id", "oat/Arithmetic-v0", "--env-kwargs", '{"no_such_option": 1}'])


def test_jsonable() -> None:
    value = {
        "a": np.float32(0.5), "b": np.bool_(True), "c": np.arange(3), "d": (1, "x"),
        "e": float("nan"), "f": np.array([np.inf, 1.0]), 3: None, "g": object,
    }  # fmt: skip
    out = jsonable(value)
    assert out == {
        "a": 0.5, "b": True, "c": [0, 1, 2], "d": [1, "x"], "e": None, "f": [None, 1.0], "3": None, "g": str(object)
    }
    assert type(out["b"]) is bool and type(out["c"][0]) is int
    json.dumps(out, allow_nan=False)


# ----------------------------------------------------------------------------- shutdown (keep last)
def test_servers_exit_cleanly_on_sigterm(servers: dict[str, Server]) -> None:
    with generic(servers["multi"]) as client:
        client.reset(seed=0)  # a session is open and mid-episode when the server stops
        codes = {name: server.stop(signal.SIGTERM) for name, server in servers.items()}
    assert codes == dict.fromkeys(servers, 0)
    for name, server in servers.items():
        log = server.stderr()
        assert "Traceback" not in log and "ERROR" not in log, (name, log)
