"""The supervisor's byte-relaying front (oat_env.oracles.remote.front) against a stand-in upstream.

The upstream is a small aiohttp app that echoes what it received, so each test sees exactly what
the front forwarded: framing over split/pipelined packets, the empty-body marker, the canned
answers (411, 400, 503). The real Mosec path (empty body -> 400 from the ingress) is covered in
test_oracle_remote.py and test_oracle_faults.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from oat_env.oracles.remote.codec import EMPTY_BODY_MARKER  # noqa: E402
from oat_env.oracles.remote.front import Front, _frame, start_front  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=f"{request.method} {request.path} {body!r}".encode())


def _with_relay(test: Callable[[int], Awaitable[None]], upstream_up: bool = True) -> None:
    """Run ``test(front_port)`` with the front relaying to an echo upstream (or to a dead port)."""

    async def main() -> None:
        up_port = _free_port()
        runner = None
        if upstream_up:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", _echo)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", up_port).start()
        front_port = _free_port()
        server = await start_front("127.0.0.1", front_port, ("127.0.0.1", up_port))
        try:
            await test(front_port)
        finally:
            server.close()
            await server.wait_closed()
            if runner is not None:
                await runner.cleanup()

    asyncio.run(main())


async def _raw(port: int, chunks: list[bytes], pause: float = 0.02) -> bytes:
    """Send ``chunks`` on one connection (pausing between them) and read until the peer closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(pause)
    out = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    return out


def test_frame_rewrites_only_empty_posts() -> None:
    head = b"POST /reward HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    forwarded, left = _frame(head)
    assert left == 0 and forwarded.endswith(b"\r\n\r\n" + EMPTY_BODY_MARKER)
    assert b"content-length: 1" in forwarded and b"Content-Length: 0" not in forwarded
    no_length = b"POST /reward HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _frame(no_length)[0].endswith(EMPTY_BODY_MARKER)
    body = b"POST /reward HTTP/1.1\r\ncontent-length: 12\r\n\r\n"
    assert _frame(body) == (body, 12)  # untouched
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _frame(get) == (get, 0)


def test_oversized_bodies_get_413_from_the_head_alone() -> None:
    """Refused from Content-Length before any body byte is relayed: relayed, Mosec's own early 413 raced its
    close and the client saw a reset connection (tests/test_oracle_remote.py's 9 MB case, intermittently)."""
    from oat_env.oracles.remote.front import BODY_TOO_LARGE, _Malformed

    head = b"POST /reward HTTP/1.1\r\ncontent-length: 101\r\n\r\n"
    with pytest.raises(_Malformed) as err:
        _frame(head, max_body_bytes=100)
    assert err.value.reply == BODY_TOO_LARGE and b"413" in BODY_TOO_LARGE.split(b"\r\n")[0]
    assert _frame(head, max_body_bytes=101) == (head, 101)
    assert _frame(head) == (head, 101)  # no limit given: relayed


def test_requests_are_framed_across_packets_and_pipelining() -> None:
    async def test(port: int) -> None:
        r1 = b"POST /reward HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        r2 = b"POST /compare HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        r3 = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        stream = r1 + r2 + r3
        # Split mid-head and mid-body, and pipeline the rest in one packet.
        out = await _raw(port, [stream[:10], stream[10:50], stream[50:55], stream[55:]])
        text = out.decode(errors="replace")
        assert text.count("HTTP/1.1 200") == 3, text
        first, second, third = (
            text.index(s) for s in ("POST /reward b'hello'", "POST /compare b'\\xc1'", "GET /metrics")
        )
        assert first < second < third  # in order: one upstream connection per client connection

    _with_relay(test)


async def _half_closed(port: int, data: bytes) -> bytes:
    """Send ``data``, shut down the write side (``nc -N``, ``shutdown(SHUT_WR)``) and read until the peer closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    out = await asyncio.wait_for(reader.read(-1), 5)
    writer.close()
    return out


def test_half_closed_client_pipelining_and_empty_lines() -> None:
    """A client that half-closes after its requests still gets every answer; a bad request pipelined behind good
    ones is answered after theirs (never in place of one); empty lines between requests are skipped."""

    async def slow_echo(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)  # the answer comes after the client's EOF
        return await _echo(request)

    async def main() -> None:
        up_port, front_port = _free_port(), _free_port()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", slow_echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", up_port).start()
        server = await start_front("127.0.0.1", front_port, ("127.0.0.1", up_port), max_body_bytes=10)
        try:
            good = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            out = (await _half_closed(front_port, good)).decode()
            assert out.startswith("HTTP/1.1 200") and out.endswith("POST /x b'abc'"), out
            two = (await _half_closed(front_port, good + b"\r\n" + good.replace(b"abc", b"xyz"))).decode()
            assert two.count("HTTP/1.1 200") == 2 and two.index("b'abc'") < two.index("b'xyz'"), two
            too_big = b"POST /y HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\n"
            out = (await _raw(front_port, [good + too_big])).decode()
            assert out.index("HTTP/1.1 200") < out.index("HTTP/1.1 413") and "b'abc'" in out, out
            plus = b"POST /x HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc"  # digits only
            assert (await _raw(front_port, [plus])).startswith(b"HTTP/1.1 400 ")
        finally:
            server.close()
            await server.wait_closed()
            await runner.cleanup()

    asyncio.run(main())


def test_client_libraries_work_through_the_front() -> None:
    async def test(port: int) -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(3):  # keep-alive: the same relayed connection serves several requests
                async with s.post(f"http://127.0.0.1:{port}/reward", data=b"x" * 100_000) as resp:
                    assert resp.status == 200
                    assert (await resp.read()).startswith(b"POST /reward b'xxx")
            async with s.post(f"http://127.0.0.1:{port}/reward", data=b"") as resp:
                assert (await resp.text()) == "POST /reward b'\\xc1'"

    _with_relay(test)


def test_canned_answers_are_short_and_close() -> None:
    async def test(port: int) -> None:
        chunked = b"POST /reward HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        assert (await _raw(port, [chunked])).startswith(b"HTTP/1.1 411 ")
        assert (await _raw(port, [b"garbage\r\n\r\n"])).startswith(b"HTTP/1.1 400 ")
        assert (await _raw(port, [b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000])).startswith(b"HTTP/1.1 431 ")
        bad_length = b"POST /reward HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
        assert (await _raw(port, [bad_length])).startswith(b"HTTP/1.1 400 ")

    _with_relay(test)


def test_upstream_down_gets_503_and_front_thread_closes() -> None:
    async def test(port: int) -> None:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 503 and "restarting" in await resp.text()

    _with_relay(test, upstream_up=False)
    port = _free_port()
    front = Front("127.0.0.1", port, ("127.0.0.1", _free_port()))
    front.close()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))
