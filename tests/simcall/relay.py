"""A tiny daemon stand-in for measuring the harness: it speaks the daemon's side of Twilio
or Asterisk through the daemon's own sans-IO dialects and answers with KNOWN delays.

- The end of a caller utterance is the arrival of its first quiet frame (confirmed by
  ``confirm_frames`` quiet frames, longer than any word gap in the caller's audio); the
  reply's first frame goes out exactly ``reply_delay`` after that arrival.
- Caller speech starting while the reply is still playing is a barge-in: ``clear`` (or
  ``FLUSH_MEDIA``) goes out exactly ``clear_delay`` after the arrival of its first frame.
- ``stall_at``/``stall_seconds`` pause the reply mid-way (an injected outbound gap).

Every message the harness sends goes through ``TwilioDialect``/``AsteriskDialect``; any
``CarrierError`` is recorded and the socket closed with its code, as the daemon does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
import trio_websocket

from actors.audio_codec import Encoding, ulaw_to_pcm16
from actors.errors import CarrierError
from devkit.simcall.audio import frame_rms_dbfs
from sessions.dialects import (
    AsteriskDialect,
    AudioReceived,
    CallStarted,
    CallStopped,
    ClearAudio,
    Command,
    Event,
    MarkPlayed,
    SendAudio,
    SendMark,
    TwilioDialect,
)

SPEECH_DBFS = -40.0  # the emulator's threshold


@attrs.frozen(kw_only=True)
class RelayPlan:
    reply_delay: float = 0.2
    reply_frames: int = 50
    clear_delay: float = 0.1
    mark_every: int = 10
    frame_interval: float = 0.0
    """Seconds between reply frames (0: the whole reply at once, as fast as possible)."""
    stall_at: int | None = None
    stall_seconds: float = 0.0
    confirm_frames: int = 10


@attrs.define
class ConnectionLog:
    path: str = ""
    subprotocol: str | None = None
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    started: CallStarted | None = None
    audio_frames: int = 0
    early_replayed: int = 0
    errors: list[CarrierError] = attrs.field(factory=list)
    marks_played: list[str] = attrs.field(factory=list)
    marks_sent: list[str] = attrs.field(factory=list)
    speech_onsets: list[float] = attrs.field(factory=list)
    utterance_ends: list[float] = attrs.field(factory=list)
    replies_sent: list[float] = attrs.field(factory=list)
    clears_sent: list[float] = attrs.field(factory=list)
    stopped: str | None = None
    close_code: int | None = None
    events: list[Event] = attrs.field(factory=list)


class Relay:
    def __init__(self, plan: RelayPlan) -> None:
        self.plan = plan
        self.connections: list[ConnectionLog] = []
        self.url = ""

    async def handle(self, request: trio_websocket.WebSocketRequest) -> None:
        log = ConnectionLog(path=request.path, headers=list(request.headers))
        self.connections.append(log)
        asterisk = request.path.startswith("/asterisk")
        dialect: TwilioDialect | AsteriskDialect
        if asterisk:
            dialect = AsteriskDialect(path=request.path)
            log.subprotocol = "media" if "media" in request.proposed_subprotocols else None
        else:
            dialect = TwilioDialect(path=request.path)
        ws = await request.accept(subprotocol=log.subprotocol)
        async with trio.open_nursery() as nursery:
            await _Conversation(self.plan, log, dialect, ws, nursery).run()
            nursery.cancel_scope.cancel()


class _Conversation:
    def __init__(
        self,
        plan: RelayPlan,
        log: ConnectionLog,
        dialect: TwilioDialect | AsteriskDialect,
        ws: trio_websocket.WebSocketConnection,
        nursery: trio.Nursery,
    ) -> None:
        self.plan, self.log, self.dialect, self.ws, self.nursery = plan, log, dialect, ws, nursery
        self.speaking = False
        self.quiet = 0
        self.first_quiet = 0.0
        self.reply_scope: trio.CancelScope | None = None
        self.playing_until = -1.0
        self.encoding = Encoding.MULAW
        self.frame_bytes = 160

    async def send(self, command: Command) -> None:
        for message in self.dialect.send(command):
            await self.ws.send_message(message)

    async def run(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                self.log.close_code = exc.reason.code if exc.reason else None
                self.dialect.receive_close()
                return
            try:
                if isinstance(message, str):
                    events = self.dialect.receive_text(message)
                else:
                    events = self.dialect.receive_bytes(message)
            except CarrierError as exc:
                self.log.errors.append(exc)
                await self.ws.aclose(exc.close_code, exc.reason)
                return
            for event in events:
                self.on_event(event)

    def on_event(self, event: Event) -> None:
        log = self.log
        log.events.append(event)
        now = trio.current_time()
        if isinstance(event, CallStarted):
            log.started = event
            self.encoding = event.media_format.encoding
            self.frame_bytes = event.frame_bytes
        elif isinstance(event, MarkPlayed):
            log.marks_played.append(event.name)
        elif isinstance(event, AudioReceived):
            log.audio_frames += 1
            pcm = ulaw_to_pcm16(event.payload) if self.encoding is Encoding.MULAW else event.payload
            loud = frame_rms_dbfs(pcm) >= SPEECH_DBFS
            if loud:
                self.quiet = 0
                if not self.speaking:
                    self.speaking = True
                    log.speech_onsets.append(now)
                    if now < self.playing_until:
                        self.nursery.start_soon(self.clear, now)
            elif self.speaking:
                self.quiet += 1
                if self.quiet == 1:
                    self.first_quiet = now
                if self.quiet >= self.plan.confirm_frames:
                    self.speaking = False
                    log.utterance_ends.append(self.first_quiet)
                    self.nursery.start_soon(self.reply, self.first_quiet)
        elif isinstance(event, CallStopped):
            log.stopped = event.reason

    async def reply(self, end: float) -> None:
        plan = self.plan
        with trio.CancelScope() as scope:
            self.reply_scope = scope
            await trio.sleep_until(end + plan.reply_delay)
            start = trio.current_time()
            self.log.replies_sent.append(start)
            self.playing_until = start + plan.reply_frames * 0.02 + plan.stall_seconds
            tone = (
                b"\x55" * self.frame_bytes
                if self.encoding is Encoding.MULAW
                else b"\x10\x08" * (self.frame_bytes // 2)
            )
            for i in range(plan.reply_frames):
                if plan.stall_at is not None and i == plan.stall_at:
                    await trio.sleep(plan.stall_seconds)
                await self.send(SendAudio(payload=tone))
                if plan.mark_every and (i + 1) % plan.mark_every == 0:
                    name = f"m{len(self.log.marks_sent)}"
                    self.log.marks_sent.append(name)
                    await self.send(SendMark(name=name))
                if plan.frame_interval:
                    await trio.sleep(plan.frame_interval)

    async def clear(self, onset: float) -> None:
        await trio.sleep_until(onset + self.plan.clear_delay)
        if self.reply_scope is not None:
            self.reply_scope.cancel()
        self.playing_until = -1.0
        self.log.clears_sent.append(trio.current_time())
        await self.send(ClearAudio())


@asynccontextmanager
async def open_relay(plan: RelayPlan | None = None) -> AsyncIterator[Relay]:
    relay = Relay(plan or RelayPlan())
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, relay.handle, "127.0.0.1", 0, None
        )
        relay.url = f"ws://127.0.0.1:{server.port}"
        yield relay
        nursery.cancel_scope.cancel()
