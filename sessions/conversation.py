"""The Sonic half of a call: the assistant's prompt, its Sonic session and the two pumps.

::

    Conversation.run ── loads the prompt, then a nursery
      ├── Sonic session (actors/sonic/session.py): one stream at a time, rotated before
      │     Bedrock's limit; its output events go down a channel
      ├── audio-in pump: caller-audio channel → ~32 ms audioInput events (comfort silence
      │     when the carrier is quiet) → the session
      ├── output relay: session output channel → assistant commands into the outbound queue
      │     (audio; a barge-in clears the queue then asks for the carrier's clear; the end
      │     of an answer asks for a mark); final transcripts → the opt-in call log; tool
      │     uses → the tool runner (``submit`` never waits for the tool), or at once an
      │     error result when the assistant has no runner
      └── keypad collector (when the carrier link gives keys): keys → entries under the
            assistant's ``dtmf:`` policy (:mod:`actors.keypad`) → cross-modal text to Sonic

The greeting, the tools offered to the model and the keypad policy come from the assistant's
definition. Tool results come back through :meth:`Conversation.deliver_tool_result` (the
runner's result sink), which hands each to the session: exactly one per tool use.

It knows nothing of carriers: PCM16 comes in on one channel and goes out on another, at
the sample rate the call gives it. Failures leave :meth:`Conversation.run` as one domain
error (never a group); the call maps it to a close code.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from contextlib import AbstractAsyncContextManager

import attrs
import trio

from actors.assistant_definition import AssistantDefinition
from actors.assistant_names import AssistantName
from actors.assistant_tools import ToolSpec
from actors.audio_pumps import (
    AnswerEnded,
    AssistantAudio,
    AssistantCommand,
    AudioInStatistics,
    ClearPlayback,
    OutboundQueue,
    PcmFrame,
    run_audio_in_pump,
)
from actors.errors import CarrierUnsupportedMedia, PromptError
from actors.exception_groups import unwrap_lone_exception
from actors.keypad import DtmfCollector, DtmfPolicy, KeypadEntry, keypad_text
from actors.prompt_fetch import prompt_log_fields
from actors.prompt_store import StoredPrompt
from actors.sonic import output
from actors.sonic.session import (
    SessionOutput,
    SonicOpener,
    SonicSession,
    SonicStreamLike,
    Transcript,
)
from actors.tool_calls import ToolResult, ToolRunnerLike, ToolUse
from sessions.call_records import CallDeps, SonicCallSettings
from sessions.heard_log import HeardLog
from sessions.logs import Role, current_call
from sessions.metrics import CallMetrics, Metrics

logger = logging.getLogger("novavoice.call")

SONIC_RATES = (8000, 16000, 24000)


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


@attrs.define(eq=False, kw_only=True)
class ConversationStatistics:
    """What happened in the conversation (for the call-end log line)."""

    prompt_version: str | None = None
    first_audio_seconds: float | None = None
    """Seconds from the call's start to the first assistant audio from Sonic."""
    turns: int = 0
    barge_ins: int = 0
    tool_uses: int = 0
    keypad_entries: int = 0
    audio_in: AudioInStatistics = attrs.field(factory=AudioInStatistics)


class Conversation:
    """One call's conversation with an assistant (see the module docstring)."""

    def __init__(
        self,
        deps: CallDeps,
        cm: CallMetrics,
        *,
        assistant: AssistantName,
        sample_rate: int,
        caller_audio: trio.MemoryReceiveChannel[PcmFrame],
        assistant_output: OutboundQueue[AssistantCommand],
        call_started_at: float,
        tool_runner: ToolRunnerLike | None = None,
        keypad: trio.MemoryReceiveChannel[str] | None = None,
        heard: HeardLog | None = None,
    ) -> None:
        if sample_rate not in SONIC_RATES:  # the dialects refuse other rates already
            raise CarrierUnsupportedMedia(f"sample rate {sample_rate} not supported by Nova Sonic")
        self._deps = deps
        self._cm = cm
        self._assistant = assistant
        self._rate = sample_rate
        self._caller_audio = caller_audio
        self._out = assistant_output
        self._t0 = call_started_at
        self.statistics = ConversationStatistics()
        self.session: SonicSession | None = None
        """The Sonic session, once the prompt is loaded (its rotation statistics)."""
        self.ready = False
        self.tool_specs: tuple[ToolSpec, ...] = ()
        """The definition's ``tools:`` (the executors' settings), once the prompt is loaded."""
        """True once the first Sonic stream is open and caller audio flows to it."""
        self._audio_flowing = False
        self._interrupted: set[str] = set()
        self._tool_runner = tool_runner
        self._keypad = keypad
        self._session_ready = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.definition: AssistantDefinition | None = None
        """The assistant's definition, once its prompt is loaded (the fallback reads it)."""
        self.turn = 0
        """The last assistant turn (AUDIO content block) started, numbered from 1."""
        self._heard = heard if heard is not None else HeardLog(deps.call_log)
        self._previews: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the prompt, open Sonic, and converse until cancelled or a failure.

        Starts (``task_status.started()``) once caller audio flows to Sonic. Raises one
        :class:`~actors.errors.PromptError` or :class:`~actors.errors.SonicError`.
        """
        sonic = await self._load_prompt()
        settings = self._deps.settings
        sonic_send, sonic_receive = trio.open_memory_channel[tuple[SessionOutput, float]](0)
        session = SonicSession(
            _CountingOpener(self._deps.sonic, self._deps.metrics),
            system_prompt=sonic.system_prompt,
            sample_rate=self._rate,
            voice_id=sonic.voice_id,
            endpointing_sensitivity=sonic.endpointing_sensitivity,
            max_tokens=sonic.max_tokens,
            top_p=sonic.top_p,
            temperature=sonic.temperature,
            output_channel=sonic_send,
            rotate_after=settings.rotate_after,
            tools=sonic.tools,
            greeting=sonic.greeting,
            recovery=self._deps.recovery,
            on_recovery=self._deps.metrics.sonic_recovery,
        )
        self.session = session
        audio_in = functools.partial(
            run_audio_in_pump,
            self._caller_audio,
            self._send_audio,
            chunk_bytes=self._rate * 2 * settings.chunk_ms // 1000,
            silence_after=settings.silence_after,
            on_latency=self._cm.added_latency_in,
            statistics=self.statistics.audio_in,
        )
        # One task failing cancels the others: hand back that one failure, not a group.
        with unwrap_lone_exception():
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._relay_output, sonic_receive, name="sonic_output")
                # Caller audio keeps waiting in its channel until the first stream is ready.
                await nursery.start(session.run, name="sonic_session")
                self.ready = True
                self._session_ready.set()
                task_status.started()
                nursery.start_soon(audio_in, name="audio_in")
                if self._keypad is not None:
                    nursery.start_soon(self._collect_keypad, sonic.dtmf, name="keypad")

    async def _load_prompt(self) -> SonicCallSettings:
        """Load the assistant's definition and fix this call's Sonic settings from it.

        Resolved once: every stream of the call (rotations included) uses these settings,
        whatever is published meanwhile.
        """
        ctx = current_call()
        t = time.perf_counter()
        try:
            prompt = await self._deps.prompts.fetch(self._assistant)
        except PromptError as exc:
            self._deps.metrics.prompt_load_failed(exc)
            raise
        self._deps.metrics.prompt_load_seconds.observe(time.perf_counter() - t)
        version = prompt.version_id or prompt.etag
        self.statistics.prompt_version = version
        if ctx is not None:
            ctx.update(prompt_version=version)
        self.definition = prompt.definition
        sonic = SonicCallSettings.resolve(self._deps.settings, prompt.definition)
        self.tool_specs = prompt.definition.tools
        logger.info("call prompt loaded", extra=_prompt_fields(prompt) | sonic.log_fields())
        return sonic

    # --- caller → Sonic ---------------------------------------------------------------------

    async def _send_audio(self, pcm: bytes) -> None:
        session = self.session
        assert session is not None
        await session.send_audio(pcm)
        if not self._audio_flowing:  # the call's setup ends with its first audioInput
            self._audio_flowing = True
            self._deps.metrics.call_setup_seconds.observe(time.perf_counter() - self._t0)

    # --- Sonic → carrier --------------------------------------------------------------------

    async def _relay_output(
        self, events: trio.MemoryReceiveChannel[tuple[SessionOutput, float]]
    ) -> None:
        out = self._out
        async for ev, arrived in events:
            if type(ev) is output.AudioOutput:  # the hot path
                if ev.content_id in self._interrupted:
                    continue  # already cut off by a barge-in: the caller must not hear it
                if self.statistics.first_audio_seconds is None:
                    self.statistics.first_audio_seconds = arrived - self._t0
                    self._cm.first_audio(self.statistics.first_audio_seconds)
                seconds = self._seconds(ev.pcm)
                if self._heard.enabled:
                    self._heard.generated(self.turn, seconds)
                await out.put(AssistantAudio(pcm=ev.pcm, arrived=arrived, turn=self.turn), seconds)
            elif isinstance(ev, output.TextOutput):
                if ev.is_barge_in:
                    await self._barge_in(ev.content_id)
                elif ev.content_id in self._previews:
                    self._heard.preview(ev.content)
            elif isinstance(ev, output.ContentStarted):
                self._content_started(ev)
            elif isinstance(ev, output.ContentEnded):
                if ev.kind is output.ContentKind.AUDIO:
                    # One assistant answer (finished or interrupted) is one turn. Bedrock
                    # sends completionEnd only when the whole completion ends, not per turn.
                    self.statistics.turns += 1
                if ev.stop_reason == "INTERRUPTED":
                    await self._barge_in(ev.content_id)
                elif ev.kind is output.ContentKind.AUDIO:
                    await out.put(AnswerEnded(turn=self.turn), 0)
                if ev.content_id is not None:
                    self._previews.discard(ev.content_id)
            elif isinstance(ev, ToolUse):
                await self._on_tool_use(ev)
            elif isinstance(ev, Transcript):
                # To the opt-in call log, never to the service log.
                who: Role = "caller" if ev.role == "USER" else "assistant"
                if who == "assistant" and self._heard.enabled and self.turn > 0:
                    # Written with what the caller heard of it, once the carrier says.
                    self._heard.final_text(self.turn, ev.text)
                else:
                    await self._deps.call_log.transcript(who, ev.text)

    def _content_started(self, ev: output.ContentStarted) -> None:
        """Number the assistant's turns; note which text blocks preview the next one."""
        if ev.kind is output.ContentKind.AUDIO:
            self.turn += 1
            self._heard.turn_started(self.turn)
        elif (
            self._heard.enabled
            and ev.content_id is not None
            and ev.role == "ASSISTANT"
            and ev.generation_stage is output.GenerationStage.SPECULATIVE
        ):
            self._previews.add(ev.content_id)

    # --- tools ------------------------------------------------------------------------------

    async def _on_tool_use(self, use: ToolUse) -> None:
        """Hand a tool use to the runner (never waits for the tool), or answer it at once."""
        self.statistics.tool_uses += 1
        # The tool's name is the definition's (validated); its input may hold caller data.
        logger.info("tool use", extra={"event": "tool_use", "tool": use.name})
        if self._tool_runner is not None:
            await self._tool_runner.submit(use)
            return
        result = ToolResult(
            tool_use_id=use.tool_use_id,
            content=json.dumps({"error": f"the tool {use.name} is not available on this call"}),
            is_error=True,
        )
        # Sent from its own task: the relay must never wait on a Sonic send.
        assert self._nursery is not None
        self._nursery.start_soon(self.deliver_tool_result, result, name="tool_result")

    async def deliver_tool_result(self, result: ToolResult) -> None:
        """The result sink for a tool runner: send ``result`` to the model.

        Waits until the Sonic session is ready; each tool use's first result is sent, any
        later one for the same id is dropped by the session (exactly one result per use).
        """
        await self._session_ready.wait()
        session = self.session
        assert session is not None
        await session.send_tool_result(result)

    # --- keypad -----------------------------------------------------------------------------

    async def _collect_keypad(self, policy: DtmfPolicy) -> None:
        """Keys from the carrier → entries (terminator, length or pause) → text to Sonic."""
        keypad = self._keypad
        assert keypad is not None
        collector = DtmfCollector(policy)
        while True:
            deadline = collector.deadline
            done = []
            with trio.move_on_at(math.inf if deadline is None else deadline):
                try:
                    key = await keypad.receive()
                except trio.EndOfChannel:
                    return
                done = collector.press(key, trio.current_time())
            expired = collector.expire(trio.current_time())
            if expired is not None:
                done.append(expired)
            for entry in done:
                await self._send_keypad_entry(entry)

    async def _send_keypad_entry(self, entry: KeypadEntry) -> None:
        session = self.session
        assert session is not None
        self.statistics.keypad_entries += 1
        # The service log gets only the count: keys are card numbers and PINs.
        logger.info(
            "keypad entry",
            extra={"event": "keypad_entry", "digits": entry.digits, "ended_by": entry.ended_by},
        )
        await self._deps.call_log.transcript("caller", keypad_text(entry, mask=True), kind="keypad")
        await session.send_text(keypad_text(entry))

    def _seconds(self, pcm: bytes) -> float:
        return len(pcm) / (2 * self._rate)

    async def _barge_in(self, content_id: str | None) -> None:
        """The caller spoke over the assistant: drop queued audio, tell the carrier at once."""
        if content_id is not None:
            if content_id in self._interrupted:
                return  # the text signal and the INTERRUPTED contentEnd name the same turn
            self._interrupted.add(content_id)
        dropped = self._out.clear()
        self._heard.interrupted(self.turn)
        self.statistics.barge_ins += 1
        self._cm.barge_in()
        logger.info(
            "barge-in", extra={"event": "barge_in", "audio_dropped_ms": round(dropped * 1000)}
        )
        # The queue is empty now, so the clear is the next thing the carrier link sends.
        await self._out.put(ClearPlayback(through=self.turn), 0)


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
