"""One HTTP/2 connection of the emulator: h2 on a TLS stream, one task per Sonic stream.

A reader task feeds h2 and routes events to streams; a writer task is the only one that
writes the socket (stream tasks only mutate h2 and wake it), so cancelling a stream can
never leave half a TLS record. Flow control is honest: received data is acknowledged when
the stream's session takes it, and sending waits for the client's window.

The connection asks its :class:`ConnectionHost` (the :class:`~devkit.emulator.server.Emulator`)
whether to admit each new stream and reports counters to it; it knows nothing of listening,
TLS set-up or how admission is decided.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from contextlib import suppress
from typing import Protocol

import attrs
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from devkit.emulator.config import EmulatorConfig, StreamPlan
from devkit.emulator.session import StreamSession
from devkit.emulator.sigcheck import RequestAuth
from devkit.emulator.stats import Counters
from devkit.emulator.voice import CachedVoices

__all__ = ["ConnectionHost", "EmulatorConnection", "Refusal"]

_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_log = logging.getLogger(__name__)


class ConnectionHost(Protocol):
    """What a connection needs from the emulator that accepted it."""

    config: EmulatorConfig
    voices: CachedVoices

    @property
    def counters(self) -> Counters:
        """The live counters."""
        ...

    def admit(self, headers: dict[str, str]) -> tuple[RequestAuth, StreamPlan] | Refusal:
        """Decide a new stream's fate from its request headers."""
        ...

    def stream_finished(self) -> None:
        """One admitted stream ended."""
        ...


class _StreamGone(Exception):
    """The HTTP/2 stream was reset or closed under a session."""


@attrs.frozen
class Refusal:
    """Why a new stream is refused: the HTTP status and error type Bedrock would send."""

    status: int
    error_type: str
    message: str


class _Port:
    """The :class:`~devkit.emulator.session.StreamPort` of one HTTP/2 stream."""

    def __init__(self, conn: EmulatorConnection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, int] | None](math.inf)
        self.scope = trio.CancelScope()
        self.remote_ended = False
        self.local_ended = False
        self.was_reset = False

    def feed(self, data: bytes, flow_length: int) -> None:
        self._send.send_nowait((data, flow_length))

    def feed_end(self) -> None:
        self.remote_ended = True
        self._send.send_nowait(None)

    def on_reset(self) -> None:
        self.was_reset = True
        self.scope.cancel()

    async def receive(self) -> bytes | None:
        item = await self._recv.receive()
        if item is None:
            return None
        data, flow_length = item
        # Acknowledge when the session takes the data: the client's window tracks our backlog.
        self._conn.acknowledge(self.stream_id, flow_length)
        return data

    async def send(self, data: bytes) -> None:
        conn, view = self._conn, memoryview(data)
        while view:
            if self.was_reset or self.local_ended:
                raise _StreamGone()
            try:
                window = min(
                    conn.h2.local_flow_control_window(self.stream_id),
                    conn.h2.max_outbound_frame_size,
                )
                if window <= 0:
                    await conn.wait_window()
                    continue
                size = min(window, len(view))
                conn.h2.send_data(self.stream_id, view[:size].tobytes())
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
                raise _StreamGone() from exc
            view = view[size:]
            conn.wake()

    def end(self) -> None:
        if not (self.was_reset or self.local_ended):
            self.local_ended = True
            with suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._conn.h2.end_stream(self.stream_id)
            self._conn.wake()

    def reset(self, code: ErrorCodes = ErrorCodes.INTERNAL_ERROR) -> None:
        if not self.was_reset:
            self.was_reset = True
            with suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self._conn.h2.reset_stream(self.stream_id, error_code=code)
            self._conn.wake()

    def goaway(self) -> None:
        self._conn.abort()


class EmulatorConnection:
    """One HTTP/2 connection: reader, writer and the streams' tasks."""

    def __init__(self, emulator: ConnectionHost, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self._emulator = emulator
        self._stream = stream
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self._ports: dict[int, _Port] = {}
        self._raw: list[bytes] = []
        self._wakeup = trio.Event()
        self._window = trio.Event()
        self._closing = False
        self._goaway_last: int | None = None
        self._accepted = 0
        self._nursery: trio.Nursery | None = None

    # --- plumbing used by ports ---------------------------------------------------------

    def wake(self) -> None:
        self._wakeup.set()

    async def wait_window(self) -> None:
        await self._window.wait()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            with suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.h2.acknowledge_received_data(size, stream_id)
            self.wake()

    def abort(self) -> None:
        """GOAWAY and close the connection, killing its running streams."""
        if not self._closing:
            self._closing = True
            self.h2.close_connection(error_code=ErrorCodes.NO_ERROR)
            self.wake()

    def _graceful_goaway(self) -> None:
        """GOAWAY without closing: running streams finish, later ones are refused."""
        if self._goaway_last is None and not self._closing:
            frame = GoAwayFrame(0)
            frame.last_stream_id = self.h2.highest_inbound_stream_id
            frame.error_code = ErrorCodes.NO_ERROR
            self._goaway_last = frame.last_stream_id
            self._raw.append(frame.serialize())
            self._emulator.counters.faults_injected += 1
            self._maybe_close()
            self.wake()

    def _maybe_close(self) -> None:
        if self._goaway_last is not None and not self._ports:
            self._closing = True
            self.wake()

    # --- tasks ----------------------------------------------------------------------------

    async def run(self) -> None:
        config = self._emulator.config
        self.h2.initiate_connection()
        limit = config.max_concurrent_streams
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: config.receive_window,
            }
        )
        # The connection window starts at 64 KiB whatever the settings say (RFC 9113 §6.9.2):
        # widen it so many streams can have their windows' worth in flight at once.
        connection_window = min(2**31 - 1, config.receive_window * max(1, limit))
        if connection_window > 65_535:
            self.h2.increment_flow_control_window(connection_window - 65_535)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            if self._emulator.config.goaway_after_seconds is not None:
                nursery.start_soon(self._goaway_timer, self._emulator.config.goaway_after_seconds)
            self.wake()
            await self._reader()
            nursery.cancel_scope.cancel()

    async def _goaway_timer(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self._graceful_goaway()

    async def _writer(self) -> None:
        try:
            while True:
                self._wakeup = trio.Event()
                data = self.h2.data_to_send()
                if self._raw:
                    data += b"".join(self._raw)
                    self._raw.clear()
                if data:
                    await self._stream.send_all(data)
                    continue
                if self._closing:
                    break
                await self._wakeup.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _reader(self) -> None:
        while True:
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                _log.warning("emulator: HTTP/2 protocol error from client, closing: %s", exc)
                self._closing = True  # h2 queued a GOAWAY; the writer flushes it and stops
                self.wake()
                await trio.sleep_forever()
            for event in events:
                self._dispatch(event)
            self.wake()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            if self._goaway_last is not None and sid > self._goaway_last:
                self.h2.reset_stream(sid, error_code=ErrorCodes.REFUSED_STREAM)
                return
            port = _Port(self, sid)
            self._ports[sid] = port
            headers = [(bytes(k), bytes(v)) for k, v in event.headers or ()]
            if event.stream_ended is not None:
                port.feed_end()
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_stream, port, headers)
        elif isinstance(event, h2.events.DataReceived):
            target = self._ports.get(event.stream_id)
            if target is not None and not target.was_reset:
                target.feed(bytes(event.data or b""), event.flow_controlled_length or 0)
            else:
                self.acknowledge(event.stream_id, event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.StreamEnded):
            target = self._ports.get(event.stream_id)
            if target is not None:
                target.feed_end()
        elif isinstance(event, h2.events.StreamReset):
            target = self._ports.get(event.stream_id)
            if target is not None:
                target.on_reset()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._window.set()
            self._window = trio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._closing = True
            self.wake()

    async def _serve_stream(self, port: _Port, raw_headers: list[tuple[bytes, bytes]]) -> None:
        counters = self._emulator.counters
        try:
            headers = {k.decode("ascii").lower(): v.decode("utf-8") for k, v in raw_headers}
        except UnicodeDecodeError:
            headers = {}
        verdict = self._emulator.admit(headers)
        self._accepted += 1
        if isinstance(verdict, Refusal):
            counters.streams_refused += 1
            self._respond_error(port, verdict)
        else:
            auth, plan = verdict
            try:
                self.h2.send_headers(
                    port.stream_id,
                    [
                        (":status", "200"),
                        ("content-type", "application/vnd.amazon.eventstream"),
                        ("x-amzn-requestid", str(uuid.uuid4())),
                    ],
                )
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                # The connection was closed (a GOAWAY fault on another stream) or the
                # stream reset before it was answered: nothing left to serve.
                self._ports.pop(port.stream_id, None)
                return
            self.wake()
            counters.streams_opened += 1
            counters.streams_active += 1
            session = StreamSession(
                port=port,
                auth=auth,
                config=self._emulator.config,
                plan=plan,
                counters=counters,
                voices=self._emulator.voices,
                wall_ms=lambda: int(time.time() * 1000),
            )
            try:
                with port.scope:
                    await session.run()
            except* _StreamGone:
                pass
            finally:
                self._emulator.stream_finished()
            if session.completed:
                counters.streams_completed += 1
        # Our side is done: tell a client still sending to stop (RFC 9113 §8.1).
        if port.local_ended and not port.remote_ended and not port.was_reset:
            port.reset(ErrorCodes.NO_ERROR)
        self._ports.pop(port.stream_id, None)
        limit = self._emulator.config.goaway_after_streams
        if limit and self._accepted >= limit:
            self._graceful_goaway()
        self._maybe_close()

    def _respond_error(self, port: _Port, refusal: Refusal) -> None:
        body = json.dumps({"message": refusal.message}).encode()
        try:
            self.h2.send_headers(
                port.stream_id,
                [
                    (":status", str(refusal.status)),
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("x-amzn-requestid", str(uuid.uuid4())),
                    ("x-amzn-errortype", refusal.error_type + _CORAL),
                ],
            )
            # A JSON error body is tiny; it always fits the initial 64 KiB window.
            self.h2.send_data(port.stream_id, body, end_stream=True)
            port.local_ended = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.wake()
