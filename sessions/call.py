"""One call: a carrier link and a conversation joined by two channels, in one task tree.

::

    CallChannel.run ── nursery (the call; cancelling it ends everything below)
      ├── carrier link (sessions/carrier_link.py): carrier WebSocket, dialect, codec
      │     caller PCM ──── caller-audio channel (bounded: the pre-stream buffer) ───┐
      │     carrier frames ◄── assistant queue (bounded, cleared on barge-in) ◄──┐  │
      └── conversation (sessions/conversation.py): prompt, Sonic session, pumps ─┘◄─┘

The call waits for the carrier's start (its media format and assistant), then starts the
conversation. Each half ends the call through :meth:`CallChannel.end` with one
:class:`~sessions.call_records.CallEnd`, which cancels the tree; the first end wins. The
carrier gets that close code and reason; an unexpected exception escapes to the
supervisor, which ends only this call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from actors.assistant_names import validate_assistant_name
from actors.assistant_tools import ToolSpec
from actors.audio_pumps import AssistantCommand, OutboundQueue, PcmFrame
from actors.close_codes import CloseCode
from actors.errors import CarrierError, PromptError, SonicError
from actors.sonic.session import SonicSessionEnded
from actors.tool_calls import ToolResult
from actors.tool_runner import ToolRunner
from sessions.call_records import CallDeps, CallEnd, CallSummary, end_for_error
from sessions.call_tools import CallTools, CallTransfer, open_call_tool_runner
from sessions.carrier_link import CarrierLink
from sessions.conversation import Conversation
from sessions.dialects.base import CallStarted, Dialect, HangUp
from sessions.fallback import TRANSFER_TIMEOUT, FallbackTransfer, needs_fallback, queue_clip
from sessions.heard_log import HeardLog
from sessions.logs import current_call
from sessions.metrics import CallMetrics

logger = logging.getLogger("novavoice.call")

_DOMAIN_ERRORS = (CarrierError, PromptError, SonicError)
KEYPAD_KEYS = 64
"""Keys that may wait between the carrier link and the conversation."""


class CallChannel:
    """The task tree of one admitted call; the supervisor builds one per call and runs it."""

    def __init__(
        self,
        ws: WebSocketConnection,
        dialect: Dialect,
        deps: CallDeps,
        cm: CallMetrics,
        *,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        self._ws = ws
        self._dialect = dialect
        self._deps = deps
        self._cm = cm
        self._settings = deps.settings
        self.summary = CallSummary()
        self._scope = trio.CancelScope()
        self._t0 = time.perf_counter()
        # The two channels that join the halves. Caller audio waits in the first until the
        # Sonic stream is open (the pre-stream buffer, in 20 ms frames); assistant output
        # waits in the second, bounded in seconds of audio.
        frames = max(1, int(self._settings.pre_stream_seconds * 50))
        self._caller_send, self._caller_receive = trio.open_memory_channel[PcmFrame](frames)
        self._assistant: OutboundQueue[AssistantCommand] = OutboundQueue(
            self._settings.outbound_seconds
        )
        # Keypad keys, carrier link → conversation (bounded: a key is a byte; 64 is a long
        # entry typed while the conversation was busy).
        self._keypad_send, self._keypad_receive = trio.open_memory_channel[str](KEYPAD_KEYS)
        self.heard = HeardLog(deps.call_log)
        """What the caller heard of each assistant turn (the call log's lines)."""
        self.link = CarrierLink(
            ws,
            dialect,
            cm,
            caller_audio=self._caller_send,
            assistant=self._assistant,
            keypad=self._keypad_send,
            heard=self.heard,
            settings=self._settings,
            on_started=on_started,
            message_ms=self._settings.audio_message_ms,
        )
        self.conversation: Conversation | None = None
        self.control: FallbackTransfer | None = None
        """How the fallback transfers (:class:`~sessions.call_tools.CallTransfer`, set once
        the carrier started; ``None`` before: calls that cannot go on are ended instead)."""
        self.tools: ToolRunner | None = None
        """The call's tool runner, once the carrier started (its statistics)."""

    # --- ending ---------------------------------------------------------------------------

    def end(self, end: CallEnd) -> None:
        """End the call for ``end`` (the first end wins) and cancel its task tree."""
        if self.summary.end is None:
            self.summary.end = end
            self._cm.end_reason = end.reason
        self._scope.cancel(reason=end.reason)

    def end_for(self, exc: Exception) -> None:
        """End the call because of a domain error, logging it once."""
        if isinstance(exc, SonicSessionEnded):
            self.end(CallEnd("sonic_error", CloseCode.SONIC_SESSION_ENDED, "session ended"))
            return
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
                    nursery.start_soon(self._run_link, name="carrier_link")
                    nursery.start_soon(self._enforce_limits, name="call_limits")
                    conversation = await self._wait_for_start(nursery)
                    if conversation is not None:
                        await nursery.start(self._run_conversation, conversation)
                        self.link.conversation_ready = True
        except Exception:
            self.end(CallEnd("internal_error", CloseCode.INTERNAL_ERROR, "internal error"))
            raise
        finally:
            if self.summary.end is None:
                self.end(CallEnd("shutdown", CloseCode.GOING_AWAY, "server shutting down"))
            end = self.summary.end
            assert end is not None
            # Turns still playing are settled as they stand, and their call-log lines written.
            self.link.finish_turns()
            self.heard.flush()
            self._summarise()
            with (
                trio.move_on_after(self._settings.close_timeout, shield=True),
                contextlib.suppress(
                    ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError
                ),
            ):
                if end.code == CloseCode.ASSISTANT_HANG_UP:
                    # The carrier's own hang-up first (Asterisk HANGUP; none on Twilio).
                    for message in self._dialect.send(HangUp()):
                        await self._ws.send_message(message)
                await self._ws.aclose(code=end.code, reason=end.text)
        return self.summary

    async def _run_link(self) -> None:
        try:
            how = await self.link.run()
        except CarrierError as exc:
            self.end_for(exc)
        else:
            if how == "hangup":
                self.end(CallEnd("hangup", CloseCode.NORMAL, "call ended"))
            else:
                self.end(CallEnd("disconnected", CloseCode.NORMAL, "carrier disconnected"))

    async def _enforce_limits(self) -> None:
        """End the call at its maximum duration, or once it has been idle for too long.

        Sleeps until the earliest moment the idle limit could be reached; activity in the
        meantime (caller speech, assistant audio, stamped by the carrier link) only moves
        that moment, so it wakes about once per idle period, never on a polling tick.
        """
        settings = self._settings
        with trio.move_on_after(settings.max_call_duration):
            while True:
                idle_at = self.link.last_activity + settings.idle_timeout
                if trio.current_time() >= idle_at:
                    self._limit_reached(
                        CallEnd("idle_timeout", CloseCode.IDLE_TIMEOUT, "caller inactive")
                    )
                    return
                await trio.sleep_until(idle_at)
        self._limit_reached(
            CallEnd("max_duration", CloseCode.MAX_DURATION, "maximum call duration reached")
        )

    def _limit_reached(self, end: CallEnd) -> None:
        if self.summary.end is None:
            logger.info("call limit reached", extra={"event": "call_limit", "limit": end.reason})
        self.end(end)

    async def _wait_for_start(self, nursery: trio.Nursery) -> Conversation | None:
        """The conversation for the carrier's start, or ``None`` if the call ended."""
        with trio.move_on_after(self._settings.start_timeout):
            await self.link.wait_started()
        start = self.link.start
        if start is None:
            self.end(CallEnd("protocol_error", CloseCode.START_TIMEOUT, "stream not started"))
            return None
        self.summary.call_id = start.call_id
        assistant = start.assistant or self._settings.default_assistant
        if assistant is None:
            self.end(CallEnd("prompt_error", CloseCode.NO_ASSISTANT, "no assistant named"))
            return None
        self.summary.assistant = assistant
        ctx = current_call()
        if ctx is not None:
            ctx.update(assistant=assistant)
        try:
            # The call boundary: the one check of the naming rule (InvalidAssistantName ends
            # the call with 4100); later layers take the validated AssistantName.
            name = validate_assistant_name(assistant)
            runner = await nursery.start(self._run_tools, start, name, name="tool_runner")
            self.conversation = Conversation(
                self._deps,
                self._cm,
                assistant=name,
                sample_rate=start.media_format.sample_rate,
                caller_audio=self._caller_receive,
                assistant_output=self._assistant,
                call_started_at=self._t0,
                keypad=self._keypad_receive,
                heard=self.heard,
                tool_runner=runner,
            )
        except (CarrierError, PromptError) as exc:
            self.end_for(exc)
            return None
        return self.conversation

    async def _run_tools(
        self, start: CallStarted, assistant: str, *, task_status: trio.TaskStatus[ToolRunner]
    ) -> None:
        """The call's tool runner, for as long as the call lasts (``sessions/call_tools.py``)."""
        control = CallTools(
            start=start,
            queue=self._assistant,
            playback=self.link.statistics.playback,
            end=self.end,
            settings=self._deps.tools,
        )
        if self.control is None:  # tests may put their own in
            self.control = CallTransfer(
                control, settings=self._deps.tools, twilio_auth_token=self._deps.twilio_auth_token
            )
        async with open_call_tool_runner(
            self._tool_specs,
            control,
            self._deliver_tool_result,
            assistant=assistant,
            settings=self._deps.tools,
            twilio_auth_token=self._deps.twilio_auth_token,
        ) as runner:
            self.tools = runner
            task_status.started(runner)
            await trio.sleep_forever()

    def _tool_specs(self) -> tuple[ToolSpec, ...]:
        conversation = self.conversation
        return () if conversation is None else conversation.tool_specs

    async def _deliver_tool_result(self, result: ToolResult) -> None:
        # Results exist only for tool uses, which come after the conversation started.
        conversation = self.conversation
        assert conversation is not None
        await conversation.deliver_tool_result(result)

    async def _run_conversation(
        self, conversation: Conversation, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await conversation.run(task_status=task_status)
        except _DOMAIN_ERRORS as exc:
            pending_start = not conversation.ready
            if needs_fallback(exc):
                if pending_start:
                    task_status.started()  # the call goes on while the clip plays
                    pending_start = False
                if await self._fall_back(conversation, exc):
                    return
            self.end_for(exc)
            if pending_start:
                # It failed before Sonic was ready. The call is ending (its scope is
                # cancelled); report "started" so nursery.start() returns instead of
                # raising RuntimeError.
                task_status.started()

    async def _fall_back(self, conversation: Conversation, exc: Exception) -> bool:
        """The assistant cannot go on: play the fallback clip to the caller, then transfer
        the call if its assistant has a transfer target and call control is wired in.
        ``True`` if the call was transferred (and ended); otherwise the caller ends it."""
        start = self.link.start
        assert start is not None  # the conversation only exists after the carrier's start
        definition = conversation.definition
        wanted = definition.fallback_audio if definition is not None else None
        wanted = wanted or self._settings.fallback_audio
        clip, substituted = self._deps.fallback_clips.for_call(
            wanted, start.media_format.sample_rate
        )
        fields: dict[str, object] = {"event": "fallback", "error": type(exc).__name__}
        if clip is None:
            self.summary.fallback = "no_clip"
            logger.warning("no fallback clip for this call's sample rate", extra=fields)
        else:
            if substituted:
                fields["wanted_clip"] = wanted
            logger.info(
                "fallback clip playing", extra=fields | {"clip": clip.name, "seconds": clip.seconds}
            )
            turn = conversation.turn + 1
            self.heard.clip(turn, clip.name, clip.text, clip.seconds)
            heard = None
            with trio.move_on_after(clip.seconds + self._settings.fallback_play_margin):
                await queue_clip(self._assistant, clip, turn=turn)
                heard = await self.link.wait_played(turn)
            self.summary.fallback = "heard" if heard is not None and heard.complete else "cut"
        self._deps.metrics.fallbacks.labels(self.summary.fallback).inc()
        target = definition.transfer_target() if definition is not None else None
        if target is None:
            return False
        if self.control is None:
            logger.warning("fallback cannot transfer: no call control", extra=fields)
            return False
        transferred = False
        with trio.move_on_after(TRANSFER_TIMEOUT):
            transferred = await self.control.transfer(target)
        if not transferred:
            return False
        if isinstance(exc, SonicError):
            self._deps.metrics.sonic_error(exc)
        self.end(CallEnd("transferred", CloseCode.TRANSFERRED, "call transferred"))
        return True

    def _summarise(self) -> None:
        s, link = self.summary, self.link.statistics
        s.frames_in = self._cm.frames_in
        s.frames_out = self._cm.frames_out
        s.marks_sent, s.marks_played = link.marks_sent, link.marks_played
        s.pre_stream_drops = link.pre_stream_drops
        s.audio_in_drops = link.audio_in_drops
        s.rate_limited_drops = link.rate_limited_drops
        s.dtmf_digits = link.dtmf_digits
        s.audio_sent_s = link.playback.sent_s
        s.audio_heard_s = link.playback.heard_s(trio.current_time())
        conversation = self.conversation
        if conversation is not None:
            c = conversation.statistics
            s.prompt_version = c.prompt_version
            s.first_audio_seconds = c.first_audio_seconds
            s.turns, s.barge_ins, s.audio_in = c.turns, c.barge_ins, c.audio_in
            session = conversation.session
            s.sonic_streams = session.statistics.legs_opened if session is not None else 0
            if session is not None:
                st = session.statistics
                s.sonic_recoveries, s.sonic_recovery_attempts = st.recoveries, st.recovery_attempts
                s.sonic_failures = dict(st.recovery_failures)
