"""A tiny scripted HTTP/2 server for the client's unit tests (no tests of its own here).

It runs over ``trio.testing.memory_stream_pair`` so tests can use the autojump clock. Each
request runs ``handler(ServerStream)`` in the connection's nursery; the handler decides what
to answer. GOAWAY is written as a raw frame so the server can keep serving the streams
below ``last_stream_id`` (h2 itself would close its state machine).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio
import trio.testing
from hyperframe.frame import GoAwayFrame

from actors.sonic.eventstream import Message, MessageDecoder

Handler = Callable[["ServerStream"], Awaitable[None]]


class ServerStream:
    """The server's view of one request stream."""

    def __init__(self, conn: FakeConnection, stream_id: int, headers: dict[str, str]) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.headers = headers
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, int]](1_000_000)
        self.ended = trio.Event()
        self.reset_received = trio.Event()
        self.reset_code: int | None = None
        self._window = trio.lowlevel.ParkingLot()
        self.decoder = MessageDecoder()

    async def receive_chunk(self) -> bytes:
        """Next body chunk (acknowledged now if the server does not auto-ack); b"" at end."""
        data, flow = await self._receive.receive()
        if flow and not self.conn.server.auto_ack:
            self.conn.h2.acknowledge_received_data(flow, self.stream_id)
            await self.conn.flush()
        return data

    async def receive_messages(self) -> list[Message]:
        """Every outer event-stream message until the client's END_STREAM."""
        messages: list[Message] = []
        while chunk := await self.receive_chunk():
            messages.extend(self.decoder.feed(chunk))
        return messages

    async def respond(self, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Send response headers."""
        self.conn.h2.send_headers(self.stream_id, [(":status", str(status)), *headers])
        await self.conn.flush()

    async def send(self, data: bytes, *, end: bool = False) -> None:
        """Send body bytes, waiting for the client's flow-control window."""
        h2c = self.conn.h2
        view = memoryview(data)
        while view:
            window = h2c.local_flow_control_window(self.stream_id)
            if window <= 0:
                await self._window.park()
                continue
            size = min(window, h2c.max_outbound_frame_size, len(view))
            h2c.send_data(self.stream_id, bytes(view[:size]))
            view = view[size:]
            await self.conn.flush()
        if end:
            h2c.end_stream(self.stream_id)
            await self.conn.flush()

    async def end(self) -> None:
        """Send END_STREAM."""
        self.conn.h2.end_stream(self.stream_id)
        await self.conn.flush()

    async def reset(self, code: int = 2) -> None:
        """Send RST_STREAM (default INTERNAL_ERROR)."""
        self.conn.h2.reset_stream(self.stream_id, code)
        await self.conn.flush()


class FakeConnection:
    """One server-side HTTP/2 connection."""

    def __init__(self, server: FakeServer, stream: trio.abc.Stream) -> None:
        self.server = server
        self.stream = stream
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)
        values: dict[h2.settings.SettingCodes, int] = {}
        if server.max_concurrent_streams is not None:
            values[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = server.max_concurrent_streams
        if server.initial_window is not None:
            values[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = server.initial_window
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=values)
        self.streams: dict[int, ServerStream] = {}
        self._send_lock = trio.Lock()
        self.reading = True
        self.pings = 0
        self.closed = trio.Event()

    async def flush(self) -> None:
        """Write what h2 produced."""
        async with self._send_lock:
            data = self.h2.data_to_send()
            if data:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.stream.send_all(data)

    async def goaway(self, last_stream_id: int, error_code: int = 0) -> None:
        """Send GOAWAY as a raw frame (keeps h2's state open for running streams)."""
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code)
        async with self._send_lock:
            await self.stream.send_all(frame.serialize())

    async def drop(self) -> None:
        """Close the socket abruptly."""
        await self.stream.aclose()

    async def run(self) -> None:
        """Serve until the client closes or the test ends."""
        self.h2.initiate_connection()
        await self.flush()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    if not self.reading:
                        await trio.sleep_forever()
                    try:
                        data = await self.stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    if not data:
                        break
                    for event in self.h2.receive_data(data):
                        self._handle(event, nursery)
                    await self.flush()
                nursery.cancel_scope.cancel()
        finally:
            self.closed.set()

    def _handle(self, event: h2.events.Event, nursery: trio.Nursery) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(k): str(v) for k, v in event.headers or ()}
            assert event.stream_id is not None
            st = ServerStream(self, event.stream_id, headers)
            self.streams[event.stream_id] = st
            self.server.requests.append(st)
            nursery.start_soon(self.server.handler, st)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            flow = event.flow_controlled_length or 0
            if self.server.auto_ack and flow:
                self.h2.acknowledge_received_data(flow, event.stream_id)
            st = self.streams[event.stream_id]
            st._send.send_nowait((event.data, flow))
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            st = self.streams[event.stream_id]
            st.ended.set()
            st._send.send_nowait((b"", 0))
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            st = self.streams[event.stream_id]
            st.reset_code = int(event.error_code or 0)
            st.reset_received.set()
            st._send.send_nowait((b"", 0))
        elif isinstance(event, h2.events.WindowUpdated):
            for st in self.streams.values():
                st._window.unpark_all()
        elif isinstance(event, h2.events.PingReceived):
            self.pings += 1


class FakeServer:
    """Accepts connections made through :meth:`opener` and runs ``handler`` per request."""

    def __init__(
        self,
        handler: Handler,
        nursery: trio.Nursery,
        *,
        max_concurrent_streams: int | None = None,
        initial_window: int | None = None,
        auto_ack: bool = True,
    ) -> None:
        self.handler = handler
        self._nursery = nursery
        self.max_concurrent_streams = max_concurrent_streams
        self.initial_window = initial_window
        self.auto_ack = auto_ack
        self.connections: list[FakeConnection] = []
        self.requests: list[ServerStream] = []
        self.send_settings = True

    async def opener(self) -> trio.abc.Stream:
        """The client's opener: a fresh in-memory connection to this server."""
        client, server = trio.testing.memory_stream_pair()
        conn = FakeConnection(self, server)
        self.connections.append(conn)
        if self.send_settings:
            self._nursery.start_soon(conn.run)
        await trio.lowlevel.checkpoint()
        return client


@asynccontextmanager
async def fake_server(handler: Handler, **kwargs: object) -> AsyncIterator[FakeServer]:
    """Run a :class:`FakeServer` for the block."""
    async with trio.open_nursery() as nursery:
        server = FakeServer(handler, nursery, **kwargs)  # type: ignore[arg-type]
        yield server
        nursery.cancel_scope.cancel()
