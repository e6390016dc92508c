"""The Sonic half of a call: the assistant's prompt, its Sonic session and the two pumps.

::

    Conversation.run ── loads the prompt, then a nursery
      ├── Sonic session (actors/sonic/session.py): one stream at a time, rotated before
      │     Bedrock's limit; its output events go down a channel
      ├── audio-in pump: caller-audio channel → ~32 ms audioInput events (comfort silence
      │     when the carrier is quiet) → the session
      └── output relay: session output channel → assistant commands into the outbound queue
            (audio; a barge-in clears the queue then asks for the carrier's clear; the end
            of an answer asks for a mark); final transcripts → the opt-in call log

It knows nothing of carriers: PCM16 comes in on one channel and goes out on another, at
the sample rate the call gives it. Failures leave :meth:`Conversation.run` as one domain
error (never a group); the call maps it to a close code.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import AbstractAsyncContextManager

import attrs
import trio

from actors.assistant_names import AssistantName
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
from sessions.call_records import CallDeps, SonicCallSettings
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
        """True once the first Sonic stream is open and caller audio flows to it."""
        self._audio_flowing = False
        self._interrupted: set[str] = set()

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
                nursery.start_soon(self._relay_output, sonic_receive, name="sonic_output")
                # Caller audio keeps waiting in its channel until the first stream is ready.
                await nursery.start(session.run, name="sonic_session")
                self.ready = True
                task_status.started()
                nursery.start_soon(audio_in, name="audio_in")

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
        sonic = SonicCallSettings.resolve(self._deps.settings, prompt.definition)
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
                await out.put(AssistantAudio(pcm=ev.pcm, arrived=arrived), self._seconds(ev.pcm))
            elif isinstance(ev, output.TextOutput):
                if ev.is_barge_in:
                    await self._barge_in(ev.content_id)
            elif isinstance(ev, output.ContentEnded):
                if ev.kind is output.ContentKind.AUDIO:
                    # One assistant answer (finished or interrupted) is one turn. Bedrock
                    # sends completionEnd only when the whole completion ends, not per turn.
                    self.statistics.turns += 1
                if ev.stop_reason == "INTERRUPTED":
                    await self._barge_in(ev.content_id)
                elif ev.kind is output.ContentKind.AUDIO:
                    await out.put(AnswerEnded(), 0)
            elif isinstance(ev, Transcript):
                # To the opt-in call log, never to the service log.
                who: Role = "caller" if ev.role == "USER" else "assistant"
                await self._deps.call_log.transcript(who, ev.text)

    def _seconds(self, pcm: bytes) -> float:
        return len(pcm) / (2 * self._rate)

    async def _barge_in(self, content_id: str | None) -> None:
        """The caller spoke over the assistant: drop queued audio, tell the carrier at once."""
        if content_id is not None:
            if content_id in self._interrupted:
                return  # the text signal and the INTERRUPTED contentEnd name the same turn
            self._interrupted.add(content_id)
        dropped = self._out.clear()
        self.statistics.barge_ins += 1
        self._cm.barge_in()
        logger.info(
            "barge-in", extra={"event": "barge_in", "audio_dropped_ms": round(dropped * 1000)}
        )
        # The queue is empty now, so the clear is the next thing the carrier link sends.
        await self._out.put(ClearPlayback(), 0)


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
