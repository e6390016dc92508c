"""The Nova Sonic side of one call: one stream at a time, rotated before its limit.

A Bedrock stream lives about 8 minutes (reference nova-sonic.md §4); a call may last longer.
:class:`SonicSession` keeps a call on Sonic across streams ("legs"):

- **Proactive rotation.** After ``rotate_after`` seconds (and before the stream's temporary
  credentials expire), once the assistant is quiet, a new leg is opened *beside* the current
  one: ``sessionStart``, ``promptStart``, the system prompt, the conversation so far
  (:mod:`actors.conversation_history`), and the audio block. Only then does caller audio
  switch to it, between two chunks; the old leg is closed politely. The caller hears no gap
  and loses no audio.
- **Reactive rotation.** If a leg ends with ``modelTimeoutException`` anyway, a new leg is
  opened at once; audio sent meanwhile is re-sent on the new leg.

Output goes one way, down a channel: each output event of the current leg, and a
:class:`Transcript` after each final transcript, as ``(item, arrived)`` pairs (a retired
leg's are dropped once it is retired). A ``toolUse`` goes down it as an
:class:`actors.tool_calls.ToolUse` (instead of the raw output record). Any other failure
raises a :class:`~actors.errors.SonicError`, which ends the call.

Cross-modal input (Nova 2, reference nova-sonic.md §10): :meth:`SonicSession.send_text`
sends a USER text block on the current leg, :meth:`SonicSession.send_tool_result` the one
result of a tool use. A block's events go back to back under a lock that audio chunks take
too, so no ``audioInput`` lands inside a block (LiveKit's rule, §3.1). A ``greeting`` makes
the assistant speak first, AWS's speaks-first pattern: once the first leg's audio block is
open, one cross-modal USER text asks for the greeting. Only the first leg sends it; later
legs replay the conversation (the trigger included) and wait for the caller.

Tool uses and rotation: every ``toolUse`` gets exactly one result (a second result for the
same id is dropped and logged). While a tool use is pending a proactive rotation waits (as it
waits for the assistant's quiet, at most ``MAX_ROTATION_WAIT``). If the leg is replaced
anyway (a reactive rotation, or the wait ran out), the new stream never saw that
``toolUse`` and would refuse a ``toolResult`` naming it, so the result is delivered on the
new leg as a cross-modal USER text that names the tool and carries its result.

Why one module of about 530 lines: audio, text blocks, tool results and rotation all act on
the same state (the current leg and its replacement signal, the send lock, the pending tool
uses, the assistant's quiet), and rotation must see every change to it. The sans-IO parts
are elsewhere: events (:mod:`actors.sonic.events`), output (:mod:`actors.sonic.output`),
history (:mod:`actors.conversation_history`).

Time is trio's only: a leg's credential expiry arrives as a trio-clock deadline
(:attr:`SonicStreamLike.credentials_deadline`), rotation waits on that deadline, on an event
(a reactive rotation) and on the assistant's quiet, never on a polling sleep, so the
autojump clock drives all of it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

from actors.conversation_history import ConversationHistory
from actors.errors import SonicError, SonicStreamError
from actors.exception_groups import unwrap_lone_exception
from actors.sonic import events, output
from actors.tool_calls import ToolResult, ToolUse

logger = logging.getLogger("novavoice.sonic.session")

# How long the assistant must have been silent before a proactive rotation.
QUIET_BEFORE_ROTATION = 1.0
# Rotate even if the assistant never falls quiet, this long after rotation became due.
MAX_ROTATION_WAIT = 60.0
# Rotate this long before the leg's temporary credentials expire.
CREDENTIALS_MARGIN = 180.0
# A leg lives at least this long before a proactive rotation, so credentials that cannot be
# refreshed in time make the session rotate once a minute at most, not in a tight loop.
MIN_LEG_SECONDS = 60.0
# How long a failed send waits for a replacement leg before the failure ends the call.
RESEND_WAIT = 5.0


class SonicStreamLike(Protocol):
    """What a session needs of a Sonic stream (``actors.sonic.stream.SonicStream``)."""

    credentials_deadline: float | None
    """``trio.current_time()`` at which the credentials signing this stream expire
    (``None``: they do not). Its signature chain cannot change keys, so the stream must be
    replaced before then."""

    async def send(self, nova_event_json: bytes) -> None:
        """Send one Nova Sonic input event."""
        ...

    async def wait_response(self) -> None:
        """Wait for the HTTP response; raise ``SonicHTTPError`` unless it is 200."""
        ...

    def __aiter__(self) -> AsyncIterator[output.OutputEvent]:
        """Iterate the stream's output events."""
        ...


class SonicOpener(Protocol):
    """What a session needs of the Sonic client (``actors.sonic.stream.SonicClient``)."""

    def open_stream(
        self, *, wait_for_response: bool = True
    ) -> AbstractAsyncContextManager[SonicStreamLike]:
        """Open one bidirectional stream for the duration of the block."""
        ...


class SonicSessionEnded(SonicError):
    """The Sonic stream ended without an error and without a way to continue."""


@attrs.frozen
class Transcript:
    """A final transcript (never a speculative one), in the session's output channel."""

    role: str
    """``USER`` or ``ASSISTANT``."""
    text: str


SessionOutput = output.OutputEvent | Transcript | ToolUse
"""What a session sends down its output channel (paired with its arrival time)."""


def greeting_request(greeting: str) -> str:
    """The cross-modal USER text that makes the assistant speak first with ``greeting``.

    AWS's speaks-first sample sends a bare "hi"; an explicit request makes the model say the
    assistant's own greeting rather than improvise one.
    """
    return (
        "[The phone call has just been connected and the caller is listening. "
        f'Greet the caller now, saying: "{greeting}"]'
    )


def late_tool_result_text(name: str, result: ToolResult) -> str:
    """The USER text carrying a tool result whose ``toolUse`` was on a replaced stream."""
    outcome = "failed" if result.is_error else "finished"
    return f"[The tool {name} you called earlier has {outcome}. Its result: {result.content}]"


@attrs.define(eq=False)
class _Leg:
    stream: SonicStreamLike
    generation: int
    prompt_name: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    audio_name: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    opened_at: float = attrs.field(factory=trio.current_time)
    retire: trio.Event = attrs.field(factory=trio.Event)


@attrs.define(eq=False, kw_only=True)
class SonicSessionStatistics:
    """How the session went (for the call-end log line and tests)."""

    legs_opened: int = 0
    proactive_rotations: int = 0
    reactive_rotations: int = 0
    resent_chunks: int = 0


class SonicSession:
    """Runs the legs of one call's Sonic session (see the module docstring)."""

    def __init__(
        self,
        sonic: SonicOpener,
        *,
        system_prompt: str,
        sample_rate: int,
        voice_id: str,
        endpointing_sensitivity: str | None,
        max_tokens: int,
        top_p: float,
        temperature: float,
        output_channel: trio.MemorySendChannel[tuple[SessionOutput, float]],
        rotate_after: float,
        tools: Sequence[events.ToolSpec] = (),
        greeting: str | None = None,
    ) -> None:
        self._sonic = sonic
        self._system_prompt = system_prompt
        self._rate = sample_rate
        self._voice = voice_id
        self._endpointing = endpointing_sensitivity
        self._max_tokens, self._top_p, self._temperature = max_tokens, top_p, temperature
        self._output = output_channel
        self._rotate_after = rotate_after
        self.history = ConversationHistory()
        self.statistics = SonicSessionStatistics()
        self.ready = False
        """True once the first stream is set up and caller audio can be sent."""
        self._leg: _Leg | None = None
        self._leg_changed = trio.Event()
        self._rotate_now = trio.Event()
        self._assistant_audio_open = False
        self._last_assistant_audio = -math.inf
        # Set when the assistant's answer ends (or a reactive rotation is needed) while a
        # rotation waits for a quiet moment; None otherwise, so nothing is paid per event.
        self._speech_changed: trio.Event | None = None
        self._stages: dict[str, tuple[str | None, output.GenerationStage | None]] = {}
        self._tools = tuple(tools)
        self._greeting = greeting
        # Events of one block go back to back: audio chunks take this lock too (§3.1).
        self._send_lock = trio.Lock()
        # toolUseId -> (generation of the leg that asked, tool name), until its one result.
        self._pending_tools: dict[str, tuple[int, str]] = {}
        self._answered_tools: set[str] = set()

    # --- audio in -------------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """Send one chunk of caller PCM to the current leg (re-sent if the leg is replaced)."""
        while True:
            leg = self._leg
            assert leg is not None, "run() must have started"
            try:
                async with self._send_lock:
                    await leg.stream.send(
                        events.audio_input(
                            prompt_name=leg.prompt_name, content_name=leg.audio_name, pcm=pcm
                        )
                    )
                return
            except SonicError:
                # The leg may be dying (model timeout) and about to be replaced: wait for
                # its successor briefly, then re-send there; otherwise the failure is real.
                with trio.move_on_after(RESEND_WAIT):
                    while self._leg is leg:
                        await self._leg_changed.wait()
                if self._leg is leg:
                    raise
                self.statistics.resent_chunks += 1

    # --- cross-modal text and tool results ------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send ``text`` as the caller's cross-modal USER input on the current leg.

        Kept in the history (a replacement leg replays it). If the leg fails during the
        send, the block is sent again on its replacement, as audio is.
        """
        self.history.add("USER", text)
        await self._send_block(lambda leg: self._text_block(leg, text))

    async def send_tool_result(self, result: ToolResult) -> None:
        """Answer one tool use (exactly once: a second result for the same id is dropped).

        Sent as a TOOL block on the leg that asked; if that leg was replaced meanwhile, as a
        cross-modal text on the current one (see the module docstring).
        """
        pending = self._pending_tools.pop(result.tool_use_id, None)
        if pending is None:
            logger.warning(
                "tool result dropped",
                extra={
                    "event": "tool_result_dropped",
                    "reason": "duplicate"
                    if result.tool_use_id in self._answered_tools
                    else "unknown_tool_use",
                },
            )
            return
        self._answered_tools.add(result.tool_use_id)
        generation, name = pending

        late = late_tool_result_text(name, result)
        noted = False

        def build(leg: _Leg) -> list[bytes]:
            nonlocal noted
            if leg.generation == generation:
                return events.tool_result_block(
                    prompt_name=leg.prompt_name,
                    content_name=str(uuid.uuid4()),
                    tool_use_id=result.tool_use_id,
                    content=result.content,
                )
            if not noted:  # the replacement leg never saw the toolUse: tell it in words
                noted = True
                self.history.add("USER", late)
            return self._text_block(leg, late)

        await self._send_block(build)
        self._wake_rotation()  # a rotation may be waiting for this tool's result

    def _text_block(self, leg: _Leg, text: str) -> list[bytes]:
        return events.cross_modal_text(
            prompt_name=leg.prompt_name, content_name=str(uuid.uuid4()), text=text
        )

    async def _send_block(self, build: Callable[[_Leg], list[bytes]]) -> None:
        """Send one block's events back to back on the current leg; re-send the whole block
        on a replacement leg if this one fails meanwhile (as :meth:`send_audio` does)."""
        while True:
            leg = self._leg
            assert leg is not None, "run() must have started"
            try:
                async with self._send_lock:
                    for ev in build(leg):
                        await leg.stream.send(ev)
                return
            except SonicError:
                with trio.move_on_after(RESEND_WAIT):
                    while self._leg is leg:
                        await self._leg_changed.wait()
                if self._leg is leg:
                    raise

    # --- legs -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the first leg, then rotate legs until cancelled or a leg fails for good.

        Starts (``task_status.started()``) once caller audio can be sent. Raises one
        :class:`~actors.errors.SonicError` (never a group) when the session cannot go on.
        The output channel is closed when it returns.
        """
        with unwrap_lone_exception(SonicError):
            async with self._output:
                await self._run_legs(task_status)

    async def _run_legs(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as legs:
            await legs.start(self._run_leg, 0)
            self.ready = True
            task_status.started()
            while True:
                kind = await self._wait_rotation_due()
                old = self._leg
                assert old is not None
                await legs.start(self._run_leg, old.generation + 1)
                if kind == "proactive":
                    self.statistics.proactive_rotations += 1
                else:
                    self.statistics.reactive_rotations += 1
                logger.info(
                    "sonic stream rotated",
                    extra={"event": "sonic_rotated", "kind": kind, "leg": old.generation + 1},
                )
                old.retire.set()

    def _rotation_due_at(self, leg: _Leg) -> float:
        """When ``leg`` should be replaced: ``rotate_after`` after it opened, or earlier,
        ``CREDENTIALS_MARGIN`` before its credentials expire (but not before it has lived
        ``MIN_LEG_SECONDS``, so credentials that are never refreshed cannot cause a tight
        loop)."""
        due = leg.opened_at + self._rotate_after
        expiry = leg.stream.credentials_deadline
        if expiry is not None:
            earliest = leg.opened_at + min(MIN_LEG_SECONDS, self._rotate_after)
            due = min(due, max(earliest, expiry - CREDENTIALS_MARGIN))
        return due

    async def _wait_rotation_due(self) -> str:
        leg = self._leg
        assert leg is not None
        with trio.move_on_at(self._rotation_due_at(leg)):
            await self._rotate_now.wait()
        if not self._rotate_now.is_set():
            # Due: wait for a quiet moment so no answer is cut, but not forever.
            with trio.move_on_after(MAX_ROTATION_WAIT):
                await self._wait_assistant_quiet()
        if self._rotate_now.is_set():
            self._rotate_now = trio.Event()
            return "reactive"
        return "proactive"

    async def _wait_assistant_quiet(self) -> None:
        """Until the assistant has been silent ``QUIET_BEFORE_ROTATION`` seconds, or a
        reactive rotation is needed. Woken by the output reader, never by polling."""
        try:
            while not self._rotate_now.is_set():
                quiet_at = (
                    math.inf
                    if self._assistant_audio_open
                    else self._last_assistant_audio + QUIET_BEFORE_ROTATION
                )
                if self._pending_tools:
                    quiet_at = math.inf  # a tool result is due on this leg: wait for it
                if trio.current_time() >= quiet_at:
                    return
                self._speech_changed = trio.Event()
                with trio.move_on_at(quiet_at):
                    await self._speech_changed.wait()
        finally:
            self._speech_changed = None

    def _wake_rotation(self) -> None:
        if self._speech_changed is not None:
            self._speech_changed.set()

    async def _run_leg(self, generation: int, *, task_status: trio.TaskStatus[None]) -> None:
        # Like the official SDK, send the set-up events before waiting for the HTTP response:
        # whether Bedrock answers before it has seen any event is not documented, and
        # waiting first would then stall every call until the first-response timeout.
        async with self._sonic.open_stream(wait_for_response=False) as stream:
            leg = _Leg(stream, generation)
            self.statistics.legs_opened += 1
            try:
                await self._set_up(leg)
            except SonicError:
                # A refused stream (403, 429, ...) may first show as a failed send: report
                # the HTTP answer when there is one, it says more than "stream closed".
                await stream.wait_response()
                raise
            self._leg = leg
            self._leg_changed.set()
            self._leg_changed = trio.Event()
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, leg)
                await leg.retire.wait()
                nursery.cancel_scope.cancel()
            # Leaving the stream's block closes it politely (contentEnd, promptEnd,
            # sessionEnd, signed end frame) under the client's shielded timeout.

    async def _set_up(self, leg: _Leg) -> None:
        send = leg.stream.send
        p = leg.prompt_name
        await send(
            events.session_start(
                max_tokens=self._max_tokens,
                top_p=self._top_p,
                temperature=self._temperature,
                endpointing_sensitivity=self._endpointing,
            )
        )
        await send(
            events.prompt_start(
                prompt_name=p,
                voice_id=self._voice,
                output_sample_rate=self._rate,
                tools=self._tools,
            )
        )
        await self._send_text(leg, "SYSTEM", self._system_prompt)
        for message in self.history.replay():
            await self._send_text(leg, message.role, message.text)
        # Audio only once the stream is accepted: under load Bedrock rejected audio that
        # raced the history ("Chat history should be sent completely before streaming
        # audio", reference nova-sonic.md §3.1, as LiveKit found).
        await leg.stream.wait_response()
        await send(
            events.audio_content_start(
                prompt_name=p, content_name=leg.audio_name, sample_rate=self._rate
            )
        )
        if self._greeting is not None and leg.generation == 0:
            # Speaks first: the documented pattern is a USER text once audio streams. Only
            # the first leg: a replacement replays the history (this request included).
            request = greeting_request(self._greeting)
            self.history.add("USER", request)
            for ev in self._text_block(leg, request):
                await send(ev)

    async def _send_text(self, leg: _Leg, role: str, text: str) -> None:
        name = str(uuid.uuid4())
        p = leg.prompt_name
        send = leg.stream.send
        await send(
            events.text_content_start(
                prompt_name=p, content_name=name, role=role, interactive=False
            )
        )
        for piece in events.split_text(text):
            await send(events.text_input(prompt_name=p, content_name=name, content=piece))
        await send(events.content_end(prompt_name=p, content_name=name))

    # --- output ---------------------------------------------------------------------------

    async def _read(self, leg: _Leg) -> None:
        send = self._output.send
        try:
            async for ev in leg.stream:
                arrived = time.perf_counter()
                if isinstance(ev, output.ToolUse):
                    use = self._tool_use(ev, leg)
                    if use is not None:
                        await send((use, arrived))
                    continue
                final = self._observe(ev)
                await send((ev, arrived))
                if final is not None:
                    await send((final, arrived))
        except SonicStreamError as exc:
            if exc.exception_type != "modelTimeoutException" or leg.retire.is_set():
                raise
            # The stream hit its time limit before a proactive rotation: continue on a
            # new leg right away. Audio sent to this one meanwhile is re-sent there.
            self._rotate_now.set()
            self._wake_rotation()
            await trio.sleep_forever()  # until retired
        if not leg.retire.is_set():
            raise SonicSessionEnded("the Nova Sonic stream ended")

    def _tool_use(self, ev: output.ToolUse, leg: _Leg) -> ToolUse | None:
        """Record a tool use as pending on ``leg``; ``None`` for a repeated id."""
        if ev.tool_use_id in self._pending_tools or ev.tool_use_id in self._answered_tools:
            return None  # the model repeated an id: its one result is already due or sent
        self._pending_tools[ev.tool_use_id] = (leg.generation, ev.tool_name)
        return ToolUse(tool_use_id=ev.tool_use_id, name=ev.tool_name, content=ev.content)

    @property
    def pending_tool_uses(self) -> int:
        """Tool uses still waiting for their result."""
        return len(self._pending_tools)

    def _observe(self, ev: output.OutputEvent) -> Transcript | None:
        """Track what rotation needs: is the assistant speaking, and the final transcripts.

        Returns the :class:`Transcript` when ``ev`` is a final one (USER or ASSISTANT).
        """
        if type(ev) is output.AudioOutput:
            # A waiting rotation needs no wake-up here: it re-reads this at its deadline.
            self._last_assistant_audio = trio.current_time()
        elif isinstance(ev, output.ContentStarted):
            if ev.kind is output.ContentKind.AUDIO:
                self._assistant_audio_open = True
            if ev.content_id is not None:
                self._stages[ev.content_id] = (ev.role, ev.generation_stage)
        elif isinstance(ev, output.ContentEnded):
            if ev.kind is output.ContentKind.AUDIO:
                self._assistant_audio_open = False
                self._last_assistant_audio = trio.current_time()
                self._wake_rotation()
            if ev.content_id is not None:
                self._stages.pop(ev.content_id, None)
        elif isinstance(ev, output.TextOutput) and not ev.is_barge_in:
            role, stage = self._stages.get(ev.content_id or "", (ev.role, None))
            role = role or ev.role or ""
            if stage is not output.GenerationStage.SPECULATIVE:
                self.history.add(role, ev.content)
                return Transcript(role, ev.content)
        return None
