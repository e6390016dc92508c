"""One HTTP/2 request stream of a :class:`~actors.sonic.connection.Connection`.

Inbound DATA waits in a per-stream queue and is acknowledged to h2 only when the consumer
takes it, so a stream whose reader stalls throttles only its own sender. Sending honours
the stream's and the connection's flow-control windows without holding any lock; streams
blocked on the shared connection window queue FIFO and are woken one at a time.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import h2.exceptions
import trio
from h2.errors import ErrorCodes

from actors.errors import LocalProtocolError, SonicConnectionError, SonicError

if TYPE_CHECKING:
    from actors.sonic.connection import Connection

__all__ = ["H2Stream"]


class H2Stream:
    """One HTTP/2 request stream on a :class:`Connection` (used by :mod:`.stream`).

    Inbound DATA waits in a queue until :meth:`receive_data` takes it; only then is it
    acknowledged, so this stream's window alone throttles the server.
    """

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self._conn = connection
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

    # --- called by the connection (synchronously, from its reader) ---

    def _on_response(self, status: int, headers: tuple[tuple[str, str], ...]) -> None:
        self._response = (status, headers)
        self._lot.unpark_all()

    def _on_data(self, data: bytes, flow_controlled_length: int) -> None:
        self._inbound.append((data, flow_controlled_length))
        self._lot.unpark_all()

    def _on_end(self) -> None:
        self._remote_ended = True
        self._lot.unpark_all()

    def _on_reset(self, error: SonicError) -> None:
        # A reset after a complete response (RST_STREAM NO_ERROR, RFC 9113 §8.1) only
        # tells us to stop sending; the response itself is intact.
        self._send_closed = error
        if not self._remote_ended:
            self._error = error
        self._lot.unpark_all()
        self._window_lot.unpark_all()

    def _fail(self, error: SonicError) -> None:
        self._on_reset(error)

    def _wake_sender(self) -> None:
        self._window_lot.unpark_all()

    # --- public API ---

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
                self._conn._acknowledge(self.stream_id, flow)
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
        conn = self._conn
        size = len(data)
        if (
            0 < size <= conn._h2.max_outbound_frame_size
            and not end_stream
            and self._send_closed is None
            and not self._released
            and not self._local_ended
            and conn._error is None
        ):
            # Fast path (one audio event: far below one frame and the window): no slicing.
            try:
                if size <= conn._h2.local_flow_control_window(self.stream_id):
                    conn._h2.send_data(self.stream_id, data)
                    conn._flush()
                    conn._pass_window()
                    await conn._wait_writable()
                    return
            except h2.exceptions.H2Error:
                pass  # the general path below maps the error
        try:
            await self._send_slow(data, end_stream)
        finally:
            # Whatever happened, a sender woken for the connection window hands it on.
            conn._pass_window()
        await conn._wait_writable()

    async def _send_slow(self, data: bytes, end_stream: bool) -> None:
        conn = self._conn
        view = memoryview(data)
        while True:
            self._check_sendable()
            if not view:
                if end_stream:
                    conn._h2_call(self, conn._h2.end_stream, self.stream_id)
                    self._local_ended = True
                return
            window = conn._send_window(self)
            if window <= 0:
                if conn._h2.outbound_flow_control_window <= 0:
                    # Blocked by the shared window: queue FIFO, woken one at a time (no herd).
                    await conn._conn_window_lot.park()
                else:
                    conn._pass_window()
                    await self._window_lot.park()
                continue
            size = min(window, conn._h2.max_outbound_frame_size, len(view))
            last = size == len(view)
            conn._h2_call(
                self, conn._h2.send_data, self.stream_id, view[:size], end_stream and last
            )
            view = view[size:]
            if last:
                self._local_ended = self._local_ended or end_stream
                return

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
        self._conn._reset(self.stream_id, error_code)

    def release(self) -> None:
        """Forget the stream: reset it if still open, give back unread window, free the slot."""
        if self._released:
            return
        self.reset()
        self._released = True
        unread = self.buffered_bytes
        self._inbound.clear()
        self._conn._release(self, unread)
        self._lot.unpark_all()
        self._window_lot.unpark_all()
