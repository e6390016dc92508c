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
import math
import time
from collections.abc import Callable
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
    ClearPlayback,
    OutboundQueue,
    PcmFrame,
)
from actors.errors import CarrierAudioFlood, CarrierError
from actors.frame_budget import FrameBudget, Verdict
from sessions.config import CallSettings
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
from sessions.heard_log import HeardLog
from sessions.logs import current_call
from sessions.metrics import CallMetrics
from sessions.playback_estimate import PlaybackEstimate
from sessions.playback_turns import PlaybackTurns, TurnPlayed

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
    audio_in_drops: int = 0
    """Caller frames dropped because the caller-audio channel was full after the
    conversation started reading it (Sonic not keeping up)."""
    rate_limited_drops: int = 0
    """Caller frames dropped because they came faster than the call's real-time budget
    (``CALLER_AUDIO_RATE_LIMIT``, :mod:`actors.frame_budget`)."""
    dtmf_digits: int = 0
    """Keypad digits pressed. Only the count is kept: digits are card numbers and PINs."""
    dtmf_dropped: int = 0
    """Keys dropped because the keypad channel was full (the conversation is behind)."""
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
        keypad: trio.MemorySendChannel[str] | None = None,
        heard: HeardLog | None = None,
        settings: CallSettings | None = None,
        on_started: Callable[[], None] | None = None,
        message_ms: int = 20,
    ) -> None:
        self._ws = ws
        self._keypad = keypad
        # Carriers play what they buffer in real time and take more than one 20 ms frame
        # per message (Twilio any size, Asterisk re-frames): fewer messages, less CPU.
        self._frames_per_message = max(1, message_ms // 20)
        self._dialect = dialect
        self._cm = cm
        self._caller_audio = caller_audio
        self._assistant = assistant
        self._settings = settings if settings is not None else CallSettings()
        self._budget: FrameBudget | None = None
        """Caller audio allowed (built at the start, in the carrier's bytes)."""
        self._on_started_hook = on_started
        """Called once at the carrier's start (the supervisor stops counting the connection
        as unstarted for its source address)."""
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
        self.turns = PlaybackTurns()
        """Which assistant turns the caller heard (marks, clears, the playback estimate)."""
        self._heard = heard
        self._turns_changed = trio.Event()

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
                self._on_started(ev, received)
            elif isinstance(ev, MarkPlayed):
                self.statistics.marks_played += 1
                self._settled(self.turns.mark_played(ev.name))
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
                self._on_key(ev.digit)
        return None

    def _on_key(self, key: str) -> None:
        """Hand one key to the conversation (which collects entries and tells the model)."""
        if self._keypad is None:
            return
        try:
            self._keypad.send_nowait(key)
        except (trio.WouldBlock, trio.BrokenResourceError):
            self.statistics.dtmf_dropped += 1

    def _on_started(self, ev: CallStarted, received: list[Event]) -> None:
        self.start = ev
        self._codec = CarrierCodec(ev.media_format)
        fmt, s = ev.media_format, self._settings
        per_second = fmt.sample_rate * fmt.bytes_per_sample
        self._budget = FrameBudget(
            rate=s.caller_audio_rate * per_second,
            burst=s.caller_audio_burst * per_second,
            abuse_rate=s.caller_audio_abuse_rate * per_second,
            abuse_burst=s.caller_audio_abuse_burst * per_second,
            now=trio.current_time(),
        )
        # Asterisk's audio from before MEDIA_START (capped by the dialect) follows the start
        # in this batch: it arrived in real time, so it is credited, not rate limited.
        self._budget.grant(sum(len(e.payload) for e in received if type(e) is AudioReceived))
        ctx = current_call()
        if ctx is not None:
            ctx.call_id = ev.call_id
        if ev.call_id_generated:
            # Older Asterisk sends no channel_id: say which connection the new id stands for.
            logger.info(
                "call id generated",
                extra={"event": "call_id_generated", "connection_id": ev.stream_id},
            )
        if self._on_started_hook is not None:
            self._on_started_hook()
        self._started.set()

    def _on_audio(self, ev: AudioReceived) -> None:
        self._cm.frames_in += 1
        codec, budget = self._codec, self._budget
        if codec is None or budget is None:  # the dialect only emits audio after the start
            return
        now = trio.current_time()
        verdict = budget.admit(now, len(ev.payload))
        if verdict:  # Verdict.ADMIT is 0: anything else is over budget, before any decoding
            self._over_budget(verdict)
            return
        pcm = codec.decode(ev.payload)
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
                self.statistics.audio_in_drops += 1
            else:
                self._cm.queue_dropped("pre_stream")
                self.statistics.pre_stream_drops += 1

    def _over_budget(self, verdict: Verdict) -> None:
        if verdict is Verdict.ABUSE:
            raise CarrierAudioFlood(
                f"caller audio above {self._settings.caller_audio_abuse_rate:g}x real time"
            )
        self._cm.queue_dropped("rate_limited")
        self.statistics.rate_limited_drops += 1
        if self.statistics.rate_limited_drops == 1:  # once per call; the end line has the count
            logger.warning(
                "caller audio over its real-time budget: dropping",
                extra={"event": "caller_audio_rate_limited"},
            )

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
                    now = trio.current_time()
                    playback.sent(now, len(payload) / per_second)
                    self.turns.audio(command.turn, now, len(payload) / per_second)
                    self._cm.frames_out += len(group)
                    self._cm.added_latency_out(time.perf_counter() - command.arrived)
            elif isinstance(command, AnswerEnded):
                # Send the partial last frame, then a mark so the carrier tells us when the
                # caller has actually heard all of the answer.
                tail = chunker.flush(pad=codec.encode(b"\x00\x00"))
                if tail:
                    await self._send(send(SendAudio(payload=tail)))
                    playback.sent(trio.current_time(), len(tail) / per_second)
                    self.turns.audio(command.turn, trio.current_time(), len(tail) / per_second)
                # Unique per call: a flushed mark never comes back, so ids must not repeat.
                name = f"a{self.statistics.marks_sent}"
                mark = send(SendMark(name=name))
                self.turns.ended(command.turn, name if mark else None)
                self._wake_turn_waiters()
                if mark:
                    self.statistics.marks_sent += 1
                    await self._send(mark)
            else:
                assert isinstance(command, ClearPlayback)  # the only other command
                chunker.clear()
                # Settled before the clear goes out: Twilio echoes the marks it discards at
                # once, and the reader must already know to ignore them.
                self._settled(self.turns.cleared(trio.current_time(), command.through))
                await self._send(send(ClearAudio()))
                playback.flushed(trio.current_time())
            # Without marks, turns are settled by the estimate as the writer goes by.
            self._settled(self.turns.due(trio.current_time()))

    # --- what the caller heard ----------------------------------------------------------------

    def _settled(self, results: list[TurnPlayed]) -> None:
        if results:
            self._wake_turn_waiters()
        if self._heard is not None:
            for result in results:
                self._heard.played(result)

    async def wait_played(self, turn: int) -> TurnPlayed:
        """Wait until the caller has heard ``turn`` (or it was cut off): by its mark, or
        without marks at its estimated end. Needs the ``heard`` log."""
        heard = self._heard
        assert heard is not None
        while (result := heard.result(turn)) is None:
            end = self.turns.estimated_end(turn)
            if end is not None and trio.current_time() >= end:
                self._settled(self.turns.due(trio.current_time()))
                continue
            changed = self._turns_changed
            with trio.move_on_at(math.inf if end is None else end):
                await changed.wait()
        return result

    def _wake_turn_waiters(self) -> None:
        self._turns_changed.set()
        self._turns_changed = trio.Event()

    def finish_turns(self) -> None:
        """The call is ending: settle every turn still playing as it stands now."""
        self._settled(self.turns.finish(trio.current_time()))

    async def _send(self, messages: list[str | bytes]) -> None:
        if not self._flow_open.is_set():
            await self._flow_open.wait()
        for message in messages:
            await self._ws.send_message(message)


def _is_speech(pcm: bytes) -> bool:
    """Whether PCM16 audio is louder than :data:`SPEECH_RMS` (mean energy, not a peak)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return len(samples) > 0 and float(np.dot(samples, samples)) > _SPEECH_ENERGY * len(samples)
