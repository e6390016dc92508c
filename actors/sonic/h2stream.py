"""One HTTP/2 request stream: its own state and its trio-facing API, apart from its carrier.

An :class:`H2Stream` knows nothing of the connection carrying it. It reaches the shared h2
state machine and socket only through a :class:`StreamLink` handed to it (which
:class:`~actors.sonic.connection.Connection` implements), and the connection's reader reports
this stream's events to it through its ``on_*`` methods, :meth:`H2Stream.fail` and
:meth:`H2Stream.wake_sender`.

Inbound DATA waits in a per-stream queue and is acknowledged through the link only when the
consumer takes it, so a stream whose reader stalls throttles only its own sender. Sending
honours the stream's and the connection's flow-control windows without holding any lock;
streams blocked on the shared connection window queue FIFO and are woken one at a time.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import trio
from h2.errors import ErrorCodes

from actors.errors import LocalProtocolError, SonicConnectionError, SonicError

__all__ = ["H2Stream", "StreamLink"]


class StreamLink(Protocol):
    """What a stream needs of the connection carrying it.

    Everything but the ``wait_*`` methods is synchronous: a stream checks and acts with no
    await in between (trio runs one task at a time), so no lock is needed.
    """

    def send_some(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> int | None:
        """Queue as much of ``data`` as both flow-control windows and the frame size allow.

        END_STREAM goes with it when ``end_stream`` and all of ``data`` fits (for empty
        ``data``, an empty DATA frame carries it). Returns the bytes queued (0 for empty
        ``data``, or when a window is empty), or ``None`` when h2 holds the stream closed.
        Raises the connection's error once it failed, :class:`LocalProtocolError` for any
        other refusal by h2.
        """
        ...

    async def wait_send_window(self, stream_lot: trio.lowlevel.ParkingLot) -> None:
        """Wait after :meth:`send_some` queued nothing of non-empty data.

        Parks FIFO for the shared connection window when that is empty, else hands that
        window on to the next stream in line and parks in ``stream_lot``, which the stream
        unparks when its own window grows (:meth:`H2Stream.wake_sender`) or it closes.
        """
        ...

    def pass_window(self) -> None:
        """Wake the next stream waiting for the connection window, if it has room."""
        ...

    async def wait_writable(self) -> None:
        """Checkpoint; wait while the connection's outgoing buffer is above its high-water
        mark. Raises the connection's error if it failed."""
        ...

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Give ``size`` consumed bytes of window back to the server."""
        ...

    def reset_stream(self, stream_id: int, error_code: ErrorCodes) -> None:
        """Send RST_STREAM (no-op if the stream or the connection is already closed)."""
        ...

    def release_stream(self, stream_id: int, unread: int) -> None:
        """Forget the stream, giving back the window of ``unread`` bytes never consumed."""
        ...


class H2Stream:
    """One HTTP/2 request stream carried by a :class:`StreamLink` (used by :mod:`.stream`).

    Inbound DATA waits in a queue until :meth:`receive_data` takes it; only then is it
    acknowledged, so this stream's window alone throttles the server.
    """

    def __init__(self, link: StreamLink, stream_id: int) -> None:
        self._link = link
        self.stream_id = stream_id
        self._inbound: deque[tuple[bytes, int]] = deque()
        self._response: tuple[int, tuple[tuple[str, str], ...]] | None = None
        self._remote_ended = False
        self._local_ended = False
        self._send_closed: SonicError | None = None
        self._error: SonicError | None = None
        self._released = False
        self._lot = trio.lowlevel.ParkingLot()
        self._window_lot = trio.lowlevel.ParkingLot()

    # --- events, reported synchronously by the connection's reader ---

    def on_response(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        """The response headers arrived."""
        self._response = (status, headers)
        self._lot.unpark_all()

    def on_data(self, data: bytes, flow_controlled_length: int) -> None:
        """A DATA frame arrived (acknowledged only once :meth:`receive_data` takes it)."""
        self._inbound.append((data, flow_controlled_length))
        self._lot.unpark_all()

    def on_end(self) -> None:
        """The server ended its side (END_STREAM)."""
        self._remote_ended = True
        self._lot.unpark_all()

    def fail(self, error: SonicError) -> None:
        """The stream was reset, refused or lost with its connection: sending now raises
        ``error``, and so does reading once the queue is drained, unless the response
        was already complete."""
        # A reset after a complete response (RST_STREAM NO_ERROR, RFC 9113 §8.1) only
        # tells us to stop sending; the response itself is intact.
        self._send_closed = error
        if not self._remote_ended:
            self._error = error
        self._lot.unpark_all()
        self._window_lot.unpark_all()

    def wake_sender(self) -> None:
        """This stream's send window may have grown."""
        self._window_lot.unpark_all()

    # --- the consumer's API ---

    @property
    def remote_ended(self) -> bool:
        """The server sent END_STREAM (whatever is queued is all there is)."""
        return self._remote_ended

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet taken by the consumer (bounded by the stream window)."""
        return sum(flow for _, flow in self._inbound)

    async def receive_response(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        """Wait for the response headers: ``(status, headers)`` with lowercase names."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._response is None:
            if self._error is not None:
                raise self._error
            if self._remote_ended:
                raise SonicConnectionError(f"stream {self.stream_id} ended without a response")
            await self._lot.park()
        return self._response

    async def receive_data(self) -> bytes:
        """Next chunk of the response body; ``b""`` once the server ended the stream.

        Raises the stream's error (reset, connection lost) once queued data is consumed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._inbound:
                data, flow = self._inbound.popleft()
                self._link.acknowledge(self.stream_id, flow)
                if data:  # a padding-only frame carries no body bytes
                    return data
                continue
            if self._error is not None:
                raise self._error
            if self._remote_ended:
                return b""
            await self._lot.park()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` (any size) as DATA frames, honouring flow control.

        Waits while this stream's (or the connection's) send window is empty, and while the
        connection's outgoing buffer is above its high-water mark; never holds a lock.
        """
        link = self._link
        # One audio event is far below one frame and the window: a single pass, no slicing.
        view: bytes | memoryview = data
        try:
            while True:
                if self._released or self._send_closed is not None or self._local_ended:
                    self._check_sendable()
                sent = link.send_some(self.stream_id, view, end_stream)
                if sent is None:
                    raise self._send_closed or SonicConnectionError(
                        f"stream {self.stream_id} was closed by the server"
                    )
                if sent == len(view):
                    if end_stream:
                        self._local_ended = True
                    break
                if sent:
                    view = memoryview(view)[sent:]
                else:
                    await link.wait_send_window(self._window_lot)
        finally:
            # Whatever happened, a sender woken for the connection window hands it on.
            link.pass_window()
        await link.wait_writable()

    async def end_stream(self) -> None:
        """Half-close our side (an empty DATA frame with END_STREAM)."""
        await self.send_data(b"", end_stream=True)

    def _check_sendable(self) -> None:
        if self._released:
            raise LocalProtocolError(f"stream {self.stream_id} was already released")
        if self._send_closed is not None:
            raise self._send_closed
        if self._local_ended:
            raise LocalProtocolError(f"stream {self.stream_id} already ended its request body")

    def reset(self, error_code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        """Abort the stream with RST_STREAM (no-op if it is already closed)."""
        if self._released or self._send_closed is not None:
            return
        if self._local_ended and self._remote_ended:
            return
        self._send_closed = SonicConnectionError(f"stream {self.stream_id} was reset by us")
        self._link.reset_stream(self.stream_id, error_code)

    def release(self) -> None:
        """Forget the stream: reset it if still open, give back unread window, free the slot."""
        if self._released:
            return
        self.reset()
        self._released = True
        unread = self.buffered_bytes
        self._inbound.clear()
        self._link.release_stream(self.stream_id, unread)
        self._lot.unpark_all()
        self._window_lot.unpark_all()
