"""Mosec service exposing any oracle over HTTP with server-side dynamic batching.

Routes (msgpack bodies, see :mod:`.codec`)::

    POST /reward    -> RewardIngress  -> OracleWorker      (scores)
    POST /compare   -> CompareIngress -> OracleWorker      (prob_a_wins)
    GET  /          -> 200 (Mosec's built-in health check); GET /metrics (Prometheus)

Two stages per route:

1. **Ingress** (``max_batch_size=1``): parses and validates ONE request body, so a malformed body
   gets its own 400/422 and never poisons a batch it would otherwise have shared.
2. **OracleWorker** (shared by both routes; ``num_workers`` processes, dynamic batching of up to
   ``max_batch_size`` requests): a Mosec batch is a list of requests; the items
   of all requests of one op are concatenated into ONE oracle call and split back per request.
   If that call raises ``ValueError``/``TypeError`` (bad input for this oracle) and the batch has
   several requests, each request is retried alone so only the offending one is rejected (as an
   ``{"error", "status": 422}`` body, since Mosec answers a whole batch with one status code).

**Batching only what is queued** (``max_wait_ms=0``, the default). Mosec's batcher (Rust,
``protocol.rs:get_batch``) takes the first queued request, then keeps adding requests until the
batch is full or ``max_wait_time`` has passed since that first one; with a wait of 0 the inner
collector is polled once (tokio's ``timeout`` polls the future before its deadline), so a batch
holds exactly the requests already queued when a worker becomes free. A lone request is served at
once (after tokio's next 1 ms timer tick: tokio rounds every deadline up to the end of a millisecond,
so even a zero wait costs up to ~1 ms, measured as +0.9-1.2 ms p50 against batch-1 serving), and
under load requests pile up while the worker is busy and form the next batch. A
positive ``max_wait_ms`` makes every batch wait that long for company (Mosec's own behaviour).
Mosec's Python side maps ``max_wait_time=0`` to its deprecated ``--wait`` option (default
10 ms), so :func:`serve` passes ``--wait`` explicitly.
The oracle is built inside each worker process from a JSON spec in ``$OAT_ORACLE_SPEC`` (see
:func:`build_oracle`). Mosec reads its own options from ``sys.argv``; :func:`serve` sets them.

**Limits.** A body over ``max_request_bytes`` gets 413 (Mosec, before any worker sees it); more
than ``max_items`` items, or one string over ``max_item_bytes`` UTF-8 bytes, gets 422; a
non-msgpack body gets 400, and so does an empty one behind ``oat-serve-oracle``'s front
(:mod:`.front` forwards it as :data:`.codec.EMPTY_BODY_MARKER`; Mosec alone answers an empty body
``200 "no data provided"`` in Rust, with no option to change that). Error bodies carry only the message (no paths or frame reprs: Mosec's
own timeout message, which embeds the Python frame, is replaced by :func:`_clean_timeout`).

**Failures.** Each ingress stage runs ``ingress_workers`` (default 2) processes, so Mosec
respawns a killed one while the other keeps serving; when every worker of a stage is gone Mosec
stops the whole server, and ``oat-serve-oracle``'s supervisor (:mod:`oat_env.cli_serve`) starts it
again. If ``$OAT_SERVE_SEM_FILE`` is set, the names of Mosec's named POSIX semaphores are written
there so the supervisor can unlink them after a crash (a SIGKILLed server leaves 10 behind in
``/dev/shm``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import mosec.coordinator
from mosec import DecodingError, Server, ValidationError, Worker

from oat_env.oracles.base import BradleyTerryPreference, OracleResult
from oat_env.oracles.remote import codec

SPEC_ENV = "OAT_ORACLE_SPEC"
SEM_FILE_ENV = "OAT_SERVE_SEM_FILE"
DEFAULT_MAX_ITEMS = 4096
DEFAULT_MAX_ITEM_BYTES = 256 * 1024
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
BUILTIN_ORACLES = ("reward_model", "embedding", "judge")


@contextlib.contextmanager
def _clean_timeout(duration: float) -> Iterator[None]:
    """Mosec's ``set_mosec_timeout`` without the Python frame repr (file path) in the 408 body."""

    def handler(signum: int, frame: Any) -> None:
        raise mosec.coordinator.MosecTimeoutError(f"forward timeout after {duration:g}s")

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, duration)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# Applied in every process importing this module, i.e. also in Mosec's spawned workers (they
# import it to unpickle the worker classes before their coordinator runs).
mosec.coordinator.set_mosec_timeout = _clean_timeout


def _semaphore_names(server: Server) -> list[str]:
    """Names of the named POSIX semaphores behind Mosec's two spawn-context Events."""
    names = []
    for event in (getattr(server, "_shutdown", None), getattr(server, "_shutdown_notify", None)):
        cond = getattr(event, "_cond", None)
        parts = [getattr(event, "_flag", None), getattr(cond, "_lock", None)]
        parts += [getattr(cond, a, None) for a in ("_sleeping_count", "_woken_count", "_wait_semaphore")]
        for part in parts:
            name = getattr(getattr(part, "_semlock", None), "name", None)
            if name:
                names.append(name)
    return names


class _FailFastServer(Server):
    """Mosec ``Server`` that, when a whole stage (or its Rust front end) dies, kills the front end
    at once and remembers the crash, instead of a graceful halt that waits up to ``--timeout`` for
    requests the dead stage will never answer and then exits 0. In-flight clients see a dropped
    connection and retry; :func:`serve` exits with status 3 so the supervisor restarts it."""

    crashed = False

    def _terminate(self, signum: int, framestack: Any) -> None:
        if isinstance(framestack, str):  # Mosec's own call (a failed stage/daemon), not a signal
            self.crashed = True
            proc = getattr(self._rs_runtime_manager, "process", None)
            if proc is not None and proc.poll() is None:
                proc.kill()
        super()._terminate(signum, framestack)


def build_oracle(spec: dict[str, Any]) -> Any:
    """Construct an oracle from ``{"oracle": kind, "model": str|None, "kwargs": {...}, "temperature": T}``.

    ``kind`` is ``reward_model`` | ``embedding`` | ``judge`` or ``package.module:factory`` (called as
    ``factory(**kwargs)``, plus ``model=`` when a model is given). A reward-only oracle also gets
    a Bradley--Terry ``compare`` with temperature ``T``.
    """
    kind = spec.get("oracle")
    model = spec.get("model")
    kwargs = dict(spec.get("kwargs") or {})
    if kind == "reward_model":
        from oat_env.oracles.reward_model import DEFAULT_REWARD_MODEL, RewardModelOracle

        oracle: Any = RewardModelOracle(model_name_or_path=model or DEFAULT_REWARD_MODEL, **kwargs)
    elif kind == "embedding":
        from oat_env.oracles.embedding import EmbeddingSimilarityOracle

        oracle = EmbeddingSimilarityOracle(model_name_or_path=model, **kwargs)
    elif kind == "judge":
        from oat_env.oracles.judge import JudgeOracle

        oracle = JudgeOracle(model=model, **kwargs)
    elif isinstance(kind, str) and ":" in kind:
        module_name, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import oracle factory {kind!r}: {err}") from err
        oracle = factory(**({"model": model} if model else {}), **kwargs)
    else:
        raise ValueError(f"unknown oracle {kind!r}; expected one of {BUILTIN_ORACLES} or 'module:factory'")
    if not (hasattr(oracle, "reward") or hasattr(oracle, "compare")):
        raise TypeError(f"oracle {kind!r} has neither reward() nor compare()")
    return oracle


class _Ingress(Worker):
    """Validate one msgpack request body (stage 1; never batched)."""

    op = "reward"

    def __init__(self) -> None:
        super().__init__()
        spec = json.loads(os.environ.get(SPEC_ENV, "{}"))
        self.max_items = int(spec.get("max_items", DEFAULT_MAX_ITEMS))
        self.max_item_bytes = int(spec.get("max_item_bytes", DEFAULT_MAX_ITEM_BYTES))

    def deserialize(self, data: bytes) -> Any:
        return data  # parsed in forward so errors become ValidationError (422) with a clear message

    def forward(self, data: Any) -> Any:
        try:
            return codec.decode_request(self.op, data, self.max_items, self.max_item_bytes)
        except codec.BodyDecodeError as err:
            raise DecodingError(str(err)) from err
        except codec.RequestError as err:
            raise ValidationError(str(err)) from err


class RewardIngress(_Ingress):
    op = "reward"


class CompareIngress(_Ingress):
    op = "compare"


class OracleWorker(Worker):
    """Stage 2: one oracle call per op over all requests of a dynamic batch."""

    resp_mime_type = "application/msgpack"

    def __init__(self) -> None:
        super().__init__()
        spec = json.loads(os.environ[SPEC_ENV])
        self.oracle = build_oracle(spec)
        self.compare_oracle = (
            self.oracle
            if hasattr(self.oracle, "compare")
            else BradleyTerryPreference(self.oracle, temperature=float(spec.get("temperature", 1.0)))
        )

    def serialize(self, data: Any) -> bytes:
        return codec.pack(data)

    def _call(self, op: str, requests: list[dict[str, Any]]) -> OracleResult:
        refs_given = any(r["references"] is not None for r in requests)
        cols: dict[str, list[Any]] = {name: [] for name in codec.FIELDS[op]}
        references: list[Any] | None = [] if refs_given else None
        for req in requests:
            for name in cols:
                cols[name].extend(req[name])
            if references is not None:
                references.extend(req["references"] or [None] * req["n"])
        total = sum(r["n"] for r in requests)
        if op == "reward":
            if not hasattr(self.oracle, "reward"):
                raise ValueError("this oracle serves /compare only (it has no reward())")
            result = self.oracle.reward(cols["prompts"], cols["responses"], references)
        else:
            result = self.compare_oracle.compare(
                cols["prompts"], cols["responses_a"], cols["responses_b"], references
            )
        try:
            return result.check_batch(total, codec.RESULT_FIELD[op])
        except ValueError as err:  # the oracle's fault, not the request's: a 500, not a 422
            raise RuntimeError(f"oracle returned a malformed result: {err}") from err

    def _answer(self, op: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result = self._call(op, requests)
        out, start = [], 0
        for req in requests:
            out.append(codec.result_to_response(op, req["id"], result, start, start + req["n"]))
            start += req["n"]
        return out

    def _run(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any] | None] = [None] * len(batch)
        for op in codec.OPS:
            idx = [i for i, req in enumerate(batch) if req["op"] == op]
            if not idx:
                continue
            group = [batch[i] for i in idx]
            try:
                replies = self._answer(op, group)
            except (ValueError, TypeError) as err:
                if len(batch) == 1:
                    raise ValidationError(f"oracle rejected the request: {err}") from err
                replies = []
                for req in group:  # isolate the offending request(s)
                    try:
                        replies.extend(self._answer(op, [req]))
                    except (ValueError, TypeError) as one_err:
                        replies.append(
                            {
                                "id": req["id"],
                                "error": f"oracle rejected the request: {one_err}",
                                "status": 422,
                            }
                        )
            for i, reply in zip(idx, replies, strict=True):
                answers[i] = reply
        return answers  # type: ignore[return-value]

    def forward(self, data: Any) -> Any:
        # With max_batch_size == 1 Mosec passes one request, otherwise a list of them.
        if isinstance(data, dict):
            return self._run([data])[0]
        return self._run(list(data))


def build_server(
    spec: dict[str, Any],
    *,
    num_workers: int = 1,
    max_batch_size: int = 32,
    max_wait_ms: int = 0,
    timeout_s: float = 60.0,
    ingress_workers: int = 2,
) -> Server:
    """A configured (not yet running) Mosec server for ``spec``; mosec options come from sys.argv."""
    if min(num_workers, max_batch_size, ingress_workers) < 1 or max_wait_ms < 0 or not timeout_s > 0:
        raise ValueError(
            "num_workers, max_batch_size, ingress_workers must be >= 1, max_wait_ms >= 0 and timeout_s > 0"
        )
    env = {SPEC_ENV: json.dumps(spec)}
    os.environ[SPEC_ENV] = env[SPEC_ENV]
    server = _FailFastServer()
    sem_file = os.environ.get(SEM_FILE_ENV)
    if sem_file:
        with open(sem_file, "w") as f:
            f.write("\n".join(_semaphore_names(server)))
    n_in = ingress_workers
    server.append_worker(
        RewardIngress, num=n_in, route="/reward", env=[env] * n_in, timeout=timeout_s
    )
    server.append_worker(
        CompareIngress, num=n_in, route="/compare", env=[env] * n_in, timeout=timeout_s
    )
    server.append_worker(
        OracleWorker,
        num=num_workers,
        max_batch_size=max_batch_size,
        max_wait_time=max_wait_ms,
        env=[env] * num_workers,
        timeout=timeout_s,
        route=["/reward", "/compare"],
    )
    return server


def serve(
    spec: dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_workers: int = 1,
    max_batch_size: int = 32,
    max_wait_ms: int = 0,
    timeout_s: float = 60.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    capacity: int = 1024,
    log_level: str = "info",
    ingress_workers: int = 2,
) -> None:
    """Run the service in the foreground until SIGINT/SIGTERM (exit 0), or until every worker of one
    stage has died (exit 3)."""
    # Mosec parses sys.argv (also in its spawned workers); hand it exactly its own options.
    sys.argv = [
        sys.argv[0] if sys.argv else "oat-serve-oracle",
        "--address", host,
        "--port", str(port),
        "--timeout", str(int(timeout_s * 1000) + 1000),
        "--max-request-size", str(max_request_bytes),
        "--capacity", str(capacity),
        "--log-level", log_level,
        # append_worker replaces max_wait_time=0 by this (deprecated) default; 0 must stay 0.
        "--wait", str(max_wait_ms),
    ]  # fmt: skip
    server = build_server(
        spec,
        num_workers=num_workers,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        timeout_s=timeout_s,
        ingress_workers=ingress_workers,
    )
    server.run()
    if server.crashed:
        sys.exit(3)
