"""Client for the remote oracle service: both oracle protocols over aiohttp.

A call of ``B`` items is split into ``ceil(B / chunk_size)`` requests sent concurrently (at most
``max_concurrency`` in flight; aiohttp rather than httpx because httpx's async client degrades
badly at >= 32 concurrent requests). Each request carries a fresh id that the server echoes.

**Exactly-once, in-order accounting.** Every chunk ``k`` covers items ``[k*c, (k+1)*c)`` and is
retried (exponential backoff, fresh connection) on timeouts, connection errors and 408/429/5xx,
e.g. when a server worker is killed mid-batch, until it gets an answer whose id matches and
whose item count equals the chunk's. Answers are written to their chunk's slot, so each item is
answered exactly once and in the caller's order no matter how often a chunk was retried or in
which order chunks finished (oracles are pure functions, so a server-side duplicate of a retried
chunk is harmless and never reaches the caller). A non-retryable 4xx, or a chunk that exhausts
its retries, raises :class:`RemoteCallError` and the whole call fails: a partial result is never
returned.

Synchronous methods (``reward``/``compare``) run on a private event loop in a daemon thread and
so work from plain code and from inside a running event loop; ``areward``/``acompare`` are the
async API for callers that already have a loop.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from oat_env.oracles.base import OracleResult
from oat_env.oracles.remote import codec
from oat_env.oracles.remote.aio import (
    LoopThread,
    RemoteCallError,
    RetryPolicy,
    gather_or_cancel,
    post_with_retries,
)


class RemoteOracle:
    """Reward + preference oracle backed by an ``oat-serve-oracle`` service.

    Args:
        url: service root, e.g. ``http://127.0.0.1:8000``.
        chunk_size: items per HTTP request.
        max_concurrency: requests in flight per call.
        timeout_s: per-request timeout (covers queueing + batching + the oracle call).
        max_attempts / backoff_s: retry policy per chunk.
        seed: seeds retry jitter.
    """

    def __init__(
        self,
        url: str,
        chunk_size: int = 64,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_attempts: int = 8,
        backoff_s: float = 0.2,
        seed: int = 0,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if chunk_size < 1 or max_concurrency < 1:
            raise ValueError(
                f"chunk_size and max_concurrency must be >= 1, got {chunk_size}, {max_concurrency}"
            )
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = url.rstrip("/")
        self.chunk_size = int(chunk_size)
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.retry = RetryPolicy(max_attempts=max_attempts, base_delay=backoff_s)
        self._jitter = random.Random(seed)
        self._ids = itertools.count()
        self._loop: LoopThread | None = None
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}

    def __repr__(self) -> str:
        return f"RemoteOracle(url={self.url!r}, chunk_size={self.chunk_size}, max_concurrency={self.max_concurrency})"

    async def _session(self) -> Any:
        import aiohttp

        # One session per event loop: aiohttp sessions are bound to the loop that created them.
        loop = asyncio.get_running_loop()
        # Forget sessions of loops that are gone (their sockets died with the loop).
        for key in [k for k, (lp, _) in self._sessions.items() if lp.is_closed()]:
            del self._sessions[key]
        entry = self._sessions.get(id(loop))
        if entry is None or entry[1].closed:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency * 2)
            entry = (loop, aiohttp.ClientSession(connector=connector))
            self._sessions[id(loop)] = entry
        return entry[1]

    async def _call(self, op: str, columns: dict[str, Sequence[Any] | None], n: int) -> OracleResult:
        for name in codec.FIELDS[op]:
            col = columns[name]
            if col is None or len(col) != n:
                raise ValueError(
                    f"batch sizes differ: {n} prompts, {None if col is None else len(col)} {name}"
                )
        refs = columns.get("references")
        if refs is not None and len(refs) != n:
            raise ValueError(f"batch sizes differ: {n} prompts, {len(refs)} references")
        if n == 0:
            return OracleResult(**{codec.RESULT_FIELD[op]: np.zeros(0)})
        session = await self._session()
        sem = asyncio.Semaphore(self.max_concurrency)
        stats = {"retries": 0}
        starts = list(range(0, n, self.chunk_size))

        def count_retry() -> None:
            stats["retries"] += 1

        async def one_chunk(start: int) -> OracleResult:
            stop = min(n, start + self.chunk_size)
            request_id = next(self._ids)
            chunk_cols = {k: (None if v is None else list(v[start:stop])) for k, v in columns.items()}
            payload = codec.encode_request(op, request_id, chunk_cols)
            async with sem:
                # A reply can fail validation (wrong id/length) only through a server bug or a
                # proxy mix-up; re-ask rather than accept it.
                for attempt in range(self.retry.max_attempts):
                    _, body = await post_with_retries(
                        session,
                        f"{self.url}/{op}",
                        data=payload,
                        headers={"Content-Type": "application/msgpack"},
                        timeout_s=self.timeout_s,
                        policy=self.retry,
                        rng=self._jitter,
                        describe=f"{op} request (items {start}..{stop - 1})",
                        on_retry=count_retry,
                    )
                    reply = codec.unpack(body)
                    if isinstance(reply, dict) and "error" in reply:
                        raise RemoteCallError(
                            f"{op} request (items {start}..{stop - 1}) rejected: {reply['error']}",
                            status=int(reply.get("status", 422)),
                        )
                    try:
                        return codec.response_to_result(op, reply, request_id, stop - start)
                    except ValueError as err:
                        if attempt == self.retry.max_attempts - 1:
                            raise RemoteCallError(f"{op} request (items {start}..{stop - 1}): {err}") from err
                        stats["retries"] += 1
            raise AssertionError("unreachable")

        t0 = time.perf_counter()
        field = codec.RESULT_FIELD[op]
        if len(starts) == 1:
            # One chunk (e.g. one env per request): no task to spawn, nothing to concatenate. This
            # path runs once per request at high request rates, where the client's own CPU counts.
            parts = [await one_chunk(0)]
            values, info = getattr(parts[0], field), dict(parts[0].info)
        else:
            parts = await gather_or_cancel([one_chunk(s) for s in starts])
            values = np.concatenate([getattr(p, field) for p in parts])
            info = {}
            for key in parts[0].info:
                if all(key in p.info for p in parts):
                    info[key] = np.concatenate([p.info[key] for p in parts])
        metrics = {
            "latency_s": time.perf_counter() - t0,
            "requests": float(len(starts)),
            "retries": float(stats["retries"]),
        }
        # Server-side metrics (e.g. the size of the batched oracle call), averaged over requests.
        for key in {k for p in parts for k in p.metrics}:
            vals = [float(p.metrics[key]) for p in parts if key in p.metrics]
            metrics[f"server/{key}"] = float(np.mean(vals))
        return OracleResult(**{field: values}, info=info, metrics=metrics).check_batch(n, field)

    async def areward(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        references: Sequence[str | None] | None = None,
    ) -> OracleResult:
        """Async :meth:`reward`."""
        cols = {"prompts": prompts, "responses": responses, "references": references}
        return await self._call("reward", cols, len(prompts))

    async def acompare(
        self,
        prompts: Sequence[str],
        responses_a: Sequence[str],
        responses_b: Sequence[str],
        references: Sequence[str | None] | None = None,
    ) -> OracleResult:
        """Async :meth:`compare`."""
        cols = {
            "prompts": prompts,
            "responses_a": responses_a,
            "responses_b": responses_b,
            "references": references,
        }
        return await self._call("compare", cols, len(prompts))

    def _run(self, coro: Any) -> OracleResult:
        if self._loop is None:
            self._loop = LoopThread(name="oat-remote-oracle")
        return self._loop.run(coro)

    def reward(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        references: Sequence[str | None] | None = None,
    ) -> OracleResult:
        """``scores[i]`` from the server's oracle, in order (blocking)."""
        return self._run(self.areward(prompts, responses, references))

    def compare(
        self,
        prompts: Sequence[str],
        responses_a: Sequence[str],
        responses_b: Sequence[str],
        references: Sequence[str | None] | None = None,
    ) -> OracleResult:
        """``prob_a_wins[i]`` from the server's oracle, in order (blocking)."""
        return self._run(self.acompare(prompts, responses_a, responses_b, references))

    async def ahealthy(self) -> bool:
        """``GET /`` answers 200 (the Mosec front end is up; workers may still be loading)."""
        import aiohttp

        session = await self._session()
        try:
            async with session.get(self.url + "/", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            return False

    def healthy(self) -> bool:
        """Blocking :meth:`ahealthy`."""
        return self._run(self.ahealthy())

    async def aclose(self) -> None:
        """Close the HTTP session of the running event loop (call before that loop ends)."""
        entry = self._sessions.pop(id(asyncio.get_running_loop()), None)
        if entry is not None and not entry[1].closed:
            await entry[1].close()

    def close(self) -> None:
        """Close the private loop's HTTP session and stop the loop thread."""
        if self._loop is not None:
            entry = self._sessions.pop(id(self._loop.loop), None)
            if entry is not None and not entry[1].closed:
                self._loop.run(entry[1].close())
            self._loop.close()
            self._loop = None

    def __enter__(self) -> RemoteOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
