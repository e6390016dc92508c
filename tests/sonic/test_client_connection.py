"""One HTTP/2 connection against the in-memory fake server: flow control both ways,
GOAWAY, RST_STREAM isolation, connection loss, keep-alive, stalls and timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from actors.errors import SonicConnectionError, SonicTimeout
from actors.sonic.connection import Connection, ConnectionConfig, H2Stream
from tests.sonic.test_client_fakeserver import ServerStream, fake_server

HEADERS = [(":method", "POST"), (":scheme", "https"), (":authority", "x"), (":path", "/p")]


@asynccontextmanager
async def connected(
    opener: object, config: ConnectionConfig | None = None
) -> AsyncIterator[Connection]:
    # A deadlock would hang under the autojump clock; a deadline turns it into a failure.
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            conn = Connection(opener, config or ConnectionConfig(keepalive_interval=None))  # type: ignore[arg-type]
            await nursery.start(conn.run)
            yield conn
            conn.close()
            nursery.cancel_scope.deadline = trio.current_time() + 5


async def read_all(stream: H2Stream) -> bytes:
    body = bytearray()
    while chunk := await stream.receive_data():
        body += chunk
    return bytes(body)


async def test_slow_consumers_do_not_stall_a_sibling(autojump_clock: trio.abc.Clock) -> None:
    size = 200_000  # several times the client's stream window
    window = 40_000  # two stalled streams hold more than HTTP/2's default connection window

    async def handler(st: ServerStream) -> None:
        await st.respond()
        await st.send(bytes([st.stream_id]) * size, end=True)

    config = ConnectionConfig(keepalive_interval=None, stream_window=window, max_streams=4)
    async with fake_server(handler) as server, connected(server.opener, config) as conn:
        slow = [conn.open_stream(HEADERS), conn.open_stream(HEADERS)]
        fast = conn.open_stream(HEADERS)
        assert (await fast.receive_response())[0] == 200
        # The slow streams are never read while the fast one receives everything.
        assert await read_all(fast) == bytes([fast.stream_id]) * size
        await trio.testing.wait_all_tasks_blocked()
        for st in slow:
            assert st.buffered_bytes == window  # exactly its window, no more
        for st in slow:
            assert await read_all(st) == bytes([st.stream_id]) * size


async def test_outbound_waits_for_window_without_blocking_sibling(
    autojump_clock: trio.abc.Clock,
) -> None:
    received: dict[int, int] = {}
    release = trio.Event()

    async def handler(st: ServerStream) -> None:
        await st.respond()
        if st.stream_id == 1:
            await release.wait()  # the server does not read (nor acknowledge) stream 1 yet
        total = 0
        while chunk := await st.receive_chunk():
            total += len(chunk)
        received[st.stream_id] = total
        await st.end()

    async with (
        fake_server(handler, initial_window=1000, auto_ack=False) as server,
        connected(server.opener) as conn,
    ):
        blocked = conn.open_stream(HEADERS)
        other = conn.open_stream(HEADERS)
        async with trio.open_nursery() as nursery:

            async def send_big() -> None:
                await blocked.send_data(b"a" * 5000, end_stream=True)

            nursery.start_soon(send_big)
            await trio.testing.wait_all_tasks_blocked()
            assert 1 not in received  # stream 1 is stuck on its window...
            await other.send_data(b"b" * 900, end_stream=True)  # ...stream 3 is not
            await read_all(other)
            assert received[3] == 900
            release.set()
        await read_all(blocked)
        assert received[1] == 5000


async def test_rst_stream_fails_only_that_stream(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        if st.stream_id == 1:
            await st.reset()
        else:
            await trio.sleep(1)
            await st.send(b"fine", end=True)

    async with fake_server(handler) as server, connected(server.opener) as conn:
        doomed = conn.open_stream(HEADERS)
        healthy = conn.open_stream(HEADERS)
        with pytest.raises(SonicConnectionError, match="reset by server"):
            await read_all(doomed)
        with pytest.raises(SonicConnectionError):
            await doomed.send_data(b"more")
        assert await read_all(healthy) == b"fine"
        assert conn.alive and conn.accepting


async def test_goaway_lets_running_stream_finish_and_refuses_later_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        if st.stream_id == 1:
            await st.conn.goaway(last_stream_id=1)
            await trio.sleep(1)
            # the running stream keeps flowing both ways after GOAWAY
            assert await st.receive_chunk() == b"after goaway"
            await st.send(b"done", end=True)
        else:
            await trio.sleep_forever()

    async with fake_server(handler) as server, connected(server.opener) as conn:
        first = conn.open_stream(HEADERS)
        second = conn.open_stream(HEADERS)
        await first.receive_response()
        with pytest.raises(SonicConnectionError, match="GOAWAY") as info:
            await second.receive_data()
        assert info.value.retryable
        assert not conn.accepting and conn.alive
        with pytest.raises(SonicConnectionError):
            conn.open_stream(HEADERS)
        await first.send_data(b"after goaway", end_stream=True)
        assert await read_all(first) == b"done"
        first.release()
        second.release()
        await trio.testing.wait_all_tasks_blocked()
        assert not conn.alive  # drained: closed once the last stream was released


async def test_connection_loss_fails_every_stream(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        if st.stream_id == 3:
            await trio.sleep(1)
            await st.conn.drop()
        await trio.sleep_forever()

    async with fake_server(handler) as server, connected(server.opener) as conn:
        streams = [conn.open_stream(HEADERS) for _ in range(3)]
        for st in streams:
            with pytest.raises(SonicConnectionError):
                await st.receive_data()
        assert not conn.alive


async def test_keepalive_pings_an_idle_connection_and_detects_a_dead_peer(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    config = ConnectionConfig(keepalive_interval=5, keepalive_timeout=2)
    async with fake_server(handler) as server, connected(server.opener, config) as conn:
        st = conn.open_stream(HEADERS)
        await st.receive_response()
        await trio.sleep(30)
        assert server.connections[0].pings >= 5  # answered pings keep it alive
        assert conn.alive
        server.connections[0].reading = False  # the peer goes silent
        with pytest.raises(SonicConnectionError, match="PING"):
            await st.receive_data()


class _StuckStream(trio.abc.Stream):
    """A socket whose writes never finish once ``stuck`` is set."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.stuck = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.stuck:
            await trio.sleep_forever()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_stalled_socket_write_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    async with fake_server(handler) as server:
        wrapped: list[_StuckStream] = []

        async def opener() -> trio.abc.Stream:
            wrapped.append(_StuckStream(await server.opener()))
            return wrapped[0]

        config = ConnectionConfig(keepalive_interval=None, write_timeout=3)
        async with connected(opener, config) as conn:
            st = conn.open_stream(HEADERS)
            await st.receive_response()
            wrapped[0].stuck = True
            start = trio.current_time()
            with pytest.raises(SonicConnectionError, match="stalled"):
                await st.send_data(b"x" * 10)
                await st.receive_data()
            assert trio.current_time() - start == pytest.approx(3, abs=0.1)


async def test_connect_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def never() -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    conn = Connection(never, ConnectionConfig(connect_timeout=4))
    async with trio.open_nursery() as nursery:
        with pytest.raises(SonicTimeout, match="connecting"):
            await nursery.start(conn.run)


async def test_missing_server_settings_is_a_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        raise AssertionError("no request expected")

    async with fake_server(handler) as server:
        server.send_settings = False  # the "server" accepts the socket and says nothing
        conn = Connection(server.opener, ConnectionConfig(connect_timeout=4))
        async with trio.open_nursery() as nursery:
            with pytest.raises(SonicTimeout, match="SETTINGS"):
                await nursery.start(conn.run)


async def test_max_concurrent_streams_is_read_from_server(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    async with (
        fake_server(handler, max_concurrent_streams=2) as server,
        connected(server.opener) as conn,
    ):
        assert conn.max_streams == 2
        a = conn.open_stream(HEADERS)
        b = conn.open_stream(HEADERS)
        await a.receive_response()
        await b.receive_response()
        assert not conn.has_capacity()
        a.release()
        assert conn.has_capacity()


async def test_streams_blocked_on_the_connection_window_all_get_through(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Stream windows are large, the connection window is HTTP/2's 64 KiB: ten streams of
    # 20 KB queue on the shared window, are woken one at a time, and all finish.
    received: dict[int, int] = {}

    async def handler(st: ServerStream) -> None:
        await st.respond()
        total = 0
        while chunk := await st.receive_chunk():
            total += len(chunk)
            await trio.sleep(0.01)  # a slow reader: the window opens bit by bit
        received[st.stream_id] = total
        await st.end()

    async with (
        fake_server(handler, initial_window=1 << 20, auto_ack=False) as server,
        connected(server.opener) as conn,
    ):
        streams = [conn.open_stream(HEADERS) for _ in range(10)]
        async with trio.open_nursery() as nursery:
            for st in streams:
                nursery.start_soon(partial(st.send_data, b"z" * 20_000, end_stream=True))
        for st in streams:
            await read_all(st)
    assert sorted(received.values()) == [20_000] * 10
