"""What carries audio between a call's two halves, and the caller-audio pump into Sonic.

A call (``sessions/call.py``) is a carrier link and a conversation joined by two channels:

- caller audio: a bounded ``trio`` memory channel of :class:`PcmFrame` (carrier link →
  conversation), read by :func:`run_audio_in_pump`, which writes ``audioInput`` events;
- assistant output: an :class:`OutboundQueue` of :data:`AssistantCommand` (conversation →
  carrier link), which the link's writer encodes and sends to the carrier.

Both carry PCM16 at the carrier's sample rate: the carrier link owns the codec.

Policies, chosen so that memory per call is bounded and the caller loses as little as
possible:

- Caller audio waits in its channel while the Sonic stream opens (the prompt fetch and the
  TLS/HTTP/2 setup take a while during a burst of arrivals); when it is full, the newest frame
  is dropped and counted. Its size is configuration (seconds of audio).
- The in-pump sends fixed ~32 ms chunks (reference nova-sonic.md §4) and, when the carrier
  goes quiet, comfort silence at the same cadence so Sonic's idle timeout never ends a call.
- Assistant output waits in the :class:`OutboundQueue`, bounded in seconds of audio: a
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


@attrs.frozen(kw_only=True)
class AssistantAudio:
    """Assistant speech for the caller, PCM16 at the carrier's sample rate."""

    pcm: bytes
    arrived: float
    """``time.perf_counter()`` when the Sonic event carrying it was read."""
    turn: int = 0
    """The assistant turn (answer) it belongs to, numbered by the conversation from 1, so
    the carrier link can tell what the caller heard of each (``0``: not tracked)."""


@attrs.frozen
class AnswerEnded:
    """The assistant finished an answer: send what is left of it, then a playback mark."""

    turn: int = 0
    """The turn that ended (see :attr:`AssistantAudio.turn`)."""


@attrs.frozen
class ClearPlayback:
    """Barge-in: the carrier must drop the audio it has queued for playback, now."""

    through: int = 0
    """The last turn the conversation had started: every turn up to it is over."""


AssistantCommand = AssistantAudio | AnswerEnded | ClearPlayback
"""What the conversation asks of the carrier link."""


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
    """What passed through an :class:`OutboundQueue` (sizes in the producer's unit)."""

    items_in: int = 0
    items_out: int = 0
    size_dropped: float = 0
    items_dropped: int = 0
    clears: int = 0
    """Times :meth:`OutboundQueue.clear` was called (see :meth:`OutboundQueue.get`)."""
    high_water: float = 0


@attrs.define(eq=False)
class OutboundQueue(Generic[T]):
    """A size-bounded FIFO of outbound items with an explicit policy: the channel that
    carries a call's assistant output from the conversation to the carrier link.

    :meth:`put` waits while the queue holds ``capacity`` or more (backpressure);
    :meth:`clear` drops everything queued (barge-in) and wakes the producer. One producer
    and one consumer task; each item carries its own size (seconds of audio for a call).
    """

    capacity: float
    statistics: OutboundStatistics = attrs.field(factory=OutboundStatistics)
    _items: collections.deque[tuple[T, float]] = attrs.field(factory=collections.deque)
    _size: float = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def queued(self) -> float:
        """The size of what waits to be sent."""
        return self._size

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put(self, item: T, size: float) -> None:
        """Queue ``item`` of ``size``, waiting while the queue is full."""
        while self._size >= self.capacity:
            await self._changed.wait()
        self._items.append((item, size))
        self._size += size
        st = self.statistics
        st.items_in += 1
        st.high_water = max(st.high_water, self._size)
        self._notify()
        await trio.lowlevel.checkpoint()

    async def get(self) -> tuple[T, int]:
        """The oldest item, and how many clears came before it left the queue; waits while
        the queue is empty. A consumer still busy with the item when
        ``statistics.clears`` moves past that number must stop: it was cleared."""
        while not self._items:
            await self._changed.wait()
        clears = self.statistics.clears
        item, size = self._items.popleft()
        # Sizes are floats: reset to exactly zero when empty, so rounding never accumulates.
        self._size = self._size - size if self._items else 0
        self.statistics.items_out += 1
        self._notify()
        await trio.lowlevel.checkpoint()
        return item, clears

    def clear(self) -> float:
        """Drop everything queued; returns the size dropped."""
        dropped = self._size
        st = self.statistics
        st.clears += 1
        st.items_dropped += len(self._items)
        st.size_dropped += dropped
        self._items.clear()
        self._size = 0
        self._notify()
        return dropped
