"""``oat-serve-env``: serve any ``oat/*`` env over OpenEnv's server protocol (``openenv-core``).

Usage::

    oat-serve-env --env-id oat/Arithmetic-v0 [--host 127.0.0.1] [--port 8000]
                  [--env-kwargs '{"max_response_length": 4096}'] [--max-sessions 8]
                  [--session-timeout SECONDS] [--allow-remote] [--log-level warning]

The server is OpenEnv's own (``openenv.core.env_server.create_fastapi_app`` around
:class:`OatOpenEnv`), so OpenEnv's clients (``openenv.core.GenericEnvClient``, any
``openenv.core.EnvClient`` subclass such as :class:`OatEnvClient`) drive it unchanged. One server
serves one env id; ``--env-kwargs`` is a JSON object passed to ``gym.make(env_id, **env_kwargs)``.
The env is built once at start-up to check the id and kwargs and to pick the action type.

This module is the server and its CLI. The wire types (:class:`TextAction`, :class:`DuelAction`,
:class:`OatObservation`, :class:`OatState`), the JSON-safe conversion :func:`jsonable` and the client
:class:`OatEnvClient` live in :mod:`oat_env.integrations.openenv_wire`; every public name there is
re-exported here.

Sessions (OpenEnv's session model)
    ``GET /ws`` (WebSocket) is the stateful API: every connection is one session with its OWN env
    instance (``gym.make`` on the session's first ``reset``), closed when the connection closes.
    At most ``--max-sessions`` sessions at once (more get the ``CAPACITY_REACHED`` error);
    ``--session-timeout`` closes sessions idle for that long. OpenEnv's HTTP ``POST /reset``,
    ``POST /step`` and ``GET /state`` are stateless (a fresh env per request): ``/reset`` returns a
    first observation, ``/step`` can never continue an episode and answers ``409``. Also served:
    ``GET /health``, ``GET /schema`` (JSON schemas of the action, observation, state),
    ``GET /metadata``.

WebSocket messages (client -> server, JSON text frames)
    * ``{"type": "reset", "data": {"seed": int >= 0 | null, "episode_id": str | null,
      "options": object | null}}`` -- every key optional, others refused; ``seed``/``options``
      go to ``env.reset``; ``episode_id`` defaults to a fresh uuid4 hex.
    * ``{"type": "step", "data": ACTION}`` -- one ``env.step``.
    * ``{"type": "state"}`` and ``{"type": "close"}``.

Actions (``data`` of a step; unknown keys are refused; ``metadata`` is an optional object, ignored)
    * verifiable and multi-turn envs (action space :class:`~oat_env.spaces.TextSpace`),
      :class:`TextAction`: ``{"response": str}``;
    * dueling envs (:class:`~oat_env.spaces.TextPairSpace`), :class:`DuelAction`:
      ``{"response_a": str, "response_b": str}``, the pair ``(a, b)`` the env compares.

    Each string must fit the env's action space (``max_response_length``, 100000 characters by
    default; see ``GET /metadata``).

Server -> client
    * reset/step: ``{"type": "observation", "data": {"observation": OBS, "reward": float | null,
      "done": bool}}`` with ``OBS`` = ``{"prompt": str | [{"role": str, "content": str}, ...],
      "terminated": bool, "truncated": bool, "info": object}``: ``prompt`` is the Gymnasium
      observation (the prompt, or the conversation so far for multi-turn envs; message tuples
      become lists), ``info`` the Gymnasium info made JSON-safe (numpy scalars and arrays to
      Python numbers and lists, tuples to lists, non-finite floats to ``null``, other objects to
      ``str``), ``reward`` the Gymnasium reward (``null`` after reset), ``done = terminated or
      truncated``. :class:`OatObservation` also sets OpenEnv's ``metadata`` to
      ``{"terminated", "truncated", "info"}``; openenv-core 0.3 drops ``Observation.metadata``
      from the wire (huggingface/OpenEnv#616), hence the same data as observation fields, which
      :class:`OatEnvClient` turns back into ``metadata``.
    * state: ``{"type": "state", "data": {"episode_id": str | null, "step_count": int,
      "env_id": str, "done": bool}}`` (``step_count``: steps in the current episode; ``done``:
      no episode is running, send a reset).
    * errors: ``{"type": "error", "data": {"message": str, "code": str, ...}}``. An action of the
      wrong shape or type fails OpenEnv's validation (``VALIDATION_ERROR``, pydantic's ``errors``
      in ``data``); an action that does not fit the env's space (too long), an unknown reset key,
      a step before reset or after ``done``, or an error raised by the env itself give
      ``EXECUTION_ERROR`` with the reason in ``message``. The session stays open and the server
      keeps serving. OpenEnv's clients raise ``RuntimeError("Server error: <message> (code: <code>)")``
      (for ``VALIDATION_ERROR`` the message is OpenEnv's ``"Invalid message"``; the field-level
      reasons are in ``data["errors"]``).
      Over HTTP: ``422`` for invalid requests (``{"detail": ...}``), ``409`` for ``/step``.

Security: binds ``127.0.0.1`` by default. There is no authentication, so a non-loopback
``--host`` is refused unless ``--allow-remote`` is given (then a warning is printed).
``SIGINT``/``SIGTERM``: graceful shutdown (open sessions are closed, their envs too), exit status 0.
On start the server prints one line ``oat-serve-env: serving ENV_ID on http://HOST:PORT`` to
stdout (with the bound port when ``--port 0`` asks for a free one).
"""

from __future__ import annotations

import argparse
import copy
import functools
import ipaddress
import json
import signal
import socket
import sys
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

try:
    from openenv.core.env_server import Action, ConcurrencyConfig, Environment, create_fastapi_app
    from openenv.core.env_server.types import EnvironmentMetadata
except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError(
        "oat_env.integrations.openenv (oat-serve-env) needs openenv-core: pip install 'openenv-core>=0.3,<0.4'"
    ) from err

import oat_env  # registers the oat/* ids
from oat_env.integrations.openenv_wire import (
    ACTION_TYPES,
    ActionKind,
    DuelAction,
    OatEnvClient,
    OatObservation,
    OatState,
    TextAction,
    action_kind,
    jsonable,
)
from oat_env.spaces import TextPairSpace, TextSpace

__all__ = [
    "ACTION_TYPES",
    "LOOPBACK_NAMES",
    "ActionKind",
    "DuelAction",
    "EpisodeStateError",
    "OatEnvClient",
    "OatObservation",
    "OatOpenEnv",
    "OatState",
    "RequestError",
    "ServedEnv",
    "TextAction",
    "action_kind",
    "build_parser",
    "check_host",
    "is_loopback",
    "jsonable",
    "main",
    "make_app",
    "parse_env_kwargs",
    "probe_env",
]

LOOPBACK_NAMES = ("localhost",)


# ----------------------------------------------------------------------------- errors
class RequestError(ValueError):
    """A request the env cannot take: an action outside the env's space, an unknown reset key."""


class EpisodeStateError(RuntimeError):
    """A step with no running episode (before the first reset, or after ``done``)."""


# ----------------------------------------------------------------------------- helpers
def _check_text(space: gym.Space, value: str, what: str) -> str:
    try:
        if isinstance(space, TextSpace):
            return space.check(value, what)
    except (TypeError, ValueError) as err:
        raise RequestError(f"invalid action: {err}") from err
    if not space.contains(value):
        raise RequestError(f"invalid action: {what} is not in the env's action space {space}")
    return value


@dataclass
class ServedEnv:
    """What every session of one server builds: ``gym.make(env_id, **env_kwargs)``."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: ActionKind = "text"
    max_response_length: int | None = None

    def make(self) -> gym.Env:
        return gym.make(self.env_id, **copy.deepcopy(self.env_kwargs))


def probe_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> ServedEnv:
    """Build the env once (checks the id and kwargs), read its action type, close it."""
    spec = ServedEnv(env_id, dict(env_kwargs or {}))
    env = spec.make()
    try:
        spec.kind = action_kind(env.action_space)
        space = env.action_space
        spec.max_response_length = getattr(space, "max_length", None)
    finally:
        env.close()
    return spec


# ----------------------------------------------------------------------------- environment
class OatOpenEnv(Environment[Action, OatObservation, OatState]):
    """One OpenEnv session: an oat env (built on the first reset) behind OpenEnv's interface."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session has its own gym env; nothing is shared

    def __init__(self, served: ServedEnv):
        super().__init__()
        self.served = served
        self.action_cls = ACTION_TYPES[served.kind]
        self._env: gym.Env | None = None
        self._state = OatState(env_id=served.env_id)

    @property
    def env(self) -> gym.Env:
        """The session's gym env (built on first use)."""
        if self._env is None:
            self._env = self.served.make()
        return self._env

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> OatObservation:
        options = kwargs.pop("options", None)
        if kwargs:
            raise RequestError(f"unknown reset parameter(s) {sorted(kwargs)}: expected seed, episode_id, options")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise RequestError(f"seed must be a non-negative int or null, got {seed!r}")
        if options is not None and not isinstance(options, dict):
            raise RequestError(f"options must be an object or null, got {type(options).__name__}")
        if episode_id is not None and not isinstance(episode_id, str):
            raise RequestError(f"episode_id must be a string or null, got {type(episode_id).__name__}")
        obs, info = self.env.reset(seed=seed, options=options)
        self._state = OatState(
            env_id=self.served.env_id, episode_id=episode_id or uuid.uuid4().hex, step_count=0, done=False
        )
        return self._observation(obs, None, False, False, info)

    def step(self, action: Action, timeout_s: float | None = None, **kwargs: Any) -> OatObservation:
        if not isinstance(action, self.action_cls):
            raise RequestError(
                f"invalid action: {self.served.env_id} takes a {self.action_cls.__name__}, got {type(action).__name__}"
            )
        if self._state.done:
            if self._state.episode_id is None:
                raise EpisodeStateError(
                    "no episode is running: send a reset first (OpenEnv's HTTP /step builds a fresh env per "
                    "request and cannot continue an episode: use the WebSocket session at /ws, e.g. EnvClient)"
                )
            raise EpisodeStateError("the episode is over (done=True): send a reset before the next step")
        gym_action = self._gym_action(action)
        obs, reward, terminated, truncated, info = self.env.step(gym_action)
        self._state.step_count += 1
        self._state.done = bool(terminated or truncated)
        return self._observation(obs, float(reward), bool(terminated), bool(truncated), info)

    @property
    def state(self) -> OatState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        action = "{'response': str}" if self.served.kind == "text" else "{'response_a': str, 'response_b': str}"
        return EnvironmentMetadata(
            name=self.served.env_id,
            description=(
                f"oat env {self.served.env_id} served by oat-serve-env; action {action}, each string at most "
                f"{self.served.max_response_length} characters; env kwargs {json.dumps(self.served.env_kwargs)}"
            ),
            version=oat_env.__version__,
        )

    def close(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            env.close()

    # -- helpers -----------------------------------------------------------------------------
    def _gym_action(self, action: Action) -> str | tuple[str, str]:
        """The gym action for ``action``, each string checked against the env's action space."""
        space = self.env.action_space
        if isinstance(action, DuelAction):
            spaces = space.spaces if isinstance(space, TextPairSpace) else (space, space)
            return (
                _check_text(spaces[0], action.response_a, "response_a"),
                _check_text(spaces[1], action.response_b, "response_b"),
            )
        assert isinstance(action, TextAction)
        return _check_text(space, action.response, "response")

    @staticmethod
    def _observation(
        obs: Any, reward: float | None, terminated: bool, truncated: bool, info: Mapping[str, Any]
    ) -> OatObservation:
        safe_info = jsonable(dict(info))
        return OatObservation(
            prompt=jsonable(obs),
            terminated=terminated,
            truncated=truncated,
            info=safe_info,
            done=terminated or truncated,
            reward=reward,
            metadata={"terminated": terminated, "truncated": truncated, "info": safe_info},
        )


# ----------------------------------------------------------------------------- server
class _QuietWebSocketDisconnect:
    """ASGI middleware: a WebSocket session whose client already hung up ends quietly.

    openenv-core 0.3 closes the socket after the client's ``close`` message; when the client has
    already disconnected, starlette raises ``WebSocketDisconnect`` from that ``close()``, which
    would be logged as an application error on every session end.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.websockets import WebSocketDisconnect

        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            if scope.get("type") != "websocket":
                raise


def make_app(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    max_sessions: int = 8,
    session_timeout: float | None = None,
) -> Any:
    """The FastAPI app serving ``env_id`` with OpenEnv's routes (see the module docstring)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    served = probe_env(env_id, env_kwargs)
    app = create_fastapi_app(
        functools.partial(OatOpenEnv, served),
        ACTION_TYPES[served.kind],
        OatObservation,
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=max_sessions, session_timeout=session_timeout),
    )

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    async def episode_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(EpisodeStateError, episode_error)
    app.add_middleware(_QuietWebSocketDisconnect)
    app.state.served_env = served
    return app


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost`` and loopback IP literals (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` (``SystemExit``) unless ``allow_remote``; then warn."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise SystemExit(
            f"--host {host} is not a loopback address: the env server has no authentication. "
            "Pass --allow-remote to serve it anyway."
        )
    warnings.warn(
        f"oat-serve-env is serving on non-loopback address {host} without authentication: anyone who can "
        "reach it can create sessions and run the env",
        stacklevel=2,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oat-serve-env", description="Serve an oat env id over OpenEnv's server protocol (openenv-core)."
    )
    p.add_argument("--env-id", required=True, help="a registered env id, e.g. oat/Arithmetic-v0")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of gym.make keyword arguments")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: a free one, printed on start)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (no authentication!)")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent WebSocket sessions (one env each)")
    p.add_argument("--session-timeout", type=float, default=None, help="close sessions idle this many seconds")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def parse_env_kwargs(text: str) -> dict[str, Any]:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--env-kwargs is not valid JSON: {err}") from err
    if not isinstance(kwargs, dict):
        raise SystemExit(f"--env-kwargs must be a JSON object, got {type(kwargs).__name__}")
    return kwargs


def _bind(host: str, port: int) -> socket.socket:
    """A bound *and listening* socket: connections made after the "serving" line is printed wait in the backlog
    until uvicorn accepts them (a bound socket that does not listen yet refuses them)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``oat-serve-env`` console script."""
    import uvicorn

    args = build_parser().parse_args(argv)
    check_host(args.host, args.allow_remote)
    if args.max_sessions < 1:
        raise SystemExit("--max-sessions must be >= 1")
    if args.session_timeout is not None and args.session_timeout <= 0:
        raise SystemExit("--session-timeout must be > 0")
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    try:
        app = make_app(
            args.env_id, env_kwargs, max_sessions=args.max_sessions, session_timeout=args.session_timeout
        )
    except Exception as err:  # an unknown id, bad kwargs, an unservable action space
        raise SystemExit(f"cannot serve {args.env_id!r}: {type(err).__name__}: {err}") from err
    try:
        sock = _bind(args.host, args.port)
    except OSError as err:
        raise SystemExit(f"cannot bind {args.host}:{args.port}: {err}") from err
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"oat-serve-env: serving {args.env_id} on http://{url_host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5)
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown: end with status 0 then.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":  # pragma: no cover - ``python -m oat_env.integrations.openenv``
    main(sys.argv[1:])
