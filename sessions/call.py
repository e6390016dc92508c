"""One call channel: the task tree of one phone call, from carrier start to hang-up.

::

    CallChannel.run ── nursery (the call; cancelling it ends everything below)
      ├── carrier reader: WebSocket messages → dialect events → PCM → pre-stream channel
      └── conversation: wait for the carrier's start, fetch the prompt, then
            ├── Sonic session (actors/sonic_session.py): one stream at a time, rotated
            │     before Bedrock's limit; its reader hands output events to the call:
            │     audio → carrier frames into the outbound queue; barge-in clears the
            │     queue and sends the carrier's clear; final transcripts → call log
            ├── audio-in pump:  PCM → ~32 ms audioInput events (comfort silence when quiet)
            └── carrier writer: outbound queue → WebSocket (held while the carrier says XOFF)

Every task turns the domain errors it meets into one :class:`~sessions.call_records.CallEnd`
through :meth:`CallChannel.end`, which cancels the call's tree; the first end wins. Leaving
a Sonic stream's block closes it politely (contentEnd/promptEnd/sessionEnd, signed end
frame) under a shielded timeout, and the carrier gets a close code and reason. An
unexpected exception escapes to the supervisor, which ends only this call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors.assistant_names import validate_assistant_name
from actors.audio_codec import CarrierCodec, MediaFormat, Rechunker
from actors.audio_pumps import (
    OutboundQueue,
    PcmFrame,
    run_audio_in_pump,
)
from actors.close_codes import CloseCode
from actors.errors import CarrierError, CarrierUnsupportedMedia, PromptError, SonicError
from actors.prompt_fetch import prompt_log_fields
from actors.prompt_store import StoredPrompt
from actors.sonic import output
from actors.sonic_session import SonicOpener, SonicSession, SonicSessionEnded, SonicStreamLike
from sessions.call_records import CallDeps, CallEnd, CallSummary, SonicCallSettings, end_for_error
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
    Message,
    SendAudio,
    SendMark,
)
from sessions.logs import Role, current_call
from sessions.metrics import CallMetrics, Metrics
from sessions.playback_estimate import PlaybackEstimate

logger = logging.getLogger("novavoice.call")

_SONIC_RATES = (8000, 16000, 24000)


@attrs.frozen
class _CountingOpener:
    """Counts every Sonic stream a call opens (rotations open more than one)."""

    inner: SonicOpener
    metrics: Metrics

    def open_stream(
        self, *, wait_for_response: bool = True
    ) -> AbstractAsyncContextManager[SonicStreamLike]:
        self.metrics.sonic_stream_opens.inc()
        return self.inner.open_stream(wait_for_response=wait_for_response)


class CallChannel:
    """The state and tasks of one call; the supervisor builds one per admitted call and
    runs it (domain failures end the call with a specific close code; an unexpected
    exception propagates after the carrier was told 1011)."""

    def __init__(
        self, ws: WebSocketConnection, dialect: Dialect, deps: CallDeps, cm: CallMetrics
    ) -> None:
        self._ws = ws
        self._dialect = dialect
        self._deps = deps
        self._cm = cm
        self._settings = deps.settings
        self.summary = CallSummary()
        self._scope = trio.CancelScope()
        self._started = trio.Event()
        self._start: CallStarted | None = None
        self._codec: CarrierCodec | None = None
        self._t0 = time.perf_counter()
        # Caller audio waits here until the Sonic stream is open (bounded: see settings).
        frames = max(1, int(self._settings.pre_stream_seconds * 50))
        self._pcm_send, self._pcm_receive = trio.open_memory_channel[PcmFrame](frames)
        self._sonic_ready = False
        self._audio_flowing = False
        # Resized when the media format is known.
        # Items are (messages, Sonic arrival stamp, bytes of audio in the wire encoding).
        self._out: OutboundQueue[tuple[list[Message], float | None, int]] = OutboundQueue(
            max_bytes=1
        )
        self._out_chunker: Rechunker | None = None
        self._flow_open = trio.Event()
        self._flow_open.set()
        self.session: SonicSession | None = None
        """The call's Sonic session, once the prompt is loaded (rotation statistics)."""
        self._interrupted: set[str] = set()
        self.playback = PlaybackEstimate()
        """What the caller heard, estimated from the audio sent (for carriers without marks)."""

    # --- ending ---------------------------------------------------------------------------

    def end(self, end: CallEnd) -> None:
        """End the call for ``end`` (the first end wins) and cancel its task tree."""
        if self.summary.end is None:
            self.summary.end = end
            self._cm.end_reason = end.reason
        self._scope.cancel(reason=end.reason)

    def end_for(self, exc: Exception) -> None:
        """End the call because of a domain error, logging it once."""
        end = end_for_error(exc)
        if isinstance(exc, SonicError):
            self._deps.metrics.sonic_error(exc)
        if self.summary.end is None:
            logger.warning(
                "call failed",
                extra={
                    "event": "call_failed",
                    "error": type(exc).__name__,
                    "detail": str(exc),
                    "close_code": end.code,
                },
            )
        self.end(end)

    # --- the tree -------------------------------------------------------------------------

    async def run(self) -> CallSummary:
        """Run the call until it ends; then close the carrier socket politely.

        The close happens on every exit: an ordinary end (its own code), a bug escaping
        (1011, and the exception propagates), or a cancellation from outside, i.e. the
        daemon shutting down (1001, and the cancellation propagates).
        """
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_carrier, name="carrier_reader")
                    nursery.start_soon(self._converse, name="conversation")
        except Exception:
            self.end(CallEnd("internal_error", CloseCode.INTERNAL_ERROR, "internal error"))
            raise
        finally:
            if self.summary.end is None:
                self.end(CallEnd("shutdown", CloseCode.GOING_AWAY, "server shutting down"))
            end = self.summary.end
            assert end is not None
            self.summary.frames_in = self._cm.frames_in
            self.summary.frames_out = self._cm.frames_out
            self.summary.audio_sent_s = self.playback.sent_s
            self.summary.audio_heard_s = self.playback.heard_s(trio.current_time())
            with (
                trio.move_on_after(self._settings.close_timeout, shield=True),
                contextlib.suppress(
                    ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError
                ),
            ):
                await self._ws.aclose(code=end.code, reason=end.text)
        return self.summary

    # --- carrier → daemon -----------------------------------------------------------------

    async def _read_carrier(self) -> None:
        try:
            while True:
                try:
                    message = await self._ws.get_message()
                except ConnectionClosed as exc:
                    self._carrier_closed(exc)
                    return
                if isinstance(message, str):
                    self._dispatch(self._dialect.receive_text(message))
                else:
                    self._dispatch(self._dialect.receive_bytes(message))
        except CarrierError as exc:
            self.end_for(exc)

    def _carrier_closed(self, exc: ConnectionClosed) -> None:
        """The carrier closed the socket: its dialect says whether that is a hang-up (for
        Asterisk, CLOSE 1000 from ``webchan_hangup``) or a disconnection."""
        self._dispatch(self._dialect.receive_close(exc.reason.code if exc.reason else None))
        self.end(CallEnd("disconnected", CloseCode.NORMAL, "carrier disconnected"))

    def _dispatch(self, received: list[Event]) -> None:
        # Hot path: ~50 media events per second per call, handled without awaiting.
        for ev in received:
            if type(ev) is AudioReceived:
                self._on_audio(ev)
            elif isinstance(ev, CallStarted):
                self._on_started(ev)
            elif isinstance(ev, MarkPlayed):
                self.summary.marks_played += 1
            elif isinstance(ev, CallStopped):
                if ev.reason == "closed":
                    self.end(CallEnd("disconnected", CloseCode.NORMAL, "carrier disconnected"))
                else:
                    self.end(CallEnd("hangup", CloseCode.NORMAL, "call ended"))
            elif isinstance(ev, FlowPaused):
                if self._flow_open.is_set():
                    self._flow_open = trio.Event()
            elif isinstance(ev, FlowResumed):
                self._flow_open.set()
            elif isinstance(ev, DtmfReceived):
                logger.info("dtmf", extra={"event": "dtmf", "digit": ev.digit})

    def _on_started(self, ev: CallStarted) -> None:
        self._start = ev
        fmt: MediaFormat = ev.media_format
        self._codec = CarrierCodec(fmt)
        self._out_chunker = Rechunker(ev.frame_bytes)
        # Outbound bound in wire bytes (what the queued carrier messages carry).
        self._out.max_bytes = max(
            ev.frame_bytes, int(fmt.bytes_for_ms(1000) * self._settings.outbound_seconds)
        )
        self.summary.call_id = ev.call_id
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
        frame = PcmFrame(pcm=codec.decode(ev.payload), arrived=time.perf_counter())
        try:
            self._pcm_send.send_nowait(frame)
        except trio.WouldBlock:
            if self._sonic_ready:
                self._cm.queue_dropped("audio_in")
            else:
                self._cm.queue_dropped("pre_stream")
                self.summary.pre_stream_drops += 1

    # --- the conversation -----------------------------------------------------------------

    async def _converse(self) -> None:
        settings = self._settings
        with trio.move_on_after(settings.start_timeout) as waited:
            await self._started.wait()
        if waited.cancelled_caught:
            self.end(CallEnd("protocol_error", CloseCode.START_TIMEOUT, "stream not started"))
            return
        start = self._start
        assert start is not None
        assistant = start.assistant or settings.default_assistant
        ctx = current_call()
        try:
            if assistant is None:
                self.end(CallEnd("prompt_error", CloseCode.NO_ASSISTANT, "no assistant named"))
                return
            self.summary.assistant = assistant
            if ctx is not None:
                ctx.update(assistant=assistant)
            # The call boundary: the one check of the naming rule (InvalidAssistantName ends
            # the call with 4100); later layers take the validated AssistantName.
            name = validate_assistant_name(assistant)
            t = time.perf_counter()
            prompt = await self._deps.prompts.fetch(name)
            self._deps.metrics.prompt_load_seconds.observe(time.perf_counter() - t)
            version = prompt.version_id or prompt.etag
            self.summary.prompt_version = version
            if ctx is not None:
                ctx.update(prompt_version=version)
            sonic = SonicCallSettings.resolve(settings, prompt.definition)
            logger.info("call prompt loaded", extra=_prompt_fields(prompt) | sonic.log_fields())
            await self._run_conversation(start, sonic)
        except (CarrierError, PromptError, SonicError) as exc:
            self.end_for(exc)

    async def _run_conversation(self, start: CallStarted, sonic: SonicCallSettings) -> None:
        settings = self._settings
        rate = start.media_format.sample_rate
        if rate not in _SONIC_RATES:  # the dialects refuse other rates; guard the invariant
            raise CarrierUnsupportedMedia(f"sample rate {rate} not supported by Nova Sonic")
        session = SonicSession(
            _CountingOpener(self._deps.sonic, self._deps.metrics),
            system_prompt=sonic.system_prompt,
            sample_rate=rate,
            voice_id=sonic.voice_id,
            endpointing_sensitivity=sonic.endpointing_sensitivity,
            max_tokens=sonic.max_tokens,
            top_p=sonic.top_p,
            temperature=sonic.temperature,
            on_event=self._on_sonic_event,
            on_transcript=self._transcript,
            rotate_after=settings.rotate_after,
        )
        self.session = session
        audio_in = functools.partial(
            run_audio_in_pump,
            self._pcm_receive,
            self._send_audio,
            chunk_bytes=rate * 2 * settings.chunk_ms // 1000,
            silence_after=settings.silence_after,
            on_latency=self._cm.added_latency_in,
            statistics=self.summary.audio_in,
        )
        async with trio.open_nursery() as nursery:
            # Caller audio keeps waiting in the pre-stream channel until the first leg is
            # ready; then the pumps start.
            await nursery.start(self._guarded_session, session)
            self._sonic_ready = True
            nursery.start_soon(self._guarded, audio_in, name="audio_in")
            nursery.start_soon(self._guarded, self._write_carrier, name="carrier_writer")

    async def _send_audio(self, pcm: bytes) -> None:
        session = self.session
        assert session is not None
        await session.send_audio(pcm)
        if not self._audio_flowing:  # the call's setup ends with its first audioInput
            self._audio_flowing = True
            self._deps.metrics.call_setup_seconds.observe(time.perf_counter() - self._t0)

    async def _guarded_session(
        self, session: SonicSession, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await session.run(task_status=task_status)
        except SonicSessionEnded:
            self.end(CallEnd("sonic_error", CloseCode.SONIC_SESSION_ENDED, "session ended"))
        except (CarrierError, PromptError, SonicError) as exc:
            self.end_for(exc)
            if not session.ready:
                # The first stream never opened. The call is ending (its scope is cancelled);
                # report "started" so nursery.start() returns instead of raising
                # RuntimeError, and the pumps it would start exit at once.
                task_status.started()

    async def _guarded(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of the call's tasks; a domain error ends the call instead of escaping.

        Errors must be caught here, in the task that raised them: past a nursery they
        arrive wrapped in an ExceptionGroup.
        """
        try:
            await task()
        except (CarrierError, PromptError, SonicError) as exc:
            self.end_for(exc)

    # --- Sonic → carrier ------------------------------------------------------------------

    async def _on_sonic_event(self, ev: output.OutputEvent) -> None:
        """One output event of the current Sonic leg (hot path: audio)."""
        if type(ev) is output.AudioOutput:
            if ev.content_id in self._interrupted:
                return  # already cut off by a barge-in: the caller must not hear it
            codec, chunker = self._codec, self._out_chunker
            assert codec is not None and chunker is not None
            stamp = time.perf_counter()
            if self.summary.first_audio_seconds is None:
                self.summary.first_audio_seconds = stamp - self._t0
                self._cm.first_audio(self.summary.first_audio_seconds)
            send = self._dialect.send
            for frame in chunker.push(codec.encode(ev.pcm)):
                await self._out.put((send(SendAudio(payload=frame)), stamp, len(frame)), len(frame))
        elif isinstance(ev, output.TextOutput):
            if ev.is_barge_in:
                await self._barge_in(ev.content_id)
        elif isinstance(ev, output.ContentEnded):
            if ev.kind is output.ContentKind.AUDIO:
                # One assistant answer (finished or interrupted) is one turn. Bedrock sends
                # completionEnd only when the whole completion ends, not per turn.
                self.summary.turns += 1
            await self._on_content_end(ev)

    async def _on_content_end(self, ev: output.ContentEnded) -> None:
        if ev.stop_reason == "INTERRUPTED":
            await self._barge_in(ev.content_id)
        elif ev.kind is output.ContentKind.AUDIO:
            # End of an assistant answer: send the partial last frame, then a mark so the
            # carrier tells us when the caller has actually heard all of it.
            chunker = self._out_chunker
            codec = self._codec
            assert chunker is not None and codec is not None
            tail = chunker.flush(pad=codec.encode(b"\x00\x00"))
            if tail:
                tail_messages = self._dialect.send(SendAudio(payload=tail))
                await self._out.put((tail_messages, None, len(tail)), len(tail))
            # Unique per call (a flushed mark never comes back, so ids must not repeat).
            mark = self._dialect.send(SendMark(name=f"m{self.summary.marks_sent}"))
            if mark:
                self.summary.marks_sent += 1
                await self._out.put((mark, None, 0), 0)

    async def _barge_in(self, content_id: str | None) -> None:
        """The caller spoke over the assistant: drop queued audio, tell the carrier at once."""
        if content_id is not None:
            if content_id in self._interrupted:
                return  # the text signal and the INTERRUPTED contentEnd name the same turn
            self._interrupted.add(content_id)
        dropped = self._out.clear()
        chunker = self._out_chunker
        if chunker is not None:
            chunker.clear()
        self.summary.barge_ins += 1
        self._cm.barge_in()
        self.playback.flushed(trio.current_time())
        logger.info("barge-in", extra={"event": "barge_in", "frames_dropped": dropped})
        # The queue is empty now, so the clear is the next thing the writer sends.
        await self._out.put((self._dialect.send(ClearAudio()), None, 0), 0)

    async def _transcript(self, role: str, text: str) -> None:
        """A final transcript: to the opt-in call log, never to the service log."""
        who: Role = "caller" if role == "USER" else "assistant"
        await self._deps.call_log.transcript(who, text)

    async def _write_carrier(self) -> None:
        ws = self._ws
        cm = self._cm
        start = self._start
        assert start is not None
        per_second = start.media_format.sample_rate * start.media_format.bytes_per_sample
        try:
            while True:
                if not self._flow_open.is_set():
                    await self._flow_open.wait()
                (messages, stamp, audio_bytes), _queued = await self._out.get()
                for msg in messages:
                    await ws.send_message(msg)
                if audio_bytes:
                    self.playback.sent(trio.current_time(), audio_bytes / per_second)
                if stamp is not None:
                    cm.frames_out += 1
                    cm.added_latency_out(time.perf_counter() - stamp)
        except ConnectionClosed as exc:
            self._carrier_closed(exc)


def _prompt_fields(prompt: StoredPrompt) -> dict[str, object]:
    # Field names avoid the log's redaction guard ("prompt*" is refused): they name the
    # object and its version, never its text.
    fields = prompt_log_fields(prompt)
    return {
        "event": "call_prompt",
        "object_key": fields["prompt_key"],
        "etag": fields["prompt_etag"],
        "version_id": fields["prompt_version_id"],
        "object_bytes": fields["prompt_bytes"],
    }
