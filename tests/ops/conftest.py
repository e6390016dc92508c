"""Fixtures for the operations surface: a live admin server on 127.0.0.1:0 and a raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import attrs
import h11
import pytest
import trio

from sessions.admin import AdminLimits, Health, serve_admin
from sessions.metrics import Metrics


@attrs.frozen
class Reply:
    """One HTTP response as the raw client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes


@attrs.define
class AdminFixture:
    """A running admin server and the objects it reads."""

    host: str
    port: int
    metrics: Metrics
    health: Health

    async def connect(self) -> trio.SocketStream:
        """A fresh TCP connection to the server."""
        return await trio.open_tcp_stream(self.host, self.port)


async def read_reply(conn: h11.Connection, stream: trio.abc.Stream) -> Reply | None:
    """Read one response with an h11 client connection; None if the server closed first."""
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return Reply(status, headers, body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def request(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """Send one request on a kept-alive h11 client connection and read its reply."""
    hdrs = [("host", "127.0.0.1"), *(headers or [])]
    data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    reply = await read_reply(conn, stream)
    assert reply is not None, "server closed without a response"
    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
        conn.start_next_cycle()
    return reply


async def get(
    admin: AdminFixture,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
) -> Reply:
    """One request on its own connection."""
    stream = await admin.connect()
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        return await request(stream, conn, target, method=method, headers=headers)


async def read_until_eof(stream: trio.abc.Stream) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := await stream.receive_some(65536):
        chunks.append(bytes(chunk))
    return b"".join(chunks)


@pytest.fixture
def limits() -> AdminLimits:
    """Short real deadlines: these tests use real sockets, so no mock clock."""
    return AdminLimits(request_timeout=0.5, write_timeout=2.0, max_connections=8)


@pytest.fixture
async def admin(nursery: trio.Nursery, limits: AdminLimits) -> AsyncIterator[AdminFixture]:
    """An admin server on 127.0.0.1, port 0, cancelled with the test's nursery."""
    metrics = Metrics()
    health = Health()
    serve = partial(serve_admin, "127.0.0.1", 0, metrics=metrics, health=health, limits=limits)
    host, port = await nursery.start(serve)
    yield AdminFixture(host, port, metrics, health)
