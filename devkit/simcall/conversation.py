"""The conversation half of a simulated call: sender and receiver over an open WebSocket.

:class:`CallConversation` streams the caller's frames on an absolute 20 ms schedule,
plays received audio through a :class:`~devkit.simcall.playback.PlaybackBuffer`, echoes
marks, reacts to ``clear``/``FLUSH_MEDIA``/``HANGUP``, misbehaves when its script says
so, and turns all of it into a :class:`~devkit.simcall.report.CallReport`.
"""

from __future__ import annotations

import random
import socket
import statistics
import struct

import trio
import trio_websocket
from trio_websocket import ConnectionClosed

from actors.errors import CarrierError
from devkit.simcall.asterisk_caller import MALFORMED_KINDS as ASTERISK_MALFORMED
from devkit.simcall.asterisk_caller import AsteriskCaller
from devkit.simcall.audio import CallerVoice
from devkit.simcall.events import (
    AssistantAudio,
    ClearRequested,
    DaemonEvent,
    DaemonNotice,
    HangupRequested,
    MarkRequested,
)
from devkit.simcall.playback import PlaybackBuffer
from devkit.simcall.report import CallReport, percentile
from devkit.simcall.script import FRAME_S, CallerTurns, CallScript, Misbehaviour
from devkit.simcall.twilio_caller import MALFORMED_KINDS as TWILIO_MALFORMED
from devkit.simcall.twilio_caller import TwilioCaller

__all__ = ["CallConversation"]

_XOFF_FRAMES, _XON_FRAMES = 900, 800  # Asterisk's queue levels (reference §2.1)
CLOSE_TIMEOUT = 2.0


class CallConversation:
    """The mutable state of one call, shared by its sender and receiver tasks."""

    def __init__(self, carrier: TwilioCaller | AsteriskCaller, script: CallScript, seed: int):
        self.carrier = carrier
        self.script = script
        self.seed = seed
        self.voice = CallerVoice(seed, carrier.fmt)
        self.playback = PlaybackBuffer()
        self.turns: CallerTurns | None = None
        self.ws: trio_websocket.WebSocketConnection | None = None
        self.frames_sent = self.frames_late = self.frames_unsent = 0
        self.marks_received = self.marks_echoed = self.clears = 0
        self.unknown_commands = 0
        self.duplicate_marks = 0
        self._mark_names: set[str] = set()
        self.outcome: str | None = None
        self.error: str | None = None
        self.misbehaved = False
        self.caller_closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.xoff = False
        self.scope = trio.CancelScope()
        self.keys_sent = 0
        self.audio_before_speech = 0.0

    async def _send(self, message: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send_message(message)

    async def run(self, ws: trio_websocket.WebSocketConnection, stream: trio.abc.Stream) -> None:
        """Converse until the caller hangs up, misbehaves out, or the daemon closes."""
        self.ws = ws
        with self.scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._receive)
                    await self._talk(stream)
                    nursery.cancel_scope.cancel()
            except* ConnectionClosed:
                pass  # the receiver records how the socket closed...
        if self.close_code is None and ws.closed is not None:
            # ...unless the sender saw the close first and the receiver was cancelled
            # before it could record it: then the connection still knows the reason.
            self._closed(ws.closed)
        if self.turns is not None:
            self.turns.finish()

    # --- sending ---------------------------------------------------------------------

    async def _open_stream(self) -> None:
        carrier = self.carrier
        if isinstance(carrier, TwilioCaller):
            await self._send(carrier.connected())
            await self._send(carrier.start())
            return
        early = self.script.early_media_frames
        for frame in self.voice.noise_frames(99, early * FRAME_S)[:early] if early else []:
            await self._send(carrier.media(frame))
            self.frames_sent += 1
        await self._send(carrier.media_start())

    async def _talk(self, stream: trio.abc.Stream) -> None:
        script, carrier = self.script, self.carrier
        await self._open_stream()
        start = trio.current_time()
        turns = self.turns = CallerTurns(script, self.voice, seed=self.seed, start=start)
        misbehave_at = start + script.misbehave_after
        k = 0
        while True:
            due = start + k * FRAME_S
            await trio.sleep_until(due)
            now = trio.current_time()
            if now - due > FRAME_S:
                self.frames_late += 1
            for name in self.playback.due_marks(now):
                await self._echo_mark(name)
            await self._flow_control(now)
            if not self.misbehaved and now >= misbehave_at:
                if script.misbehaviour is Misbehaviour.ABRUPT_DISCONNECT:
                    self.misbehaved = self.caller_closed = True
                    _abort(stream)
                    await trio.sleep_forever()  # the receiver sees the socket die
                if script.misbehaviour is Misbehaviour.MALFORMED:
                    self.misbehaved = True
                    kinds = _malformed_kinds(carrier)
                    kind = script.malformed_kind or random.Random(self.seed).choice(kinds)
                    await self._send(carrier.malformed(kind))
            await self._press_keys(now - start)
            tick = turns.tick(now, self.playback)
            if tick.hangup:
                await self._hang_up()
                return
            await self._send(carrier.media(tick.frame))
            self.frames_sent += 1
            k += 1

    async def _press_keys(self, elapsed: float) -> None:
        keypad = self.script.keypad
        while self.keys_sent < len(keypad) and keypad[self.keys_sent][0] <= elapsed:
            key = keypad[self.keys_sent][1]
            carrier = self.carrier
            message = (
                carrier.dtmf(key) if isinstance(carrier, TwilioCaller) else carrier.dtmf_end(key)
            )
            await self._send(message)
            self.keys_sent += 1

    async def _echo_mark(self, name: str) -> None:
        carrier = self.carrier
        message = (
            carrier.mark(name)
            if isinstance(carrier, TwilioCaller)
            else carrier.mark_processed(name)
        )
        await self._send(message)
        self.marks_echoed += 1

    async def _flow_control(self, now: float) -> None:
        carrier = self.carrier
        if not isinstance(carrier, AsteriskCaller):
            return
        queued = self.playback.queued_seconds(now) / FRAME_S
        if not self.xoff and queued > _XOFF_FRAMES:
            self.xoff = True
            await self._send(carrier.xoff())
        elif self.xoff and queued < _XON_FRAMES:
            self.xoff = False
            await self._send(carrier.xon())

    async def _hang_up(self) -> None:
        self.caller_closed = True
        assert self.ws is not None
        if isinstance(self.carrier, TwilioCaller):
            await self._send(self.carrier.stop())
        # Asterisk signals hang-up by closing the socket; Twilio closes after ``stop``.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.ws.aclose(1000, "caller hung up")

    # --- receiving -------------------------------------------------------------------

    async def _receive(self) -> None:
        assert self.ws is not None
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed as exc:
                self._closed(exc.reason)
                self.scope.cancel()
                return
            now = trio.current_time()
            try:
                if isinstance(message, str):
                    events = self.carrier.receive_text(message)
                else:
                    events = self.carrier.receive_bytes(message)
            except CarrierError as exc:
                self.outcome, self.error = "protocol_error", f"{type(exc).__name__}: {exc}"
                self.caller_closed = True
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self.ws.aclose(1002, "carrier protocol error")
                continue
            for event in events:
                await self._on_event(event, now)

    async def _on_event(self, event: DaemonEvent, now: float) -> None:
        turns = self.turns
        if isinstance(event, AssistantAudio):
            self.playback.add_audio(now, event.seconds)
            if turns is None or turns.turns == 0:  # heard before the caller said anything
                self.audio_before_speech += event.seconds
            if turns is not None:
                turns.on_assistant_audio(now)
        elif isinstance(event, MarkRequested):
            self.marks_received += 1
            self.duplicate_marks += event.name in self._mark_names
            self._mark_names.add(event.name)
            for name in self.playback.add_mark(now, event.name):
                await self._echo_mark(name)
        elif isinstance(event, ClearRequested):
            self.clears += 1
            pending = self.playback.clear(now)
            if turns is not None:
                turns.on_clear(now)
            if isinstance(self.carrier, TwilioCaller):  # Twilio echoes pending marks at once
                for name in pending:
                    await self._echo_mark(name)
        elif isinstance(event, HangupRequested):
            self.outcome = self.outcome or "hangup_by_daemon"
            assert self.ws is not None
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.ws.aclose(1000, "hangup requested")
        elif isinstance(event, DaemonNotice) and event.name == "UNKNOWN_COMMAND":
            self.unknown_commands += 1
        elif isinstance(event, DaemonNotice) and event.name == "GET_STATUS":
            assert isinstance(self.carrier, AsteriskCaller)
            queued = round(self.playback.queued_seconds(now) / FRAME_S)
            await self._send(self.carrier.status(queue_length=queued))

    def _closed(self, reason: trio_websocket.CloseReason | None) -> None:
        if reason is not None:
            self.close_code, self.close_reason = reason.code, reason.reason
        if self.outcome is None and not self.caller_closed and not self.misbehaved:
            self.outcome = "closed_by_daemon"
            turns, length = self.turns, self.script.length
            if turns is not None and length is not None and not turns.done:
                left = length - (trio.current_time() - turns.start)
                self.frames_unsent = max(0, round(left / FRAME_S))

    def report(self, base: dict[str, object], ended_at: float) -> CallReport:
        """The :class:`CallReport` of a call that got past the handshake."""
        turns, pb = self.turns, self.playback
        if self.outcome is not None:
            outcome = self.outcome
        elif self.misbehaved:
            outcome = "misbehaved"
        else:
            outcome = "completed"
        if self.caller_closed and self.close_code in (None, 1006):
            closed_by = "caller"
        elif self.close_code == 1006:
            closed_by = "network"
        else:
            closed_by = "caller" if self.caller_closed else "daemon"
        gaps = [g * 1000 for g in pb.interarrivals]
        latencies = turns.reply_latencies if turns else []
        return CallReport(
            **base,  # type: ignore[arg-type]
            outcome=outcome,
            ended_at=ended_at,
            error=self.error,
            first_audio_s=latencies[0] if latencies and turns and turns.utterance_ends else None,
            reply_latencies_s=latencies,
            barge_in_reactions_s=turns.barge_reactions if turns else (),
            barge_ins=len(turns.barge_onsets) if turns else 0,
            barge_ins_missed=turns.barges_missed if turns else 0,
            turns=turns.turns if turns else 0,
            no_reply_turns=turns.no_reply_turns if turns else 0,
            frames_sent=self.frames_sent,
            frames_late=self.frames_late,
            frames_unsent=self.frames_unsent,
            # In 20 ms frames, however the daemon packed them (CALL_AUDIO_MESSAGE_MS).
            frames_received=round(pb.audio_seconds / FRAME_S),
            assistant_audio_s=round(pb.audio_seconds, 9),  # no float residue from summing
            responses=pb.responses,
            interarrival_p50_ms=percentile(gaps, 50),
            interarrival_p99_ms=percentile(gaps, 99),
            interarrival_max_ms=max(gaps) if gaps else None,
            jitter_ms=statistics.pstdev(gaps) if gaps else None,
            underruns=pb.underruns,
            underrun_s=pb.underrun_seconds,
            marks_received=self.marks_received,
            unknown_commands=self.unknown_commands,
            duplicate_marks=self.duplicate_marks,
            marks_echoed=self.marks_echoed,
            clears_received=self.clears,
            close_code=self.close_code,
            close_reason=self.close_reason,
            closed_by=closed_by,
            keys_sent=self.keys_sent,
            audio_before_speech_s=self.audio_before_speech,
        )


def _malformed_kinds(carrier: TwilioCaller | AsteriskCaller) -> tuple[str, ...]:
    if isinstance(carrier, TwilioCaller):
        return TWILIO_MALFORMED
    kinds = ASTERISK_MALFORMED
    return kinds if carrier.format_name == "slin16" else tuple(k for k in kinds if k != "odd_frame")


def _abort(stream: trio.abc.Stream) -> None:
    """Reset the TCP connection (SO_LINGER 0): no close frame, no FIN handshake."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    assert isinstance(transport, trio.SocketStream)
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.socket.close()
