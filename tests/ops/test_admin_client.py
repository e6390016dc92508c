"""The parent's probe client: every way a worker's admin answer can fail is OSError or ValueError.

A worker that exits while the parent probes it resets the connection. trio reports that as
``BrokenResourceError``, which the probe did not catch: the parent of ``--workers 2`` once
crashed with exit code 1 during a drain (CI, stop 16). These tests pin the two-exception
contract that :meth:`sessions.workers.WorkerPool._probe` and ``refresh_metrics`` rely on.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from sessions.admin_client import http_get

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def serve_once(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve one connection on 127.0.0.1:0 with ``handler``; return the port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def read_request(stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(4096)


async def reset_after_request(stream: trio.SocketStream) -> None:
    await read_request(stream)
    # SO_LINGER with a zero timeout makes close() send RST: what a killed worker's kernel does.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def answer_garbage(stream: trio.SocketStream) -> None:
    await read_request(stream)
    await stream.send_all(b"this is not HTTP\r\n\r\n")
    await stream.aclose()


async def answer_ready(stream: trio.SocketStream) -> None:
    await read_request(stream)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nready\n")
    await stream.aclose()


async def test_a_reset_connection_is_an_oserror() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve_once(nursery, reset_after_request)
        with pytest.raises(OSError) as caught:
            await http_get("127.0.0.1", port, "/readyz")
        assert isinstance(caught.value.__cause__, trio.BrokenResourceError)
        nursery.cancel_scope.cancel()


async def test_a_malformed_answer_is_a_valueerror() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve_once(nursery, answer_garbage)
        with pytest.raises(ValueError, match="malformed answer"):
            await http_get("127.0.0.1", port, "/readyz")
        nursery.cancel_scope.cancel()


async def test_a_refused_connection_is_an_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the kernel refuses
        with pytest.raises(OSError):
            await http_get("127.0.0.1", port, "/readyz")


async def test_a_good_answer_gives_status_and_body() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve_once(nursery, answer_ready)
        assert await http_get("127.0.0.1", port, "/readyz") == (200, b"ready\n")
        nursery.cancel_scope.cancel()
