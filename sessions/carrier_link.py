"""The carrier half of a call: one carrier WebSocket, its dialect and its audio codec.

::

    CarrierLink.run ── nursery
      ├── reader: WebSocket message → dialect events → caller PCM → caller-audio channel
      │           (the start, marks played, DTMF and XON/XOFF are handled here; a stop
      │           or a closed socket ends the link)
      └── writer: assistant-command queue → PCM → carrier frames → WebSocket
                  (held while the carrier says XOFF; a clear flushes the rest of a
                  half-sent answer and sends the carrier's clear command)

It knows nothing of Sonic or prompts: it turns carrier messages into caller audio on a
channel, and assistant commands from a queue into carrier messages
(:mod:`actors.audio_pumps` holds both). Protocol violations raise the dialect's
:class:`~actors.errors.CarrierError`; the call maps everything to close codes.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import attrs
import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors.audio_codec import CarrierCodec, Rechunker
from actors.audio_pumps import (
    AnswerEnded,
    AssistantAudio,
    AssistantCommand,
    OutboundQueue,
    PcmFrame,
)
from actors.errors import CarrierError
from sessions.dialects.base import (
    AudioReceived,
    CallStarted,
    CallStopped,
    ClearAudio,
    Dialect,
    DtmfReceived,
    Event,
    FlowPaused,
    FlowResumed,
    MarkPlayed,
    SendAudio,
    SendMark,
)
from sessions.logs import current_call
from sessions.metrics import CallMetrics
from sessions.playback_estimate import PlaybackEstimate

logger = logging.getLogger("novavoice.call")

SPEECH_RMS = 200
"""Caller audio whose RMS (PCM16) exceeds this counts as speech for the idle timeout: about
-44 dBFS, above line noise and a carrier's own silence, well below quiet speech."""
_SPEECH_ENERGY = SPEECH_RMS * SPEECH_RMS
# While the caller is quiet, one frame in every 100 ms is checked for speech; while they
# speak, one a second: the idle timeout is minutes, so this costs a few checks a second.
_QUIET_CHECK_EVERY = 0.1
_SPEECH_CHECK_EVERY = 1.0

CarrierEnd = Literal["hangup", "disconnected"]
"""Why a carrier link ended without an error: the carrier stopped the stream, or the
socket closed."""


@attrs.define(eq=False, kw_only=True)
class CarrierLinkStatistics:
    """What the carrier link did (for the call-end log line)."""

    marks_sent: int = 0
    marks_played: int = 0
    pre_stream_drops: int = 0
    """Caller frames dropped because the caller-audio channel was full before the
    conversation started reading it."""
    dtmf_digits: int = 0
    """Keypad digits pressed. Only the count is kept: digits are card numbers and PINs."""
    playback: PlaybackEstimate = attrs.field(factory=PlaybackEstimate)
    """What the caller heard, estimated from the audio sent (for carriers without marks)."""


class CarrierLink:
    """One carrier connection, from the upgrade to the end of the stream.

    ``caller_audio`` receives the caller's PCM; ``assistant`` is read for what to play.
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        dialect: Dialect,
        cm: CallMetrics,
        *,
        caller_audio: trio.MemorySendChannel[PcmFrame],
        assistant: OutboundQueue[AssistantCommand],
        message_ms: int = 20,
    ) -> None:
        self._ws = ws
        # Carriers play what they buffer in real time and take more than one 20 ms frame
        # per message (Twilio any size, Asterisk re-frames): fewer messages, less CPU.
        self._frames_per_message = max(1, message_ms // 20)
        self._dialect = dialect
        self._cm = cm
        self._caller_audio = caller_audio
        self._assistant = assistant
        self.statistics = CarrierLinkStatistics()
        self.start: CallStarted | None = None
        """The carrier's start: identifiers, assistant and media format."""
        self.conversation_ready = False
        """Set by the call once the conversation reads caller audio: from then on a full
        caller-audio channel is an ``audio_in`` drop, no longer a pre-stream one."""
        self._started = trio.Event()
        self._codec: CarrierCodec | None = None
        self._flow_open = trio.Event()
        self._flow_open.set()
        self._end: CarrierEnd | CarrierError | None = None
        self.last_activity = trio.current_time()
        """trio time of the last caller speech or assistant audio (the idle timeout)."""
        self._next_speech_check = self.last_activity

    async def wait_started(self) -> CallStarted:
        """Wait for the carrier's start message."""
        await self._started.wait()
        assert self.start is not None
        return self.start

    async def run(self) -> CarrierEnd:
        """Read and write until the carrier ends the stream; returns how it ended.

        Raises :class:`~actors.errors.CarrierError` on a protocol violation.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, nursery.cancel_scope, name="carrier_reader")
            nursery.start_soon(self._write, nursery.cancel_scope, name="carrier_writer")
        if isinstance(self._end, CarrierError):
            raise self._end  # raised here, not in the reader, so it comes out unwrapped
        assert self._end is not None
        return self._end

    def _ended(self, how: CarrierEnd | CarrierError, scope: trio.CancelScope) -> None:
        if self._end is None:
            self._end = how
        scope.cancel()

    # --- carrier → caller audio -------------------------------------------------------------

    async def _read(self, scope: trio.CancelScope) -> None:
        try:
            await self._read_messages(scope)
        except CarrierError as exc:
            self._ended(exc, scope)

    async def _read_messages(self, scope: trio.CancelScope) -> None:
        ws, dialect = self._ws, self._dialect
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed as exc:
                self._closed(exc, scope)
                return
            if isinstance(message, str):
                end = self._dispatch(dialect.receive_text(message))
            else:
                end = self._dispatch(dialect.receive_bytes(message))
            if end is not None:
                self._ended(end, scope)
                return

    def _dispatch(self, received: list[Event]) -> CarrierEnd | None:
        # Hot path: ~50 media events per second per call, handled without awaiting.
        for ev in received:
            if type(ev) is AudioReceived:
                self._on_audio(ev)
            elif isinstance(ev, CallStarted):
                self._on_started(ev)
            elif isinstance(ev, MarkPlayed):
                self.statistics.marks_played += 1
            elif isinstance(ev, CallStopped):
                return "disconnected" if ev.reason == "closed" else "hangup"
            elif isinstance(ev, FlowPaused):
                if self._flow_open.is_set():
                    self._flow_open = trio.Event()
            elif isinstance(ev, FlowResumed):
                self._flow_open.set()
            elif isinstance(ev, DtmfReceived):
                # Never log the digit (card numbers, PINs): the call-end line has the count.
                self.statistics.dtmf_digits += 1
        return None

    def _on_started(self, ev: CallStarted) -> None:
        self.start = ev
        self._codec = CarrierCodec(ev.media_format)
        ctx = current_call()
        if ctx is not None:
            ctx.call_id = ev.call_id
        if ev.call_id_generated:
            # Older Asterisk sends no channel_id: say which connection the new id stands for.
            logger.info(
                "call id generated",
                extra={"event": "call_id_generated", "connection_id": ev.stream_id},
            )
        self._started.set()

    def _on_audio(self, ev: AudioReceived) -> None:
        self._cm.frames_in += 1
        codec = self._codec
        if codec is None:  # the dialect only emits audio after the start
            return
        pcm = codec.decode(ev.payload)
        now = trio.current_time()
        if now >= self._next_speech_check:
            if _is_speech(pcm):
                self.last_activity = now
                self._next_speech_check = now + _SPEECH_CHECK_EVERY
            else:
                self._next_speech_check = now + _QUIET_CHECK_EVERY
        frame = PcmFrame(pcm=pcm, arrived=time.perf_counter())
        try:
            self._caller_audio.send_nowait(frame)
        except trio.WouldBlock:
            if self.conversation_ready:
                self._cm.queue_dropped("audio_in")
            else:
                self._cm.queue_dropped("pre_stream")
                self.statistics.pre_stream_drops += 1

    # --- assistant commands → carrier -------------------------------------------------------

    async def _write(self, scope: trio.CancelScope) -> None:
        try:
            await self._write_commands()
        except ConnectionClosed as exc:
            self._closed(exc, scope)

    def _closed(self, exc: ConnectionClosed, scope: trio.CancelScope) -> None:
        """The carrier closed the socket: its dialect says whether that is a hang-up (for
        Asterisk, CLOSE 1000 from ``webchan_hangup``) or a disconnection."""
        code = exc.reason.code if exc.reason is not None else None
        end = self._dispatch(self._dialect.receive_close(code))
        self._ended(end or "disconnected", scope)

    async def _write_commands(self) -> None:
        queue = self._assistant
        send = self._dialect.send
        chunker: Rechunker | None = None
        while True:
            command, clears = await queue.get()
            # Commands come only from the conversation, which starts after the carrier did.
            codec = self._codec
            assert codec is not None and self.start is not None
            if chunker is None:
                chunker = Rechunker(self.start.frame_bytes)
                fmt = self.start.media_format
                per_second = fmt.sample_rate * fmt.bytes_per_sample
            playback = self.statistics.playback
            if type(command) is AssistantAudio:
                self.last_activity = trio.current_time()  # the assistant speaking: not idle
                frames = chunker.push(codec.encode(command.pcm))
                step = self._frames_per_message
                for i in range(0, len(frames), step):
                    if not self._flow_open.is_set():
                        await self._flow_open.wait()
                    if queue.statistics.clears != clears:
                        break  # a barge-in came while this answer was being sent: stop now
                    group = frames[i : i + step]
                    payload = group[0] if len(group) == 1 else b"".join(group)
                    await self._send(send(SendAudio(payload=payload)))
                    playback.sent(trio.current_time(), len(payload) / per_second)
                    self._cm.frames_out += len(group)
                    self._cm.added_latency_out(time.perf_counter() - command.arrived)
            elif isinstance(command, AnswerEnded):
                # Send the partial last frame, then a mark so the carrier tells us when the
                # caller has actually heard all of the answer.
                tail = chunker.flush(pad=codec.encode(b"\x00\x00"))
                if tail:
                    await self._send(send(SendAudio(payload=tail)))
                    playback.sent(trio.current_time(), len(tail) / per_second)
                # Unique per call: a flushed mark never comes back, so ids must not repeat.
                mark = send(SendMark(name=f"a{self.statistics.marks_sent}"))
                if mark:
                    self.statistics.marks_sent += 1
                    await self._send(mark)
            else:  # ClearPlayback
                chunker.clear()
                await self._send(send(ClearAudio()))
                playback.flushed(trio.current_time())

    async def _send(self, messages: list[str | bytes]) -> None:
        if not self._flow_open.is_set():
            await self._flow_open.wait()
        for message in messages:
            await self._ws.send_message(message)


def _is_speech(pcm: bytes) -> bool:
    """Whether PCM16 audio is louder than :data:`SPEECH_RMS` (mean energy, not a peak)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return len(samples) > 0 and float(np.dot(samples, samples)) > _SPEECH_ENERGY * len(samples)
