"""One HTTP/2 connection to Bedrock, carrying many Sonic streams at once.

A :class:`Connection` owns one TLS socket, one :class:`h2.connection.H2Connection` and the
:class:`~actors.sonic.h2stream.H2Stream` of each request it carries. A stream knows nothing
of its connection: it calls the connection's :class:`~actors.sonic.h2stream.StreamLink`
methods, and the connection reports the stream's events to it. Its tasks (in its own
nursery, under :meth:`Connection.run`):

- the *reader* feeds socket bytes to h2 and routes events to the streams;
- the *writer* is the only task that writes to the socket. Everyone else mutates h2 state
  synchronously (no lock, no await: trio runs one task at a time), moves the bytes h2
  produced into an outgoing buffer and wakes the writer, which sends the whole buffer in one
  write bounded by ``write_timeout``. A sender waits only when that buffer is above its
  high-water mark or when *its own* stream's flow-control window is empty, so one stream
  never holds up another, and one stalled socket is detected instead of hanging everyone;
- the *keep-alive* sends a PING when nothing arrived for ``keepalive_interval`` and kills
  the connection if still nothing arrives within ``keepalive_timeout``.

Inbound flow control: received DATA is queued per stream and acknowledged to h2 only when
the stream's consumer takes it, so a stream whose consumer stops reading stops its own
sender. The connection-level window is sized to ``stream_window * max_streams``, so the
sum of every stream's unread data never exhausts it and a stalled stream cannot starve its
siblings.

GOAWAY: streams above ``last_stream_id`` fail at once (retryable, they were not
processed); the others run to completion, no new stream is opened, and the connection
closes when the last one is released. h2 4.x closes its state machine on a received GOAWAY
(python-hyper/h2#1181), which would kill the running streams, so
:class:`~actors.sonic.transport.GracefulH2Connection` overrides that frame handler.

This module runs past 400 lines on purpose: the reader, the writer, the keep-alive and the
stream link all act synchronously on one h2 state machine and one outgoing buffer, and a
split would put a call between every audio frame and that state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import h2.config
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes

from actors.errors import (
    LocalProtocolError,
    SonicConnectionError,
    SonicError,
    SonicStreamRefused,
    SonicStreamReset,
    SonicTimeout,
)
from actors.sonic.h2stream import H2Stream
from actors.sonic.transport import (
    ConnectionConfig,
    GracefulH2Connection,
    Opener,
    open_tls_stream,
)

__all__ = ["Connection", "ConnectionConfig", "H2Stream", "Opener", "open_tls_stream"]

logger = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
_DEFAULT_WINDOW = 65535


class Connection:
    """One HTTP/2 connection; see the module docstring for the task structure.

    Run it with ``await nursery.start(connection.run)``: ``start`` returns once the server's
    SETTINGS arrived (or raises :class:`SonicTimeout` / :class:`SonicConnectionError`), and
    ``run`` then returns quietly when the connection ends, whatever the reason; its streams
    see the reason as :class:`SonicConnectionError`. ``on_change`` is called (synchronously)
    whenever capacity may have changed: a stream released, settings, GOAWAY, death.

    The pool uses the capacity properties, :meth:`open_stream`, :meth:`close` and
    :meth:`statistics`; the streams, and only they, use the methods of
    :class:`~actors.sonic.h2stream.StreamLink`.
    """

    def __init__(
        self,
        opener: Opener,
        config: ConnectionConfig,
        *,
        label: str = "bedrock",
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._opener = opener
        self._config = config
        self.label = label
        self._on_change = on_change
        h2_config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self._h2 = GracefulH2Connection(config=h2_config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: config.stream_window,
            },
        )
        self._streams: dict[int, H2Stream] = {}
        self._stream: trio.abc.Stream | None = None
        self._outbuf = bytearray()
        self._inflight = 0
        self._write_lot = trio.lowlevel.ParkingLot()
        self._conn_window_lot = trio.lowlevel.ParkingLot()
        self._drain_lot = trio.lowlevel.ParkingLot()
        self._ready = trio.Event()  # the server's SETTINGS arrived, or the connection failed
        self._got_settings = False
        self._finished = trio.Event()
        self._started = False
        self._goaway_last_id: int | None = None
        self._closing = False
        self._error: SonicError | None = None
        self._last_received = 0.0
        self.streams_opened = 0
        self.bytes_written = 0
        self.bytes_received = 0

    # --- state for the pool ---

    @property
    def alive(self) -> bool:
        """The connection still runs (it may be draining after GOAWAY)."""
        return self._started and self._error is None and not self._finished.is_set()

    @property
    def accepting(self) -> bool:
        """New streams may be opened here (alive, no GOAWAY, not closing)."""
        return self.alive and self._goaway_last_id is None and not self._closing

    @property
    def max_streams(self) -> int:
        """Streams allowed at once: the server's MAX_CONCURRENT_STREAMS capped by ours."""
        return min(self._h2.remote_settings.max_concurrent_streams, self._config.max_streams)

    @property
    def active_streams(self) -> int:
        """Streams opened here and not yet released."""
        return len(self._streams)

    def has_capacity(self) -> bool:
        """Whether :meth:`open_stream` would succeed now."""
        return self.accepting and len(self._streams) < self.max_streams

    # --- opening streams ---

    def open_stream(self, headers: Sequence[tuple[str, str]]) -> H2Stream:
        """Send a request's HEADERS (without END_STREAM) on a new stream.

        Synchronous, so a caller that checked :meth:`has_capacity` cannot lose the slot.
        """
        if not self.has_capacity():
            raise SonicConnectionError(f"connection {self.label} takes no new stream")
        try:
            stream_id = self._h2.get_next_available_stream_id()
            stream = H2Stream(self, stream_id)
            self._streams[stream_id] = stream
            self._h2.send_headers(stream_id, list(headers), end_stream=False)
        except h2.exceptions.NoAvailableStreamIDError:
            self._closing = True
            self._on_change()
            raise SonicConnectionError(f"connection {self.label} ran out of stream ids") from None
        except h2.exceptions.TooManyStreamsError:
            self._streams.pop(stream_id, None)
            raise SonicConnectionError(f"connection {self.label} is full") from None
        self.streams_opened += 1
        self._flush()
        return stream

    # --- the StreamLink its streams use (synchronous: no await between check and act) ---

    def send_some(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> int | None:
        """Queue what the windows allow of ``data`` (see :meth:`.StreamLink.send_some`)."""
        if self._error is not None:
            raise self._error
        h2_conn = self._h2
        size = len(data)
        try:
            if size:
                window = h2_conn.local_flow_control_window(stream_id)
                frame = h2_conn.max_outbound_frame_size
                if window < size:
                    size = window if window < frame else frame
                elif frame < size:
                    size = frame
                if size <= 0:
                    return 0
                last = size == len(data)
                h2_conn.send_data(stream_id, data if last else data[:size], end_stream and last)
            elif end_stream:
                h2_conn.end_stream(stream_id)
            else:
                return 0
        except h2.exceptions.StreamClosedError:
            return None
        except h2.exceptions.H2Error as exc:
            raise LocalProtocolError(f"stream {stream_id}: {exc}") from exc
        self._flush()
        return size

    async def wait_send_window(self, stream_lot: trio.lowlevel.ParkingLot) -> None:
        """Wait for a send window (see :meth:`.StreamLink.wait_send_window`)."""
        if self._h2.outbound_flow_control_window <= 0:
            # Blocked by the shared window: queue FIFO, woken one at a time (no herd).
            await self._conn_window_lot.park()
        else:
            self.pass_window()
            await stream_lot.park()

    def pass_window(self) -> None:
        """Wake the next stream waiting for the connection window, if it has room."""
        if self._conn_window_lot and self._h2.outbound_flow_control_window > 0:
            self._conn_window_lot.unpark()

    async def wait_writable(self) -> None:
        """Wait while the outgoing buffer is above its high-water mark (always a checkpoint)."""
        if len(self._outbuf) + self._inflight <= self._config.write_buffer_high:
            await trio.lowlevel.checkpoint()
            return
        while (
            self._error is None
            and len(self._outbuf) + self._inflight > self._config.write_buffer_high
        ):
            await self._drain_lot.park()
        if self._error is not None:
            raise self._error

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Give ``size`` consumed bytes of window back to the server."""
        if size and self._error is None:
            self._h2.acknowledge_received_data(size, stream_id)
            self._flush()

    def reset_stream(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Send RST_STREAM (no-op if already closed here or in h2's eyes)."""
        if self._error is not None:
            return
        try:
            self._h2.reset_stream(stream_id, error_code)
        except h2.exceptions.H2Error:
            return  # already closed in h2's eyes: nothing to reset
        self._flush()

    def release_stream(self, stream_id: int, unread: int) -> None:
        """Forget a stream, returning its ``unread`` window; may finish a draining connection."""
        self._streams.pop(stream_id, None)
        self.acknowledge(stream_id, unread)
        if (self._goaway_last_id is not None or self._closing) and not self._streams:
            self._finished.set()
        self._on_change()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._outbuf += data
            self._write_lot.unpark_all()

    # --- lifecycle ---

    def close(self) -> None:
        """Retire the connection: no new streams; GOAWAY and close once streams are gone."""
        self._closing = True
        if not self._streams:
            self._finished.set()
        self._on_change()

    def _fail(self, error: SonicError, *, log: bool = True) -> None:
        if self._error is None:
            self._error = error
            if log:
                logger.info("sonic connection %s failed: %s", self.label, error)
        for stream in list(self._streams.values()):
            stream.fail(error)
        self._finished.set()
        self._ready.set()
        self._drain_lot.unpark_all()
        self._conn_window_lot.unpark_all()
        self._on_change()

    async def run(
        self, *, task_status: trio.TaskStatus[Connection] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, then serve the connection until it ends (see the class docstring)."""
        deadline = trio.current_time() + self._config.connect_timeout
        try:
            with trio.fail_after(self._config.connect_timeout):
                self._stream = await self._opener()
        except trio.TooSlowError:
            raise SonicTimeout(
                f"connecting to {self.label} took over {self._config.connect_timeout}s"
            ) from None
        self._last_received = trio.current_time()
        try:
            self._h2.initiate_connection()
            extra = self._config.stream_window * self._config.max_streams - _DEFAULT_WINDOW
            if extra > 0:
                self._h2.increment_flow_control_window(min(extra, 2**31 - 1 - _DEFAULT_WINDOW))
            self._flush()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._read_loop)
                with trio.move_on_at(deadline):
                    await self._ready.wait()
                if self._error is None and not self._got_settings:
                    self._fail(
                        SonicTimeout(f"{self.label} sent no HTTP/2 SETTINGS within the timeout")
                    )
                if self._error is None:
                    self._started = True
                    task_status.started(self)
                    self._on_change()
                    nursery.start_soon(self._keepalive_loop)
                    await self._finished.wait()
                    if self._error is None:
                        await self._send_goaway()
                nursery.cancel_scope.cancel()
        finally:
            self._finished.set()
            if self._error is None:  # a normal close: anything still holding a stream fails
                self._fail(SonicConnectionError(f"connection {self.label} closed"), log=False)
            with trio.move_on_after(self._config.close_timeout, shield=True):
                await self._stream.aclose()
        if not self._started:
            assert self._error is not None  # set by the finally block above
            raise self._error

    async def _send_goaway(self) -> None:
        try:
            self._h2.close_connection()
        except h2.exceptions.H2Error:
            return
        self._flush()
        with trio.move_on_after(self._config.close_timeout, shield=True):
            while self._outbuf or self._inflight:
                if self._error is not None:
                    return
                await self._drain_lot.park()

    async def _write_loop(self) -> None:
        assert self._stream is not None
        try:
            while True:
                while not self._outbuf:
                    await self._write_lot.park()
                # Let other senders add their frames first: fewer, larger TLS records and
                # syscalls. One scheduling round under load; with paced traffic (audio every
                # 20-32 ms per call) a short delay batches many calls' frames per write.
                if self._config.write_coalesce_delay > 0 and len(self._outbuf) < 16384:
                    await trio.sleep(self._config.write_coalesce_delay)
                else:
                    await trio.lowlevel.checkpoint()
                data, self._outbuf = self._outbuf, bytearray()
                self._inflight = len(data)
                with trio.fail_after(self._config.write_timeout):
                    await self._stream.send_all(data)
                self.bytes_written += len(data)
                self._inflight = 0
                self._drain_lot.unpark_all()
        except trio.TooSlowError:
            self._fail(
                SonicConnectionError(
                    f"writing to {self.label} stalled for {self._config.write_timeout}s"
                )
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(SonicConnectionError(f"connection {self.label} lost while writing: {exc}"))

    async def _read_loop(self) -> None:
        assert self._stream is not None
        try:
            while True:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    raise SonicConnectionError(f"{self.label} closed the connection")
                self._last_received = trio.current_time()
                self.bytes_received += len(data)
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.H2Error as exc:
                    self._flush()  # h2 may have queued a GOAWAY explaining why
                    raise SonicConnectionError(
                        f"HTTP/2 protocol error from {self.label}: {exc}"
                    ) from exc
                for event in events:
                    self._handle(event)
                self._flush()
        except SonicError as exc:
            self._fail(exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(SonicConnectionError(f"connection {self.label} lost: {exc}"))

    async def _keepalive_loop(self) -> None:
        interval = self._config.keepalive_interval
        if interval is None:
            return
        counter = 0
        while True:
            await trio.sleep_until(self._last_received + interval)
            if trio.current_time() < self._last_received + interval:
                continue
            counter += 1
            received_before = self.bytes_received
            self._h2.ping(counter.to_bytes(8, "big"))
            self._flush()
            await trio.sleep(self._config.keepalive_timeout)
            if self.bytes_received == received_before:  # not even the PING ack came back
                self._fail(
                    SonicConnectionError(
                        f"{self.label} did not answer a PING within "
                        f"{self._config.keepalive_timeout}s"
                    )
                )
                return

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                # Data for a stream we already released: hand the window straight back.
                self.acknowledge(event.stream_id, event.flow_controlled_length)
            else:
                stream.on_data(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                headers = tuple((str(k), str(v)) for k, v in event.headers)
                status = int(dict(headers).get(":status", "0"))
                stream.on_response(status, headers)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.on_end()
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None and event.remote_reset:
                code = _code_name(event.error_code)
                kind = (
                    SonicStreamRefused
                    if event.error_code == ErrorCodes.REFUSED_STREAM
                    else SonicStreamReset
                )
                stream.fail(kind(f"stream {event.stream_id} reset by server ({code})"))
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                self._conn_window_lot.unpark()  # the first in line; it passes the window on
            elif (stream := self._streams.get(event.stream_id)) is not None:
                stream.wake_sender()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._got_settings = True
            self._ready.set()
            for stream in self._streams.values():
                stream.wake_sender()
            self._conn_window_lot.unpark_all()
            self._on_change()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event.last_stream_id or 0, event.error_code)

    def _on_goaway(self, last_stream_id: int, error_code: ErrorCodes | int | None) -> None:
        if self._goaway_last_id is None or last_stream_id < self._goaway_last_id:
            self._goaway_last_id = last_stream_id
        code = _code_name(error_code)
        logger.info(
            "sonic connection %s got GOAWAY (%s, last stream %d)", self.label, code, last_stream_id
        )
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last_stream_id:
                stream.fail(
                    SonicStreamRefused(
                        f"stream {stream_id} refused by GOAWAY ({code}); it was not processed"
                    )
                )
        if not self._streams:
            self._finished.set()
        self._on_change()

    def statistics(self) -> dict[str, int | bool]:
        """Counters for metrics and tests."""
        return {
            "alive": self.alive,
            "accepting": self.accepting,
            "active_streams": len(self._streams),
            "max_streams": self.max_streams,
            "streams_opened": self.streams_opened,
            "bytes_written": self.bytes_written,
            "bytes_received": self.bytes_received,
            "write_buffer": len(self._outbuf) + self._inflight,
        }


def _code_name(code: ErrorCodes | int | None) -> str:
    if isinstance(code, ErrorCodes):
        return code.name
    return str(code)
