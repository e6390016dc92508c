"""The Nova Sonic side of one call: one stream at a time, rotated before its limit.

A Bedrock stream lives about 8 minutes (reference nova-sonic.md §4); a call may last longer.
:class:`SonicSession` keeps a call on Sonic across streams ("legs"):

- **Proactive rotation.** After ``rotate_after`` seconds (and before the stream's temporary
  credentials expire), once the assistant is quiet, a new leg is opened *beside* the current
  one: ``sessionStart``, ``promptStart``, the system prompt, the conversation so far
  (:mod:`actors.conversation_history`), and the audio block. Only then does caller audio
  switch to it, between two chunks; the old leg is closed politely. The caller hears no gap
  and loses no audio.
- **Reactive rotation (recovery).** If a leg fails *transiently* (the one classification,
  :func:`actors.sonic.recovery.failure_reason`: ``modelTimeoutException``, a reset, GOAWAY
  or a lost connection, ``modelStreamErrorException``, throttling, internal errors, a bad
  CRC, or a stall), a new leg is opened after a back-off with full jitter, within the
  call's :class:`~actors.sonic.recovery.RecoveryBudget`. The conversation is replayed as in
  a proactive rotation; caller audio waits for the new leg (it is not sent to the failed
  one), and the caller's speech that the model had not answered yet (at most
  ``RESEND_MAX_SECONDS``) is re-sent on it, so the question asked just before the failure
  is still answered. Once the budget is spent, :class:`~actors.errors.SonicUnrecoverable`
  ends the session; permanent errors (403, validation) end it at once, never retried.
- **Stall watchdog.** Caller speech (a cheap energy check, :func:`recovery.is_speech`)
  followed by no output event at all for ``stall_timeout`` seconds is a transient failure
  (:class:`~actors.errors.SonicStalled`) and recovers the same way.

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
autojump clock drives all of it. The stall watchdog sleeps until its deadline (the last
caller speech plus ``stall_timeout``) and re-reads it there, as the quiet wait does.

Why one file of about 630 lines: proactive rotation, recovery and the stall watchdog share
one piece of state, the current leg and the events that announce its change (``_leg``,
``_leg_changed``, ``_rotate_now``), and one loop that replaces legs. Splitting them would
make that state cross a module boundary; what is pure (the classification, the budget, the
back-off, the speech check) already lives in :mod:`actors.sonic.recovery`.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

from actors.conversation_history import ConversationHistory
from actors.errors import SonicError, SonicStalled, SonicUnrecoverable
from actors.exception_groups import lone_exception, unwrap_lone_exception
from actors.sonic import events, output
from actors.sonic.recovery import RecoveryBudget, RecoveryPolicy, failure_reason, is_speech
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
# Caller audio kept for re-sending on a replacement leg: only the speech the model had not
# answered is re-sent, and at most this much of it (a question, not a monologue).
RESEND_MAX_SECONDS = 10.0
# Audio before the first chunk detected as speech that is re-sent with it: the check runs
# once per SPEECH_CHECK_EVERY, so speech may have begun that much earlier.
SPEECH_PREROLL = 0.3
# Caller audio is checked for speech (the stall watchdog's trigger) at most this often.
SPEECH_CHECK_EVERY = 0.1
# Failures of a call's first stream that are retried: the server provably did not process
# it (refused by a GOAWAY's last stream id, or REFUSED_STREAM). An endpoint that cannot be
# reached or refuses the stream (429, 403) still ends the call at once, before the caller
# has said anything (tests/e2e/test_bedrock_failures.py).
_RETRIED_AT_OPEN = frozenset({"goaway"})


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
    failed: bool = False
    """The leg failed transiently: caller audio now waits for its replacement."""


@attrs.define(eq=False, kw_only=True)
class SonicSessionStatistics:
    """How the session went (for the call-end log line and tests)."""

    legs_opened: int = 0
    proactive_rotations: int = 0
    reactive_rotations: int = 0
    resent_chunks: int = 0
    recoveries: int = 0
    """Transient failures after which the call went on, on a new leg."""
    recovery_attempts: int = 0
    """Replacement legs tried after transient failures (some may have failed too)."""
    recovery_failures: dict[str, int] = attrs.field(factory=dict)
    """Transient failures seen, by reason label."""
    resent_speech_chunks: int = 0
    """Chunks of unanswered caller speech re-sent on replacement legs."""


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
        recovery: RecoveryPolicy | None = None,
        on_recovery: Callable[[str, str], None] | None = None,
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
        # --- recovery (see the module docstring) ---
        self.recovery = RecoveryBudget(recovery or RecoveryPolicy())
        """This call's recovery budget (attempts made, failures by reason)."""
        self._on_recovery = on_recovery
        """Called with ``(reason, outcome)`` per transient failure: ``recovered`` or
        ``failed`` (the metrics hook)."""
        self._failure: tuple[SonicError, str, _Leg] | None = None
        # Caller speech the model has not answered yet: when it began (None: all answered)
        # and the last speech heard; any output event answers it.
        self._unanswered_since: float | None = None
        self._last_speech = -math.inf
        self._next_speech_check = -math.inf
        self._stall_armed: trio.Event | None = None
        self._sent_audio: deque[tuple[float, bytes]] = deque()
        # True while the reader waits for the call to take an output event: a carrier that
        # reads slowly holds Sonic back, which is not a stall of Sonic's.
        self._delivering = False
        self._sent_bytes = 0
        self._resend_limit = int(RESEND_MAX_SECONDS * sample_rate * 2)

    # --- audio in -------------------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """Send one chunk of caller PCM to the current leg (re-sent if the leg is replaced).

        While a failed leg is being replaced, this waits for the replacement (the caller's
        audio queues up behind it, bounded by the call's caller-audio channel).
        """
        if self.recovery.policy.stall_timeout > 0 or self.recovery.policy.max_attempts > 0:
            self._watch_speech(pcm)
        while True:
            leg = self._leg
            assert leg is not None, "run() must have started"
            if leg.failed:
                # Being replaced: this chunk goes to the new leg, not to the failed one.
                while self._leg is leg:
                    await self._leg_changed.wait()
                continue
            try:
                async with self._send_lock:
                    await leg.stream.send(
                        events.audio_input(
                            prompt_name=leg.prompt_name, content_name=leg.audio_name, pcm=pcm
                        )
                    )
                self._keep_sent(pcm)
                return
            except SonicError:
                # The leg may be dying and about to be replaced: wait for its successor
                # briefly, then re-send there; otherwise the failure is real.
                with trio.move_on_after(RESEND_WAIT):
                    while self._leg is leg and not leg.failed:
                        await self._leg_changed.wait()
                if self._leg is leg and not leg.failed:
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
            if leg.failed:
                # Being replaced (recovery): the block goes to the new leg, as audio does.
                while self._leg is leg:
                    await self._leg_changed.wait()
                continue
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

    def _watch_speech(self, pcm: bytes) -> None:
        """Note caller speech (checked once per ``SPEECH_CHECK_EVERY``) for the watchdog."""
        now = trio.current_time()
        if now < self._next_speech_check:
            return
        self._next_speech_check = now + SPEECH_CHECK_EVERY
        if is_speech(pcm):
            self._last_speech = now
            if self._unanswered_since is None:
                self._unanswered_since = now
                if self._stall_armed is not None:
                    self._stall_armed.set()  # the watchdog now has a deadline

    def _keep_sent(self, pcm: bytes) -> None:
        """Keep recent caller audio for re-sending, at most ``RESEND_MAX_SECONDS`` of it."""
        sent = self._sent_audio
        sent.append((trio.current_time(), pcm))
        self._sent_bytes += len(pcm)
        while self._sent_bytes > self._resend_limit:
            self._sent_bytes -= len(sent.popleft()[1])

    def _unanswered_audio(self) -> list[bytes]:
        """The audio to re-send on a replacement leg: the caller's unanswered speech."""
        since = self._unanswered_since
        if since is None:
            return []
        start = since - SPEECH_PREROLL
        return [pcm for at, pcm in self._sent_audio if at >= start]

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
            try:
                await self._start_leg(legs, 0)
            except SonicError as open_exc:
                # The first stream was refused before Bedrock processed it (GOAWAY,
                # REFUSED_STREAM): open it again, within the budget.
                why = failure_reason(open_exc)
                if why is None or why not in _RETRIED_AT_OPEN:
                    raise
                await self._replace(legs, 0, open_exc, why)
            legs.start_soon(self._watch_stall)
            self.ready = True
            task_status.started()
            while True:
                kind = await self._wait_rotation_due()
                old = self._leg
                assert old is not None
                if kind == "proactive":
                    await legs.start(self._run_leg, old.generation + 1)
                    self.statistics.proactive_rotations += 1
                else:
                    assert self._failure is not None
                    if self._failure[2] is not old:
                        # The leg that failed was retired by a proactive rotation meanwhile:
                        # nothing to replace.
                        self._failure = None
                        continue
                    exc, reason, _ = self._failure
                    self._failure = None
                    await self._replace(legs, old.generation + 1, exc, reason)
                    self.statistics.reactive_rotations += 1
                logger.info(
                    "sonic stream rotated",
                    extra={"event": "sonic_rotated", "kind": kind, "leg": old.generation + 1},
                )
                old.retire.set()

    async def _start_leg(
        self, legs: trio.Nursery, generation: int, recovering: bool = False
    ) -> None:
        """Start leg ``generation``; a failure before it started is raised as itself."""
        try:
            await legs.start(self._run_leg, generation, recovering)
        except BaseExceptionGroup as group:
            only = lone_exception(group, SonicError)
            if only is None:
                raise
            raise only from only.__cause__

    async def _replace(
        self, legs: trio.Nursery, generation: int, exc: SonicError, reason: str
    ) -> None:
        """Open leg ``generation`` after ``exc``, a transient failure, within the budget.

        Each attempt waits its back-off first; an attempt that fails transiently too takes
        the next one. Raises :class:`SonicUnrecoverable` once the budget is spent, or a
        permanent error from an attempt as itself.
        """
        budget = self.recovery
        streak = 0
        while True:
            budget.failed(reason)
            self.statistics.recovery_failures = dict(budget.by_reason)
            if budget.exhausted:
                self._report(reason, "failed")
                logger.warning(
                    "sonic recovery budget spent",
                    extra={"event": "sonic_unrecoverable", "reason": reason,
                           "attempts": budget.attempts},
                )  # fmt: skip
                raise SonicUnrecoverable(exc, reason=reason, attempts=budget.attempts) from exc
            delay = budget.next_delay(streak)
            streak += 1
            self.statistics.recovery_attempts = budget.attempts
            logger.info(
                "sonic stream failed, recovering",
                extra={"event": "sonic_recovering", "reason": reason, "error": type(exc).__name__,
                       "attempt": budget.attempts, "backoff_ms": round(delay * 1000)},
            )  # fmt: skip
            await trio.sleep(delay)
            try:
                await self._start_leg(legs, generation, True)
            except SonicError as attempt_exc:
                attempt_reason = failure_reason(attempt_exc)
                if attempt_reason is None:
                    self._report(reason, "failed")
                    raise  # permanent (403, validation): never retried
                self._report(reason, "failed_attempt")
                exc, reason = attempt_exc, attempt_reason
                continue
            budget.recovered += 1
            self.statistics.recoveries = budget.recovered
            self._report(reason, "recovered")
            return

    def _report(self, reason: str, outcome: str) -> None:
        if self._on_recovery is not None:
            self._on_recovery(reason, outcome)

    def _fail_leg(self, leg: _Leg, exc: SonicError, reason: str) -> None:
        """Mark ``leg`` failed transiently and ask ``run`` for a replacement."""
        if leg.failed or leg.retire.is_set() or self._leg is not leg:
            return
        leg.failed = True
        self._failure = (exc, reason, leg)
        self._rotate_now.set()
        self._wake_rotation()
        # Wake senders waiting on this leg: they now wait for its replacement.
        self._leg_changed.set()
        self._leg_changed = trio.Event()

    async def _watch_stall(self) -> None:
        """Fail the current leg when caller speech gets no output for ``stall_timeout``.

        Sleeps until the deadline (last speech + timeout) and re-reads it there; the speech
        that starts a wait sets ``_stall_armed``, and a new leg sets ``_leg_changed``, so
        nothing polls. One task per session, started with the first leg.
        """
        timeout = self.recovery.policy.stall_timeout
        if timeout <= 0:
            return
        while True:
            leg = self._leg
            if leg is None or leg.failed:
                await self._leg_changed.wait()  # being replaced: watch the new leg
                continue
            if self._unanswered_since is None:
                self._stall_armed = armed = trio.Event()
                try:
                    await armed.wait()
                finally:
                    self._stall_armed = None
                continue
            deadline = self._last_speech + timeout
            if trio.current_time() >= deadline and self._delivering:
                # Sonic has produced more than the call has taken yet (a slow carrier):
                # the model is answering, only we are behind.
                self._unanswered_since = None
                continue
            if trio.current_time() >= deadline:
                stalled = SonicStalled(
                    f"no Nova Sonic output {timeout:g}s after caller speech (leg {leg.generation})"
                )
                self._fail_leg(leg, stalled, "stall")
                continue
            await trio.sleep_until(deadline)

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

    async def _run_leg(
        self, generation: int, recovering: bool = False, *, task_status: trio.TaskStatus[None]
    ) -> None:
        # Like the official SDK, send the set-up events before waiting for the HTTP response:
        # whether Bedrock answers before it has seen any event is not documented, and
        # waiting first would then stall every call until the first-response timeout.
        async with self._sonic.open_stream(wait_for_response=False) as stream:
            leg = _Leg(stream, generation)
            self.statistics.legs_opened += 1
            try:
                await self._set_up(leg, recovering)
            except SonicError:
                # A refused stream (403, 429, ...) may first show as a failed send: report
                # the HTTP answer when there is one, it says more than "stream closed".
                await stream.wait_response()
                raise
            self._leg = leg
            self._delivering = False
            if self._unanswered_since is not None:
                # The new leg gets a whole stall timeout for the speech re-sent to it.
                self._last_speech = max(self._last_speech, trio.current_time())
            self._leg_changed.set()
            self._leg_changed = trio.Event()
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, leg)
                await leg.retire.wait()
                nursery.cancel_scope.cancel()
            # Leaving the stream's block closes it politely (contentEnd, promptEnd,
            # sessionEnd, signed end frame) under the client's shielded timeout.

    async def _set_up(self, leg: _Leg, recovering: bool = False) -> None:
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
        if recovering:
            # Replacing a failed leg: the caller's speech that no leg has answered yet goes
            # first, so a question asked just before the failure is still heard.
            for pcm in self._unanswered_audio():
                await send(events.audio_input(prompt_name=p, content_name=leg.audio_name, pcm=pcm))
                self.statistics.resent_speech_chunks += 1

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
                self._delivering = True
                await send((ev, arrived))
                if final is not None:
                    await send((final, arrived))
                self._delivering = False
        except SonicError as exc:
            reason = failure_reason(exc)
            if reason is None:
                raise  # permanent: ends the call
            if leg.retire.is_set():
                return  # a retired leg's failure no longer matters
            # Transient (the model's time limit, a reset, a lost connection, throttling, a
            # bad CRC, ...): continue on a new leg; audio waits for it.
            self._fail_leg(leg, exc, reason)
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
        # Any output answers the caller's speech (the stall watchdog re-reads this).
        self._unanswered_since = None
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
