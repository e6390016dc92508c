"""The call's side of the assistant's tools: :class:`CallTools` (the ``CallControl`` the
executors act through) and :func:`open_call_tool_runner` (the per-call tool runner).

"The assistant finishes its sentence" is decided from what the carrier link sent: the
outbound queue is empty, the carrier has had time to play everything sent (the playback
clock of :class:`~sessions.playback_estimate.PlaybackEstimate`, which every carrier
follows, marks or not), and no new assistant audio came for ``TOOL_QUIET_AFTER_SPEECH_MS``
(counted from the wait's start at the earliest: the model may call the tool before it
speaks, or answer the tool's result with "Goodbye!"). The wait is bounded by
``TOOL_SPEECH_WAIT_MS``. Then ``hang_up`` ends the call with 4310 (Asterisk gets
``HANGUP`` first, see :meth:`sessions.call.CallChannel.run`); ``transfer`` ends it with
4311 once Twilio has the new TwiML.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager

import trio

from actors.assistant_tools import ToolSpec
from actors.audio_pumps import AssistantCommand, OutboundQueue
from actors.close_codes import CloseCode
from actors.tool_executors import ToolContext, build_tools
from actors.tool_http import ToolHttpError, TwilioRest, dial_twiml
from actors.tool_runner import RegisteredTool, ToolRunner, ToolSink, open_tool_runner
from sessions.call_records import CallEnd
from sessions.config import ToolSettings
from sessions.dialects.base import CallStarted
from sessions.playback_estimate import PlaybackEstimate

logger = logging.getLogger("novavoice.tools")

# While audio waits in the outbound queue the link is busy sending it; look again this often.
_QUEUE_CHECK_EVERY = 0.05


class CallTools:
    """What the tools may do to one call (implements ``actors.tool_executors.CallControl``)."""

    def __init__(
        self,
        *,
        start: CallStarted,
        queue: OutboundQueue[AssistantCommand],
        playback: PlaybackEstimate,
        end: Callable[[CallEnd], None],
        settings: ToolSettings,
    ) -> None:
        self._start = start
        self._queue = queue
        self._playback = playback
        self._end = end
        self._settings = settings

    @property
    def carrier(self) -> str:
        """``twilio`` or ``asterisk``."""
        return self._start.carrier

    @property
    def call_id(self) -> str:
        """Twilio's call SID, Asterisk's channel id."""
        return self._start.call_id

    @property
    def account_id(self) -> str | None:
        """Twilio's account SID from the start message."""
        return self._start.account_id

    def _speech_done_at(self, since: float) -> float | None:
        """When the current sentence will have been heard, or ``None`` while audio queues.

        The quiet spell counts from the last audio sent, or from ``since`` (when the wait
        began) if that is later: a tool use often comes before the answer's first audio.
        """
        if self._queue.queued > 0:
            return None
        playback = self._playback
        last = playback.last_sent_at
        quiet_from = since if last is None else max(last, since)
        return max(playback.playing_until, quiet_from + self._settings.quiet_after_speech)

    async def wait_speech_finished(self) -> None:
        """Return once the assistant's current answer has played, or after the bound."""
        since = trio.current_time()
        with trio.move_on_after(self._settings.speech_wait):
            while True:
                done = self._speech_done_at(since)
                now = trio.current_time()
                if done is not None and now >= done:
                    break
                await trio.sleep_until(now + _QUEUE_CHECK_EVERY if done is None else done)

    async def hang_up_after_speech(self) -> None:
        """Let the assistant finish its sentence, then end the call (4310)."""
        await self.wait_speech_finished()
        self._end(CallEnd("assistant_hang_up", CloseCode.ASSISTANT_HANG_UP, "assistant hung up"))

    def end_transferred(self) -> None:
        """The call went to a human: end the stream (4311)."""
        self._end(CallEnd("transferred", CloseCode.TRANSFERRED, "call transferred"))


def tool_ssl_context(settings: ToolSettings) -> ssl.SSLContext:
    """The TLS trust of the tools' HTTP requests: ``TOOL_CA_BUNDLE``, else the system's."""
    return ssl.create_default_context(cafile=settings.ca_bundle)


class _DefinitionTools(Mapping[str, RegisteredTool]):
    """The runner's table, built on first use from the assistant's definition (loaded by
    the conversation after the runner started; tool uses only come after it)."""

    def __init__(
        self, specs: Callable[[], tuple[ToolSpec, ...]], context: Callable[[], ToolContext]
    ) -> None:
        self._specs = specs
        self._context = context
        self._table: dict[str, RegisteredTool] | None = None

    def _built(self) -> dict[str, RegisteredTool]:
        # Built at the first tool use: a call that uses no tool never loads a TLS trust store.
        if self._table is None:
            self._table = build_tools(self._specs(), self._context())
        return self._table

    def __getitem__(self, name: str) -> RegisteredTool:
        return self._built()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


@asynccontextmanager
async def open_call_tool_runner(
    tools: Callable[[], tuple[ToolSpec, ...]],
    control: CallTools,
    sink: ToolSink,
    *,
    assistant: str,
    settings: ToolSettings,
    twilio_auth_token: str | None,
    ssl_context: ssl.SSLContext | None = None,
    secrets: Mapping[str, str] | None = None,
) -> AsyncIterator[ToolRunner]:
    """The tool runner of one call; ``tools()`` gives its assistant's ``tools:`` list once
    the definition is loaded (it is first asked when the first tool use arrives)."""

    def context() -> ToolContext:
        return _tool_context(
            control,
            assistant=assistant,
            settings=settings,
            twilio_auth_token=twilio_auth_token,
            ssl_context=ssl_context or tool_ssl_context(settings),
            secrets=os.environ if secrets is None else secrets,
        )

    async with open_tool_runner(
        _DefinitionTools(tools, context),
        sink,
        default_timeout=settings.timeout,
        max_result_bytes=settings.result_max_bytes,
    ) as runner:
        yield runner


def _twilio_rest(
    control: CallTools,
    settings: ToolSettings,
    twilio_auth_token: str | None,
    ssl_context: ssl.SSLContext,
) -> TwilioRest | None:
    """The call's Twilio REST client, when it is a Twilio call and an account and token are
    configured (``None`` otherwise)."""
    account = settings.twilio_account_sid or control.account_id
    if control.carrier != "twilio" or not account or not twilio_auth_token:
        return None
    return TwilioRest(
        account_sid=account,
        auth_token=twilio_auth_token,
        ssl_context=ssl_context,
        base_url=settings.twilio_api_base_url,
    )


class CallTransfer:
    """How the fallback transfers a call that cannot go on (``sessions.fallback.FallbackTransfer``):
    the same Twilio REST update as the ``transfer`` tool, without waiting for a sentence
    (the apology clip has been heard). Asterisk calls cannot be transferred through
    chan_websocket (``docs/asterisk.md``), so there it answers ``False`` and the call ends."""

    def __init__(
        self, control: CallTools, *, settings: ToolSettings, twilio_auth_token: str | None
    ) -> None:
        self._control = control
        self._settings = settings
        self._token = twilio_auth_token

    async def transfer(self, target: str) -> bool:
        """Update the Twilio call with ``<Dial>target</Dial>``; ``True`` once Twilio took it."""
        twilio = _twilio_rest(
            self._control, self._settings, self._token, tool_ssl_context(self._settings)
        )
        if twilio is None:
            return False
        try:
            await twilio.update_call(self._control.call_id, dial_twiml(target))
        except ToolHttpError as exc:
            logger.warning(
                "fallback transfer failed",
                extra={"event": "fallback_transfer_failed", "error": str(exc)},
            )
            return False
        logger.info("call transferred", extra={"event": "call_transferred", "by": "fallback"})
        return True


def _tool_context(
    control: CallTools,
    *,
    assistant: str,
    settings: ToolSettings,
    twilio_auth_token: str | None,
    ssl_context: ssl.SSLContext,
    secrets: Mapping[str, str],
) -> ToolContext:
    return ToolContext(
        control=control,
        assistant=assistant,
        ssl_context=ssl_context,
        twilio=_twilio_rest(control, settings, twilio_auth_token, ssl_context),
        secrets=secrets,
        default_timeout=settings.timeout,
    )
