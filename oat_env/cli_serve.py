"""``oat-serve-oracle``: serve an oracle over HTTP (Mosec, msgpack, dynamic batching).

Examples::

    oat-serve-oracle --oracle reward_model --model Skywork/Skywork-Reward-V2-Qwen3-0.6B --workers 2
    oat-serve-oracle --oracle embedding --port 8001
    oat-serve-oracle --oracle judge --model gpt-4o-mini          # key from $OAT_JUDGE_API_KEY
    oat-serve-oracle --oracle mypkg.oracles:make --oracle-kwargs '{"seed": 0}'

Binds 127.0.0.1 unless ``--host`` says otherwise. Endpoints: ``POST /reward``, ``POST /compare``,
``GET /`` (health), ``GET /metrics``.

The supervisor (this process) listens on ``--host:--port`` itself with a thin byte-relaying front
(:mod:`oat_env.oracles.remote.front`: it turns an empty POST body, which Mosec would answer
``200 "no data provided"``, into a 400, and answers 503 while Mosec restarts) and runs the Mosec
server on an internal 127.0.0.1 port. The Mosec server runs as a child process: when it exits for any
reason other than SIGINT/SIGTERM to the supervisor (e.g. every worker of one stage was killed,
which Mosec answers by stopping, with exit code 0), its process group is reaped, the named
semaphores it leaves in ``/dev/shm`` are unlinked, and it is started again; clients retry through
the gap. After more than ``--max-restarts`` restarts within ``--restart-window`` seconds the
supervisor gives up and exits with status 1. ``--no-supervise`` runs Mosec in the foreground on
``--host:--port`` (no front: an empty body gets Mosec's own 200 there).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

CHILD_ENV = "OAT_SERVE_CHILD"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oat-serve-oracle", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--oracle",
        required=True,
        help="reward_model | embedding | judge | package.module:factory (custom oracle)",
    )
    p.add_argument(
        "--model", default=None, help="model id or local path (reward_model/embedding), judge model name"
    )
    p.add_argument("--oracle-kwargs", default="{}", help="JSON object of extra constructor/factory kwargs")
    p.add_argument("--temperature", type=float, default=1.0, help="Bradley-Terry T for reward-only oracles")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="oracle worker processes")
    p.add_argument("--max-batch-size", type=int, default=32, help="max requests merged into one oracle call")
    p.add_argument(
        "--max-wait-ms",
        type=int,
        default=0,
        help="ms a batch waits for more requests; 0 (default): batch only what is already queued",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one batched oracle call may take")
    p.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024, help="larger bodies get 413")
    p.add_argument("--max-items", type=int, default=4096, help="items per request, more gets 422")
    p.add_argument(
        "--max-item-bytes", type=int, default=256 * 1024, help="UTF-8 bytes per string, more gets 422"
    )
    p.add_argument("--ingress-workers", type=int, default=2, help="parsing processes per route")
    p.add_argument("--max-restarts", type=int, default=5, help="server restarts allowed per window")
    p.add_argument("--restart-window", type=float, default=60.0, help="seconds (see --max-restarts)")
    p.add_argument("--no-supervise", action="store_true", help="run Mosec in the foreground, no restarts")
    p.add_argument("--capacity", type=int, default=1024, help="queued requests before 429")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def parse_spec(args: argparse.Namespace) -> dict:
    """The oracle spec handed to worker processes; validates ``--oracle-kwargs``."""
    try:
        kwargs = json.loads(args.oracle_kwargs)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--oracle-kwargs is not valid JSON: {err}") from err
    if not isinstance(kwargs, dict):
        raise SystemExit("--oracle-kwargs must be a JSON object")
    if args.max_items < 1 or args.max_item_bytes < 1:
        raise SystemExit("--max-items and --max-item-bytes must be >= 1")
    return {
        "oracle": args.oracle,
        "model": args.model,
        "kwargs": kwargs,
        "temperature": args.temperature,
        "max_items": args.max_items,
        **({"max_item_bytes": args.max_item_bytes} if args.max_item_bytes != 256 * 1024 else {}),
    }


def _unlink_semaphores(path: str) -> int:
    """Unlink the named semaphores a (dead) server listed in ``path``; returns how many existed."""
    import _multiprocessing

    try:
        names = [n for n in open(path).read().split() if n]  # noqa: SIM115
    except OSError:
        return 0
    gone = 0
    for name in names:
        try:
            _multiprocessing.sem_unlink(name)
            gone += 1
        except OSError:  # already unlinked (clean shutdown: the resource tracker did it)
            pass
    return gone


def _die_with_parent() -> None:
    """preexec_fn: the server gets SIGTERM when the supervisor dies (Linux; no-op elsewhere), so a
    SIGKILLed supervisor never leaves an orphaned server in its own session."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _reap_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group, wait ``grace`` s, then SIGKILL whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _loopback_port() -> int:
    """A free 127.0.0.1 port for the Mosec server behind the front (kept across restarts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def supervise(
    argv: Sequence[str], max_restarts: int, window_s: float, host: str = "127.0.0.1", port: int = 8000,
    max_request_bytes: int | None = None,
) -> int:
    """Serve ``host:port`` with the front and run ``oat-serve-oracle --no-supervise argv`` behind it
    on a loopback port, restarting it whenever it exits.

    Returns 0 after SIGINT/SIGTERM, 1 when the server died more than ``max_restarts`` times within
    ``window_s`` seconds.
    """
    from oat_env.oracles.remote.front import Front

    inner = _loopback_port()
    try:
        front = Front(host, port, ("127.0.0.1", inner), max_body_bytes=max_request_bytes)
    except OSError as err:
        raise SystemExit(f"oat-serve-oracle: cannot listen on {host}:{port}: {err}") from err
    try:
        return _supervise_child([*argv, "--host", "127.0.0.1", "--port", str(inner)], max_restarts, window_s)
    finally:
        front.close()


def _supervise_child(argv: Sequence[str], max_restarts: int, window_s: float) -> int:
    stop = {"sig": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["sig"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deaths: list[float] = []
    fd, sem_file = tempfile.mkstemp(prefix="oat-serve-sems-")
    os.close(fd)
    cmd = [sys.executable, "-m", "oat_env.cli_serve", *argv, "--no-supervise"]
    env = dict(os.environ, **{CHILD_ENV: "1", "OAT_SERVE_SEM_FILE": sem_file})
    try:
        while True:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)
            while proc.poll() is None and stop["sig"] is None:
                time.sleep(0.05)
            _reap_group(proc, grace=2.0 if stop["sig"] is not None else 0.5)
            _unlink_semaphores(sem_file)
            if stop["sig"] is not None:
                return 0
            now = time.monotonic()
            deaths = [t for t in deaths if now - t <= window_s] + [now]
            print(
                f"oat-serve-oracle: server exited with {proc.returncode} after "
                f"{now - started:.1f}s ({len(deaths)} restart(s) in {window_s:g}s)",
                file=sys.stderr,
                flush=True,
            )
            if len(deaths) > max_restarts:
                print("oat-serve-oracle: server keeps dying, giving up", file=sys.stderr, flush=True)
                return 1
    finally:
        os.unlink(sem_file)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``oat-serve-oracle`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    spec = parse_spec(args)
    from oat_env.oracles.remote.server import BUILTIN_ORACLES, serve

    if args.oracle not in BUILTIN_ORACLES and ":" not in args.oracle:
        raise SystemExit(
            f"--oracle must be one of {BUILTIN_ORACLES} or 'module:factory', got {args.oracle!r}"
        )
    if not args.no_supervise:
        if args.max_restarts < 0 or not args.restart_window > 0:
            raise SystemExit("--max-restarts must be >= 0 and --restart-window > 0")
        raise SystemExit(
            supervise(argv, args.max_restarts, args.restart_window, host=args.host, port=args.port,
                      max_request_bytes=args.max_request_bytes)
        )
    serve(
        spec,
        host=args.host,
        port=args.port,
        num_workers=args.workers,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        timeout_s=args.timeout,
        max_request_bytes=args.max_request_bytes,
        capacity=args.capacity,
        log_level=args.log_level,
        ingress_workers=args.ingress_workers,
    )


if __name__ == "__main__":
    main()
