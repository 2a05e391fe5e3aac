"""A thin HTTP/1.1 front on the public port, forwarding byte for byte to Mosec on loopback.

Why it exists: Mosec's Rust front end answers an empty POST body itself with ``200 "no data
provided"`` (``src/routes.rs``: ``if data.is_empty() { return build_response(StatusCode::OK, ..) }``,
no option changes it), before any Python worker sees the request. An oracle client must never
take that for an answer, so ``oat-serve-oracle``'s supervisor listens on the public port and
relays every connection to the Mosec server on an internal 127.0.0.1 port.

What it does per request, and nothing more (bodies and responses are copied, never decoded):

* frames requests by their head (``Content-Length``) so each one is seen;
* a POST without a body is forwarded with the one-byte body :data:`EMPTY_BODY_MARKER` (``0xC1``,
  the byte msgpack never uses); the ingress worker answers it ``400 "empty body: expected a
  msgpack map"`` in order with the connection's other responses, so the front never has to track
  which response belongs to which request;
* a body over the server's ``--max-request-bytes`` gets ``413`` from the front, from its
  ``Content-Length`` alone (nothing of it is relayed);
* a chunked body gets ``411`` (the client sends ``Content-Length``; decoding chunks here would
  cost every request), a head that does not parse ``400`` (``Content-Length`` must be digits), a head
  over 64 KiB ``431``; each of these is answered after the answers to the requests pipelined before
  it (never in place of one), then the connection closes;
* empty lines before a request line are skipped (RFC 9112 §2.2); a client that half-closes after
  its requests still gets every answer (the front counts the answers it relays by their framing,
  status line and ``Content-Length``, and closes once all are through);
* while Mosec is down (the supervisor is restarting it) a new connection gets ``503 "oracle
  server restarting"``, which :class:`~oat_env.oracles.remote.RemoteOracle` retries; a Mosec
  connection that drops mid-request drops the client's connection too (the client retries).

One client connection maps to one Mosec connection, so responses come back in order by
construction. Back-pressure goes both ways (a full send buffer pauses reading on the other side).
Measured cost: see the README's benchmark table (``oat-bench oracle-server``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from oat_env.oracles.remote.codec import EMPTY_BODY_MARKER

MAX_HEAD_BYTES = 64 * 1024
# After the last response of a connection, keep reading (and dropping) what the client still sends for this long
# before closing: closing a socket with unread input makes the kernel send RST, which can destroy the response
# in flight (Mosec answers 413 before a 9 MB body has arrived; the client then saw "connection reset").
LINGER_S = 2.0
_HEAD_END = b"\r\n\r\n"


def _reply(status: int, reason: str, message: str) -> bytes:
    body = message.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


RESTARTING = _reply(503, "Service Unavailable", "oracle server restarting, retry")
BAD_HEAD = _reply(400, "Bad Request", "malformed HTTP request head")
CHUNKED = _reply(411, "Length Required", "send the body with Content-Length (chunked is not accepted)")
HEAD_TOO_LARGE = _reply(431, "Request Header Fields Too Large", "request head is too large")
# The same words as Mosec's own 413 (the front answers it from Content-Length, before any body byte is relayed:
# relayed, Mosec's early 413 raced its own close and the client got a reset connection instead).
BODY_TOO_LARGE = _reply(413, "Payload Too Large", "request body is too large")


class _Malformed(Exception):
    """The request head cannot be framed; carries the canned response to send."""

    def __init__(self, reply: bytes):
        super().__init__()
        self.reply = reply


def _frame(head: bytes, max_body_bytes: int | None = None) -> tuple[bytes, int]:
    """``(head to forward, body bytes that follow)`` for one request head (ending in CRLFCRLF); a body over
    ``max_body_bytes`` is refused with 413."""
    lines = head[: -len(_HEAD_END)].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _Malformed(BAD_HEAD)
    length: int | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _Malformed(BAD_HEAD)
        name = name.strip().lower()
        if name == b"content-length":
            digits = value.strip()
            if not digits.isdigit():  # digits only: int() would also take "+3" or "5_0"
                raise _Malformed(BAD_HEAD)
            n = int(digits)
            if length is not None and n != length:
                raise _Malformed(BAD_HEAD)
            length = n
        elif name == b"transfer-encoding":
            raise _Malformed(CHUNKED)
    if max_body_bytes is not None and length is not None and length > max_body_bytes:
        raise _Malformed(BODY_TOO_LARGE)
    if not length and parts[0] == b"POST":
        # An empty POST body: forward the marker so the ingress answers 400 (Mosec would say 200).
        kept = [ln for ln in lines if ln.partition(b":")[0].strip().lower() != b"content-length"]
        kept.append(b"content-length: %d" % len(EMPTY_BODY_MARKER))
        return b"\r\n".join(kept) + _HEAD_END + EMPTY_BODY_MARKER, 0
    return head, length or 0


class _Upstream(asyncio.Protocol):
    """The Mosec side of one relayed connection: copies responses back to the client as they come, and frames
    them (status line, ``Content-Length``) only to count the completed ones: the client side needs to know when
    every forwarded request has its answer (a half-closed client, a canned reply queued behind earlier requests).
    """

    def __init__(self, down: _Downstream):
        self.down = down
        self.transport: Any = None
        self.head = b""
        self.body_left = 0
        self.framing = True  # False after a response that cannot be framed: counting stops, relaying goes on

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.down.transport.write(data)
        while data and self.framing:
            if self.body_left:
                take = min(self.body_left, len(data))
                self.body_left -= take
                data = data[take:]
                if not self.body_left:
                    self.down.response_done()
                continue
            data = self.head + data
            end = data.find(_HEAD_END)
            if end < 0:
                self.head = data[-MAX_HEAD_BYTES:]
                return
            self.head = b""
            self._response_head(data[: end + len(_HEAD_END)])
            data = data[end + len(_HEAD_END) :]

    def _response_head(self, head: bytes) -> None:
        lines = head[: -len(_HEAD_END)].split(b"\r\n")
        status = lines[0].split(b" ")
        code = int(status[1]) if len(status) > 1 and status[1].isdigit() else -1
        if 100 <= code < 200:
            return  # an interim response (100 Continue): the final one follows
        method = self.down.methods.popleft() if self.down.methods else b""
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        if method == b"HEAD" or code in (204, 304):
            length = 0
        if length is None:
            self.framing = False  # cannot tell where it ends: stop counting (the client side falls back)
            self.down.framing_lost()
            return
        self.body_left = length
        if not length:
            self.down.response_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.upstream_lost()

    def pause_writing(self) -> None:  # Mosec reads slowly: stop reading the client
        self.down.transport.pause_reading()

    def resume_writing(self) -> None:
        self.down.transport.resume_reading()


class _Downstream(asyncio.Protocol):
    """The client side of one relayed connection: frames requests and forwards them."""

    def __init__(self, upstream: tuple[str, int], max_body_bytes: int | None = None):
        self.upstream_addr = upstream
        self.max_body_bytes = max_body_bytes
        self.transport: Any = None
        self.up: _Upstream | None = None
        self.buf = b""
        self.body_left = 0  # bytes of the current request's body still to forward as they come
        self.closed = False
        self.methods: collections.deque[bytes] = collections.deque()  # methods of requests whose answer's head is due
        self.inflight = 0  # forwarded requests whose answer is not completely relayed yet
        self.counting = True  # False once a response could not be framed
        self.client_eof = False  # the client half-closed: finish once every answer is relayed
        self.queued_reply: bytes | None = None  # a canned reply that must wait for the earlier answers
        self._connect_task: asyncio.Task | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.pause_reading()  # until Mosec's connection is up: nothing to forward to yet
        self._connect_task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_connection(lambda: _Upstream(self), *self.upstream_addr)
        except OSError:
            self.fail(RESTARTING)
            return
        self.up = up
        if self.closed:
            up.transport.close()
        else:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.up is None or self.queued_reply is not None:
            return
        out = []
        while data:
            if self.body_left:
                take = data[: self.body_left]
                out.append(take)
                self.body_left -= len(take)
                data = data[len(take) :]
                continue
            data = self.buf + data if self.buf else data
            data = data.lstrip(b"\r\n")  # empty lines before a request line are ignored (RFC 9112 §2.2)
            if not data:
                self.buf = b""
                break
            end = data.find(_HEAD_END)
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    self.fail(HEAD_TOO_LARGE, out)
                    return
                self.buf = data
                break
            self.buf = b""
            try:
                head, self.body_left = _frame(data[: end + len(_HEAD_END)], self.max_body_bytes)
            except _Malformed as err:
                self.fail(err.reply, out)
                return
            out.append(head)
            self.methods.append(head.split(b" ", 1)[0])
            self.inflight += 1
            data = data[end + len(_HEAD_END) :]
        if out:
            self.up.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def fail(self, reply: bytes, pending: list[bytes] | None = None) -> None:
        """Forward what was framed before the bad request; answer it ourselves once the earlier requests have
        their answers (so that no answer is taken for another's), then close."""
        if self.up is not None and pending:
            self.up.transport.write(b"".join(pending))
        if self.inflight and self.counting and self.up is not None:
            self.queued_reply = reply  # data_received drops everything from now on
            return
        self.transport.write(reply)
        self.finish()

    def response_done(self) -> None:
        """The upstream finished relaying one final response."""
        self.inflight -= 1
        if not self.inflight:
            if self.queued_reply is not None:
                self.transport.write(self.queued_reply)
                self.finish()
            elif self.client_eof:
                self.finish()

    def framing_lost(self) -> None:
        self.counting = False

    def upstream_lost(self) -> None:
        if self.queued_reply is not None and not self.closed:
            self.transport.write(self.queued_reply)
        self.finish()

    def eof_received(self) -> bool:
        """A half-closed client still gets its answers: keep the connection until they are relayed."""
        self.client_eof = True
        if not self.inflight or not self.counting or self.up is None:
            self.finish()
        return True  # keep the transport open for writing

    def finish(self) -> None:
        """End the connection gracefully: flush what was written to the client, half-close, drop whatever
        it still sends for :data:`LINGER_S` seconds, then close (a "lingering close", as web servers do)."""
        if self.closed:
            return
        self.closed = True  # data_received drops everything from now on
        if self.up is not None:
            self.up.transport.close()
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()  # after the buffered response
        except OSError:
            self.transport.close()
            return
        self.transport.resume_reading()  # keep draining even if back-pressure had paused it
        asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
            if self.up is not None:
                self.up.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:  # the client reads slowly: stop reading Mosec
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.transport.resume_reading()


async def start_front(host: str, port: int, upstream: tuple[str, int],
                      max_body_bytes: int | None = None) -> asyncio.Server:
    """Listen on ``host:port`` and relay each connection to Mosec at ``upstream``; bodies over
    ``max_body_bytes`` (the server's ``--max-request-bytes``) get 413 from the front itself."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Downstream(upstream, max_body_bytes), host, port, reuse_address=True)


class Front:
    """:func:`start_front` on its own event loop in a daemon thread (the supervisor stays sync)."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int], max_body_bytes: int | None = None):
        from oat_env.oracles.remote.aio import LoopThread

        self._loop = LoopThread(name="oat-serve-front")
        try:
            self._server = self._loop.run(start_front(host, port, upstream, max_body_bytes))
        except BaseException:
            self._loop.close()
            raise

    def close(self) -> None:
        """Stop listening and close the loop (open relays die with the process)."""

        async def stop() -> None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

        self._loop.run(stop())
        self._loop.close()
