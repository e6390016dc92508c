"""One emulated Nova Sonic stream: verify, validate, converse, inject faults.

The session talks to its HTTP/2 stream only through a :class:`StreamPort`, so it knows
nothing of h2 or sockets. Tasks of one session: the reader (verifies each event's signature,
applies the rules, feeds the utterance detector), a single writer (the only task that puts
frames on the stream, so a cancelled turn can never leave half a frame), a watchdog (session
limit, idle timeout, timed faults) and at most one turn at a time.

Why one file of about 650 lines: :class:`StreamSession` is the state machine those tasks
share. The reader, the turn, the watchdog and the fault injector all read and change the same
state (whether the session is closing, the current turn and its cancel scope, the last input
time, the plan that directives change mid-stream, the single output channel) and end the
stream through the same ``_close_with`` path, so that exactly one of them decides how it ends.
Every part with a small interface is already its own module: framing (:mod:`.frames`), the
event rules (:mod:`.rules`), signatures (:mod:`.sigcheck`), turn planning and utterance
detection (:mod:`.conversation`), reply ids (:mod:`.replies`), tool rules and the
tool-result ledger (:mod:`.tools`). The tool uses it sends (on a caller turn, on a schedule
or for a matching text) share the same writer and turn state, so they stay here.
Splitting the rest by task would hand most of the session's fields to each piece.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Callable
from typing import Protocol

import attrs
import trio

from actors.errors import EventStreamError
from actors.sonic.eventstream import HeaderType, Message, MessageDecoder, decode_message
from devkit.emulator.config import EmulatorConfig, StreamPlan, parse_directives
from devkit.emulator.conversation import (
    Conversation,
    SpeechStarted,
    TurnPlan,
    UtteranceDetector,
    UtteranceEnded,
)
from devkit.emulator.frames import (
    FrameProblem,
    corrupt_crc,
    exception_frame,
    input_event_json,
    output_chunk_frame,
)
from devkit.emulator.replies import BARGE_IN_CONTENT, ReplyIds
from devkit.emulator.rules import (
    AudioChunk,
    AudioStarted,
    EventRules,
    PromptStarted,
    SessionEnded,
    SessionStarted,
    TextBlockEnded,
    ToolResultEnded,
    Violation,
)
from devkit.emulator.sigcheck import RequestAuth, event_signature
from devkit.emulator.stats import Counters
from devkit.emulator.tools import ToolLedger, reply_to_text, tool_use_events

__all__ = ["StreamPort", "StreamSession", "VoiceBank"]

MODEL_TIMEOUT_MESSAGE = "Model has timed out in processing the request. Try your request again."
# The idle-timeout text of the real service is not documented; Strands reports the code 531.
IDLE_TIMEOUT_MESSAGE = (
    "InternalErrorCode=531::Timed out waiting for input events ({:g} s without input)"
)


class StreamPort(Protocol):
    """What a session needs from its HTTP/2 stream. ``send``/``end``/``reset`` never
    partially write: each call is complete once it returns."""

    async def receive(self) -> bytes | None:
        """Next DATA payload from the client (its flow-control window is given back as it is
        taken), or None once the client ended its side."""
        ...

    async def send(self, data: bytes) -> None:
        """Send response bytes, waiting for the client's flow-control window."""
        ...

    def end(self) -> None:
        """Send END_STREAM."""
        ...

    def reset(self) -> None:
        """Reset the stream abruptly (RST_STREAM INTERNAL_ERROR)."""
        ...

    def goaway(self) -> None:
        """Send GOAWAY and drop the whole connection."""
        ...


class VoiceBank(Protocol):
    """Source of synthetic assistant audio (the emulator caches it)."""

    def audio(self, *, text: str, voice_id: str, sample_rate: int, seconds: float) -> bytes:
        """PCM16LE of ``seconds`` of speech."""
        ...


_END = object()
_RESET = object()


@attrs.frozen
class _Corrupt:
    frame: bytes


@attrs.define
class _Turn:
    plan: TurnPlan
    ids: ReplyIds
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    responding: bool = False
    open_blocks: list[tuple[str, str]] = attrs.field(factory=list)  # (content id, kind)
    audio_bytes: int = 0


class StreamSession:
    """Runs one accepted stream until it ends; see the module docstring."""

    def __init__(
        self,
        *,
        port: StreamPort,
        auth: RequestAuth,
        config: EmulatorConfig,
        plan: StreamPlan,
        counters: Counters,
        voices: VoiceBank,
        wall_ms: Callable[[], int],
    ) -> None:
        self._port = port
        self._auth = auth
        self._config = config
        self._plan = plan
        self._counters = counters
        self._voices = voices
        self._wall_ms = wall_ms
        self._prior = auth.seed_signature
        self._keys: dict[str, bytes] = {}
        self._decoder = MessageDecoder()
        self._rules = EventRules()
        self._out_send, self._out_recv = trio.open_memory_channel[object](0)
        self._writer_done = trio.Event()
        self._plan_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._opened = 0.0
        self._last_input = 0.0
        self._closing = False
        self._stalled = False
        self._input_closed = False
        self._completed = False
        self._pause = config.endpointing_pause(None)
        self._voice = "matthew"
        self._output_rate = 24000
        self._prompt_name = ""
        self._conversation: Conversation | None = None
        self._detector: UtteranceDetector | None = None
        self._turn: _Turn | None = None
        self._totals = [0, 0, 0, 0]
        self._tools: tuple[str, ...] = ()
        self._ledger = ToolLedger()

    @property
    def closing(self) -> bool:
        """True once the session started ending the stream (exception, fault or close)."""
        return self._closing

    @property
    def completed(self) -> bool:
        """True when the client closed the session cleanly (sessionEnd, END_STREAM)."""
        return self._completed

    async def run(self) -> None:
        """Serve the stream; returns when it is over (the caller then tidies up h2 state)."""
        self._opened = self._last_input = trio.current_time()
        try:
            await self._serve()
        finally:
            self._counters.tool_uses_unanswered += len(self._ledger.pending)

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            nursery.start_soon(self._watchdog)
            await self._read_loop()
            # The client ended its side: close ours unless a fault keeps the stream open.
            if self._stalled:
                await trio.sleep_forever()
            if not self._closing:
                self._closing = True
                await self._cancel_turn()
                await self._emit(_END, final=True)
                await self._writer_done.wait()
            nursery.cancel_scope.cancel()

    # --- output ------------------------------------------------------------------------

    async def _emit(self, item: object, *, final: bool = False) -> None:
        if (self._closing and not final) or self._stalled:
            return
        await self._out_send.send(item)

    async def _emit_event(self, nova_event_json: bytes) -> None:
        await self._emit(output_chunk_frame(nova_event_json))

    async def _writer(self) -> None:
        try:
            async for item in self._out_recv:
                if item is _END:
                    self._port.end()
                    return
                if item is _RESET:
                    self._port.reset()
                    return
                if isinstance(item, _Corrupt):
                    await self._port.send(item.frame)
                    self._port.end()
                    return
                assert isinstance(item, bytes)
                await self._port.send(item)
                self._counters.events_out += 1
        finally:
            self._writer_done.set()

    async def _finish(
        self, exception_type: str, message: str, *, count_fault: bool = False, **extra: object
    ) -> None:
        """End the stream with an exception frame (what Bedrock does on every error)."""
        await self._close_with(
            exception_frame(exception_type, message, **extra), count_fault=count_fault
        )

    async def _close_with(self, item: object, *, count_fault: bool) -> None:
        """Stop the turn, write ``item`` (then END_STREAM for frames), end the session."""
        if self._closing or self._stalled:
            return
        self._closing = True
        if count_fault:
            self._counters.faults_injected += 1
        await self._cancel_turn()
        await self._emit(item, final=True)
        if isinstance(item, bytes):
            await self._emit(_END, final=True)
        await self._writer_done.wait()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _reject(self, message: str) -> None:
        self._counters.validation_errors += 1
        await self._finish("validationException", message)

    # --- input -------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            data = await self._port.receive()
            if data is None:
                return
            if self._closing:
                continue
            try:
                messages = self._decoder.feed(data)
            except EventStreamError as exc:
                await self._reject(f"Malformed event-stream message: {exc}")
                continue
            for message in messages:
                await self._on_message(message)
                if self.closing:
                    break

    async def _on_message(self, outer: Message) -> None:
        date = next((h for h in outer.headers if h.name == ":date"), None)
        signature = outer.get(":chunk-signature")
        if (
            date is None
            or date.type is not HeaderType.TIMESTAMP
            or not isinstance(signature, bytes)
        ):
            self._counters.signature_failures += 1
            await self._reject(
                "Every event must carry :date (timestamp) and :chunk-signature headers"
            )
            return
        assert isinstance(date.value, int)
        skew = abs(date.value - self._wall_ms()) / 1000
        if skew > self._config.max_clock_skew:
            self._counters.signature_failures += 1
            await self._reject(
                f"Signature expired: event :date is {skew:.0f} s away from server time"
            )
            return
        expected = event_signature(
            secret=self._auth.secret_access_key,
            region=self._auth.region,
            service=self._auth.service,
            prior_signature=self._prior,
            date_ms=date.value,
            payload=outer.payload,
            keys=self._keys,
        )
        if not hmac.compare_digest(expected, signature):
            self._counters.signature_failures += 1
            await self._reject(
                "The event signature we calculated does not match the signature you provided "
                "(chained :chunk-signature)."
            )
            return
        self._prior = signature.hex()
        if not outer.payload:
            self._input_closed = True
            return
        if self._input_closed:
            await self._reject("Event received after the signed end-of-input frame")
            return
        try:
            inner = decode_message(outer.payload)
        except EventStreamError as exc:
            await self._reject(f"Malformed inner event message: {exc}")
            return
        nova = input_event_json(inner)
        if isinstance(nova, FrameProblem):
            await self._reject(nova.message)
            return
        self._counters.events_in += 1
        self._last_input = trio.current_time()
        await self._on_event(self._rules.feed(nova))

    async def _on_event(self, event: object) -> None:
        if isinstance(event, Violation):
            await self._reject(event.message)
        elif isinstance(event, AudioChunk):
            await self._on_audio(event.pcm)
        elif isinstance(event, SessionStarted):
            self._pause = self._config.endpointing_pause(event.endpointing)
        elif isinstance(event, PromptStarted):
            self._voice, self._output_rate = event.voice_id, event.output_sample_rate
            self._prompt_name = event.prompt_name
            self._tools = event.tools
        elif isinstance(event, ToolResultEnded):
            await self._on_tool_result(event)
        elif isinstance(event, TextBlockEnded):
            await self._on_text(event)
        elif isinstance(event, AudioStarted):
            self._detector = UtteranceDetector(
                sample_rate=event.sample_rate,
                pause=self._pause,
                threshold_dbfs=self._config.speech_threshold_dbfs,
                min_speech=self._config.min_speech_seconds,
            )
        elif isinstance(event, SessionEnded):
            self._completed = True
            await self._cancel_turn()

    async def _on_text(self, event: TextBlockEnded) -> None:
        if event.role == "SYSTEM":
            try:
                overrides = parse_directives(event.text)
                self._plan = self._plan.with_overrides(overrides)
            except (ValueError, TypeError) as exc:
                await self._reject(f"Emulator directive in the system prompt: {exc}")
                return
            self._conversation = Conversation(seed=self._config.seed, system_prompt=event.text)
            self._plan_changed.set()
        elif event.interactive:
            greeting = event.audio_chunks_before == 0  # right after the audio block opened
            self._counters.text_received(event.text)
            self._counters.greetings += greeting
            pattern = self._config.tool_use_text_pattern
            if pattern is not None and self._tools and re.search(pattern, event.text):
                await self._send_tool_use(self._fresh_ids())
            elif self._conversation is not None and self._turn is None:
                reply = reply_to_text(event.text, greeting=greeting)
                self._start_turn(UtteranceEnded(0.0, 0.0), echo_user=False, reply=reply)

    async def _on_tool_result(self, event: ToolResultEnded) -> None:
        problem = self._ledger.answer(event.tool_use_id)
        if problem is not None:
            await self._reject(problem)
            return
        self._counters.tool_results += 1
        self._counters.tool_results_out_of_order = self._ledger.out_of_order
        if self._conversation is not None and self._turn is None:
            name = self._ledger.names[event.tool_use_id]
            failed = '"error"' in event.content
            reply = f"Sorry, {name} did not work." if failed else f"Done: {name} finished."
            self._start_turn(UtteranceEnded(0.0, 0.0), echo_user=False, reply=reply)

    def _fresh_ids(self) -> ReplyIds:
        assert self._conversation is not None
        return ReplyIds(
            session_id=self._conversation.session_id,
            prompt_name=self._prompt_name,
            completion_id=self._conversation.new_id(),
        )

    async def _send_tool_use(self, ids: ReplyIds) -> None:
        """One ``toolUse`` of the configured (or first offered) tool, in its own block."""
        if not self._tools or self._conversation is None:
            return  # the model can only call tools it was offered
        name = self._config.tool_use_name or self._tools[0]
        tool_use_id = self._conversation.new_id()
        self._ledger.issue(tool_use_id, name)
        self._counters.tool_uses += 1
        for ev in tool_use_events(
            ids={"sessionId": ids.session_id, "promptName": ids.prompt_name,
                 "completionId": ids.completion_id},
            content_id=self._conversation.new_id(),
            tool_name=name,
            tool_use_id=tool_use_id,
            content=json.dumps({"reason": "emulated"}),
        ):  # fmt: skip
            await self._emit_event(ev)

    async def _on_audio(self, pcm: bytes) -> None:
        self._counters.audio_bytes_in += len(pcm)
        if self._detector is None:
            return
        for event in self._detector.feed(pcm):
            if isinstance(event, SpeechStarted):
                turn = self._turn
                if turn is not None and turn.responding:
                    await self._barge_in(turn)
            elif self._turn is None and self._conversation is not None:
                self._start_turn(event, echo_user=True)

    # --- turns -------------------------------------------------------------------------

    def _start_turn(
        self, utterance: UtteranceEnded, *, echo_user: bool, reply: str | None = None
    ) -> None:
        assert self._conversation is not None and self._nursery is not None
        plan = self._conversation.plan_turn(utterance, reply)
        ids = ReplyIds(
            session_id=self._conversation.session_id,
            prompt_name=self._prompt_name,
            completion_id=plan.completion_id,
        )
        self._turn = turn = _Turn(plan, ids)
        self._counters.turns += 1
        self._nursery.start_soon(self._run_turn, turn, echo_user)

    async def _cancel_turn(self) -> None:
        turn = self._turn
        if turn is not None:
            turn.scope.cancel()
            await turn.done.wait()

    async def _usage(self, ids: ReplyIds, delta: tuple[int, int, int, int]) -> None:
        self._totals = [a + b for a, b in zip(self._totals, delta, strict=True)]
        total = (self._totals[0], self._totals[1], self._totals[2], self._totals[3])
        await self._emit_event(ids.usage(delta=delta, total=total))

    async def _text_block(
        self, turn: _Turn, content_id: str, role: str, stage: str, text: str, stop: str
    ) -> None:
        ids = turn.ids
        turn.open_blocks.append((content_id, "TEXT"))
        await self._emit_event(ids.text_start(content_id=content_id, role=role, stage=stage))
        await self._emit_event(ids.text_output(content_id=content_id, role=role, content=text))
        await self._emit_event(
            ids.content_end(content_id=content_id, kind="TEXT", stop_reason=stop)
        )
        turn.open_blocks.pop()

    async def _run_turn(self, turn: _Turn, echo_user: bool) -> None:
        plan, ids, p = turn.plan, turn.ids, self._plan
        try:
            with turn.scope:
                await self._emit_event(ids.completion_start())
                if echo_user:
                    await self._text_block(
                        turn, plan.user_content_id, "USER", "FINAL", plan.user_text, "PARTIAL_TURN"
                    )
                    await self._usage(ids, (plan.input_speech_tokens, 0, 0, 0))
                    if p.tool_use_turn is not None and plan.number == round(p.tool_use_turn):
                        await self._send_tool_use(ids)  # asynchronous: the reply goes on
                await trio.sleep(p.time_to_first_audio)
                turn.responding = True
                await self._text_block(
                    turn,
                    plan.speculative_content_id,
                    "ASSISTANT",
                    "SPECULATIVE",
                    plan.assistant_text,
                    "PARTIAL_TURN",
                )
                pcm = self._voices.audio(
                    text=plan.assistant_text,
                    voice_id=self._voice,
                    sample_rate=self._output_rate,
                    seconds=p.reply_seconds,
                )
                step = max(2, round(self._config.output_chunk_seconds * self._output_rate) * 2)
                turn.open_blocks.append((plan.audio_content_id, "AUDIO"))
                await self._emit_event(
                    ids.audio_start(content_id=plan.audio_content_id, sample_rate=self._output_rate)
                )
                started = trio.current_time()
                for offset in range(0, len(pcm), step):
                    chunk = pcm[offset : offset + step]
                    await self._emit_event(
                        ids.audio_output(content_id=plan.audio_content_id, pcm=chunk)
                    )
                    turn.audio_bytes += len(chunk)
                    self._counters.audio_bytes_out += len(chunk)
                    # Generated faster than real time: pace by audio duration / speed factor.
                    await trio.sleep(len(chunk) / 2 / self._output_rate / max(p.audio_speed, 1e-6))
                await self._emit_event(
                    ids.content_end(
                        content_id=plan.audio_content_id, kind="AUDIO", stop_reason="END_TURN"
                    )
                )
                turn.open_blocks.pop()
                # The caller hears the reply in real time; barge-in stays possible until then.
                await trio.sleep_until(started + len(pcm) / 2 / self._output_rate)
                await self._text_block(
                    turn,
                    plan.final_content_id,
                    "ASSISTANT",
                    "FINAL",
                    plan.assistant_text,
                    "END_TURN",
                )
                speech_tokens = max(1, round(len(pcm) / 2 / self._output_rate * 25))
                await self._usage(ids, (0, 0, speech_tokens, plan.output_text_tokens))
                await self._emit_event(ids.completion_end(stop_reason="END_TURN"))
        finally:
            if self._turn is turn:
                self._turn = None
            turn.done.set()

    async def _barge_in(self, turn: _Turn) -> None:
        """Caller spoke over the assistant: stop, then send the real interruption signal."""
        turn.scope.cancel()
        await turn.done.wait()
        self._counters.barge_ins += 1
        ids = turn.ids
        # Pipecat observed the AUDIO contentEnd (END_TURN) before the TEXT one (§3.3).
        for content_id, kind in reversed(turn.open_blocks):
            if kind == "AUDIO":
                await self._emit_event(
                    ids.content_end(content_id=content_id, kind=kind, stop_reason="END_TURN")
                )
            elif content_id != turn.plan.final_content_id:
                await self._emit_event(
                    ids.content_end(content_id=content_id, kind=kind, stop_reason="PARTIAL_TURN")
                )
        final_id = turn.plan.final_content_id
        if (final_id, "TEXT") not in turn.open_blocks:
            await self._emit_event(
                ids.text_start(content_id=final_id, role="ASSISTANT", stage="FINAL")
            )
        await self._emit_event(
            ids.text_output(content_id=final_id, role="ASSISTANT", content=BARGE_IN_CONTENT)
        )
        await self._emit_event(
            ids.content_end(content_id=final_id, kind="TEXT", stop_reason="INTERRUPTED")
        )
        speech_tokens = (
            max(1, round(turn.audio_bytes / 2 / self._output_rate * 25)) if turn.audio_bytes else 0
        )
        await self._usage(ids, (0, 0, speech_tokens, turn.plan.output_text_tokens))
        await self._emit_event(ids.completion_end(stop_reason="INTERRUPTED"))

    # --- timers and faults -------------------------------------------------------------

    def _next_due(self, fired: set[str]) -> tuple[float, str] | None:
        p = self._plan
        due: list[tuple[float, str]] = [(self._opened + p.session_limit, "session_limit")]
        if p.idle_timeout is not None:
            due.append((self._last_input + p.idle_timeout, "idle"))
        for name in (
            "throttle_after",
            "error_after",
            "internal_error_after",
            "rst_after",
            "stall_after",
            "corrupt_after",
            "goaway_after",
            "tool_use_after",
        ):
            after = getattr(p, name)
            if after is not None and name not in fired:
                due.append((self._opened + after, name))
        return min(due) if due else None

    async def _watchdog(self) -> None:
        fired: set[str] = set()
        while True:
            due = self._next_due(fired)
            self._plan_changed = trio.Event()
            if due is None:
                await self._plan_changed.wait()
                continue
            deadline, name = due
            with trio.move_on_at(deadline):
                await self._plan_changed.wait()
                continue
            if name == "idle":
                if self._last_input + (self._plan.idle_timeout or math.inf) > trio.current_time():
                    continue  # input arrived meanwhile
                await self._finish(
                    "validationException", IDLE_TIMEOUT_MESSAGE.format(self._plan.idle_timeout)
                )
                return
            fired.add(name)
            await self._fire(name)

    async def _fire(self, name: str) -> None:
        if self._closing or self._stalled:
            return
        if name != "session_limit":
            by_kind = self._counters.faults_by_kind
            by_kind[name] = by_kind.get(name, 0) + 1
        if name == "session_limit":
            await self._finish("modelTimeoutException", MODEL_TIMEOUT_MESSAGE, count_fault=True)
        elif name == "throttle_after":
            await self._finish(
                "throttlingException",
                "Too many requests, please wait before trying again.",
                count_fault=True,
            )
        elif name == "error_after":
            await self._finish(
                "modelStreamErrorException",
                "The model stream failed (emulated).",
                count_fault=True,
                originalStatusCode=500,
                originalMessage="emulated model error",
            )
        elif name == "internal_error_after":
            await self._finish(
                "internalServerException",
                "The server encountered an internal error (emulated).",
                count_fault=True,
            )
        elif name == "rst_after":
            await self._close_with(_RESET, count_fault=True)
        elif name == "corrupt_after":
            bad = corrupt_crc(output_chunk_frame(b'{"event":{"completionStart":{}}}'))
            await self._close_with(_Corrupt(bad), count_fault=True)
        elif name == "stall_after":
            self._counters.faults_injected += 1
            self._stalled = True
        elif name == "goaway_after":
            self._counters.faults_injected += 1
            self._port.goaway()
        elif name == "tool_use_after" and self._conversation is not None:
            ids = self._fresh_ids()
            await self._emit_event(ids.completion_start())
            await self._send_tool_use(ids)
            await self._emit_event(ids.completion_end(stop_reason="END_TURN"))
