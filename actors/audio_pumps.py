"""Audio pumps: caller PCM → Sonic ``audioInput`` events, and a bounded outbound queue.

Both are carrier-agnostic: the call channel (``sessions/call.py``) decodes carrier frames to
PCM16 before the in-pump and encodes PCM16 to carrier frames after the out-queue.

Policies, chosen so that memory per call is bounded and the caller loses as little as
possible:

- Caller audio waits in a bounded memory channel while the Sonic stream opens (the prompt
  fetch and the TLS/HTTP/2 setup take a while during a burst of arrivals); when it is full,
  the newest frame is dropped and counted. Its size is configuration (seconds of audio).
- The in-pump sends fixed ~32 ms chunks (reference nova-sonic.md §4) and, when the carrier
  goes quiet, comfort silence at the same cadence so Sonic's idle timeout never ends a call.
- Assistant audio towards the carrier waits in :class:`OutboundQueue`, bounded in bytes: a
  producer that finds it full waits (backpressure up to the Sonic stream's HTTP/2 window,
  which slows Bedrock for this call only). A barge-in clears it at once.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs
import trio

from actors.audio_codec import Rechunker

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class PcmFrame:
    """Caller audio decoded to PCM16, stamped when its carrier frame arrived."""

    pcm: bytes
    arrived: float
    """``time.perf_counter()`` when the carrier frame was read from the socket."""


@attrs.define(eq=False, kw_only=True)
class AudioInStatistics:
    """What the in-pump did (read by the call's metrics and the call-end log line)."""

    chunks_sent: int = 0
    silence_chunks_sent: int = 0
    bytes_sent: int = 0


async def run_audio_in_pump(
    frames: trio.MemoryReceiveChannel[PcmFrame],
    send_chunk: Callable[[bytes], Awaitable[None]],
    *,
    chunk_bytes: int,
    silence_after: float,
    on_latency: Callable[[float], None] | None = None,
    statistics: AudioInStatistics | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forward caller PCM as ``chunk_bytes`` chunks until ``frames`` is closed.

    ``send_chunk`` builds and sends one ``audioInput`` event. When no frame arrives for
    ``silence_after`` seconds, one chunk of silence is sent per chunk duration until audio
    resumes (comfort silence). ``on_latency`` receives, per chunk, the seconds between the
    arrival of the frame that completed it and the moment the event was written: the
    daemon's own added latency on this path.
    """
    stats = statistics if statistics is not None else AudioInStatistics()
    rechunker = Rechunker(chunk_bytes, align=2)
    silence = bytes(chunk_bytes)
    task_status.started()
    while True:
        # Only the wait is under the timeout: a send cancelled half-way would break the
        # stream's signature chain (and lose the chunk), so sends always run to completion.
        frame: PcmFrame | None = None
        with trio.move_on_after(silence_after):
            try:
                frame = await frames.receive()
            except trio.EndOfChannel:
                break
        if frame is not None:
            for chunk in rechunker.push(frame.pcm):
                await send_chunk(chunk)
                stats.chunks_sent += 1
                stats.bytes_sent += len(chunk)
                if on_latency is not None:
                    on_latency(time.perf_counter() - frame.arrived)
            continue
        # The carrier went quiet: top the partial chunk up with silence, then keep feeding.
        pending = rechunker.flush(pad=b"\x00\x00")
        await send_chunk(pending or silence)
        stats.silence_chunks_sent += 1
        stats.bytes_sent += chunk_bytes


@attrs.define(eq=False, kw_only=True)
class OutboundStatistics:
    """What passed through an :class:`OutboundQueue`."""

    items_in: int = 0
    items_out: int = 0
    bytes_dropped: int = 0
    items_dropped: int = 0
    clears: int = 0
    high_water_bytes: int = 0


@attrs.define(eq=False)
class OutboundQueue(Generic[T]):
    """A byte-bounded FIFO of outbound items (carrier messages) with an explicit policy.

    :meth:`put` waits while the queue holds ``max_bytes`` or more (backpressure);
    :meth:`clear` drops everything queued (barge-in) and wakes the producer. One producer
    and one consumer task; items carry their own size.
    """

    max_bytes: int
    statistics: OutboundStatistics = attrs.field(factory=OutboundStatistics)
    _items: collections.deque[tuple[T, int, float]] = attrs.field(factory=collections.deque)
    _bytes: int = 0
    _closed: bool = False
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be sent."""
        return self._bytes

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put(self, item: T, size: int) -> None:
        """Queue ``item`` (``size`` bytes), waiting while the queue is full."""
        while self._bytes >= self.max_bytes and not self._closed:
            await self._changed.wait()
        if self._closed:
            raise trio.ClosedResourceError("outbound queue closed")
        self._items.append((item, size, time.perf_counter()))
        self._bytes += size
        st = self.statistics
        st.items_in += 1
        st.high_water_bytes = max(st.high_water_bytes, self._bytes)
        self._notify()
        await trio.lowlevel.checkpoint()

    async def get(self) -> tuple[T, float]:
        """The oldest item and the ``perf_counter`` time it was queued; waits when empty.

        Raises :class:`trio.EndOfChannel` once the queue is closed and drained.
        """
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._changed.wait()
        item, size, queued = self._items.popleft()
        self._bytes -= size
        self.statistics.items_out += 1
        self._notify()
        await trio.lowlevel.checkpoint()
        return item, queued

    def clear(self) -> int:
        """Drop everything queued; returns the number of items dropped."""
        dropped = len(self._items)
        st = self.statistics
        st.clears += 1
        st.items_dropped += dropped
        st.bytes_dropped += self._bytes
        self._items.clear()
        self._bytes = 0
        self._notify()
        return dropped

    def close(self) -> None:
        """No more items: the consumer ends after the queue drains, a waiting producer fails."""
        self._closed = True
        self._notify()
