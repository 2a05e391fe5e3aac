"""Remote oracles: a Mosec server exposing any oracle, and an aiohttp client for it.

* :mod:`.server` -- ``oat-serve-oracle``: ``POST /compare`` and ``POST /reward`` (msgpack bodies),
  server-side dynamic batching across requests, ``GET /`` health check.
* :mod:`.client` -- :class:`RemoteOracle`, implementing both oracle protocols with chunking,
  concurrency, timeouts, retries, and exactly-once, in-order answers.
* :mod:`.codec` -- the wire format (request validation and encoding).
* :mod:`.front` -- the supervisor's byte-relaying front on the public port (empty body -> 400,
  503 while Mosec restarts).
* :mod:`.aio` -- shared async HTTP helpers (event-loop thread, rate limit, retries).

Nothing heavy is imported here.
"""

from oat_env.oracles.remote.aio import RemoteCallError, RetryPolicy
from oat_env.oracles.remote.client import RemoteOracle

__all__ = ["RemoteCallError", "RemoteOracle", "RetryPolicy"]
