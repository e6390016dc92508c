"""The executors of an assistant's tools: ``hang_up``, ``transfer`` and ``webhook``.

:func:`build_tools` turns the definition's ``tools:`` list into the runner's table
(:class:`~actors.tool_runner.RegisteredTool` by name). Executors reach the call only
through :class:`CallControl`, which the call implements (``sessions/call.py``), so they
know nothing of carriers, WebSockets or Sonic.

- **hang_up**: the result (``{"status": "ending"}``) goes to the model first; then the call
  waits for the assistant to finish its sentence (its queued audio played, plus a short
  quiet spell, so a goodbye spoken in answer to the result is heard too) and ends with
  close code 4310 ``ASSISTANT_HANG_UP``. Twilio then runs the TwiML after
  ``<Connect><Stream>``; Asterisk gets chan_websocket's ``HANGUP`` command first.
- **transfer**: waits for the current sentence to be heard, then hands the call to the
  tool's ``target``. Twilio: the call is updated through the REST API with
  ``<Dial>target</Dial>`` TwiML (:class:`~actors.tool_http.TwilioRest`), and the stream
  ends with 4311 ``TRANSFERRED``. Asterisk: chan_websocket has no command that moves a
  call or sets a channel variable (its commands are ANSWER, HANGUP, the media buffering,
  mark, flush, pause and status ones; ``handle_command`` in ``channels/chan_websocket.c``),
  and a hang-up of the WebSocket leg looks the same to the dialplan whatever its reason.
  So the tool answers the model with an error and the call goes on; ``docs/asterisk.md``
  says what the dialplan can do instead. Any failure is an error result: the model can
  apologise and the call continues.
- **webhook**: POSTs ``{tool, input, call_id, assistant}`` to the definition's URL, signed
  (:mod:`actors.webhook_policy`), without redirects; the model gets
  ``{"content": ...}`` from a valid response, an error result otherwise.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs

from actors.assistant_tools import ToolSpec
from actors.tool_http import ToolHttpError, TwilioRest, dial_twiml, post_json
from actors.tool_runner import DEFAULT_TIMEOUT, RegisteredTool, ToolFailed, ToolOutcome
from actors.webhook_policy import (
    WebhookResponseInvalid,
    check_webhook_url,
    parse_response,
    request_body,
    signed_headers,
)

logger = logging.getLogger("novavoice.tools")

TRANSFER_TIMEOUT = 30.0
"""A transfer's default timeout: it first waits for the current sentence to be heard."""


class CallControl(Protocol):
    """What tools may do to their call; implemented by the call (``sessions/call.py``)."""

    @property
    def carrier(self) -> str:
        """``"twilio"`` or ``"asterisk"``."""
        ...

    @property
    def call_id(self) -> str:
        """Twilio's call SID, Asterisk's channel id."""
        ...

    @property
    def account_id(self) -> str | None:
        """Twilio's account SID from the start message (``None`` elsewhere)."""
        ...

    async def wait_speech_finished(self) -> None:
        """Return once the assistant's current answer has been played to the caller (or a
        bound on that wait has passed)."""
        ...

    async def hang_up_after_speech(self) -> None:
        """Let the assistant finish its sentence, then end the call politely (4310)."""
        ...

    def end_transferred(self) -> None:
        """End the call's stream: it has been handed to someone else (4311)."""
        ...


@attrs.frozen(kw_only=True)
class ToolContext:
    """What the executors of one call share."""

    control: CallControl
    assistant: str
    ssl_context: ssl.SSLContext = attrs.field(repr=False)
    twilio: TwilioRest | None = None
    """The Twilio REST client, when an account and token are configured."""
    secrets: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    """Where a webhook's ``secret_env`` is looked up (the process environment)."""
    clock: Callable[[], float] = time.time
    """Wall-clock seconds for the signature timestamp."""
    default_timeout: float = DEFAULT_TIMEOUT
    """Seconds a tool may run when its definition sets no ``timeout``."""


def _status(**fields: object) -> str:
    return json.dumps(fields, separators=(",", ":"))


@attrs.frozen
class HangUpExecutor:
    """``hang_up``: tell the model the call is ending, then end it after the sentence."""

    context: ToolContext

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        """The result first; the hang-up follows once it is delivered."""
        return ToolOutcome(
            _status(status="ending", detail="the call ends after your current sentence"),
            then=self.context.control.hang_up_after_speech,
        )


@attrs.frozen
class TransferExecutor:
    """``transfer``: hand the call to ``target`` once the current sentence is heard."""

    context: ToolContext
    target: str

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        """Update the Twilio call with ``<Dial>``; on Asterisk, refuse (see module doc)."""
        control = self.context.control
        if control.carrier != "twilio":
            raise ToolFailed(f"transfer is not available on {control.carrier} calls")
        twilio = self.context.twilio
        if twilio is None:
            raise ToolFailed("transfer is not configured (no Twilio account SID and token)")
        await control.wait_speech_finished()
        try:
            await twilio.update_call(control.call_id, dial_twiml(self.target))
        except ToolHttpError as exc:
            raise ToolFailed(f"transfer failed: {exc}") from None
        logger.info("call transferred", extra={"event": "call_transferred"})

        async def end() -> None:
            control.end_transferred()

        return ToolOutcome(_status(status="transferred"), then=end)


@attrs.frozen
class WebhookExecutor:
    """A ``webhook`` tool: one signed POST to the URL of its definition."""

    context: ToolContext
    spec: ToolSpec

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        """POST the tool use; the model gets the response's ``content``."""
        spec, context = self.spec, self.context
        url = spec.url
        # Checked by the definition's validator already; checked again right before use.
        problem = "is missing" if url is None else check_webhook_url(url)
        if url is None or problem is not None:
            raise ToolFailed(f"webhook url {problem}")
        secret = context.secrets.get(spec.secret_env or "", "")
        if not secret:
            logger.warning(
                "webhook secret missing",
                extra={"event": "webhook_secret_missing", "variable": spec.secret_env},
            )
            raise ToolFailed("the webhook's signing secret is not configured")
        body = request_body(
            tool=spec.name,
            arguments=dict(arguments),
            call_id=context.control.call_id,
            assistant=context.assistant,
        )
        headers = signed_headers(secret.encode(), int(context.clock()), body)
        # The runner's timeout bounds the whole tool; httpx's per-phase timeout is the same
        # number, so a slow phase fails with a clear message instead of a bare cancel.
        timeout = spec.timeout if spec.timeout is not None else context.default_timeout
        try:
            status, data = await post_json(
                url, body, headers, ssl_context=context.ssl_context, phase_timeout=timeout
            )
            reply = parse_response(status, data)
        except (ToolHttpError, WebhookResponseInvalid) as exc:
            raise ToolFailed(str(exc)) from None
        if reply.is_error:
            # The webhook's own words go to the model, not to the log (they may quote the caller).
            raise ToolFailed(reply.content[:500], log_detail="the webhook reported an error")
        return ToolOutcome(json.dumps({"content": reply.content}, ensure_ascii=False))


def build_tools(tools: tuple[ToolSpec, ...], context: ToolContext) -> dict[str, RegisteredTool]:
    """The runner's table for a definition's ``tools:`` list."""
    table: dict[str, RegisteredTool] = {}
    for spec in tools:
        if spec.kind == "hang_up":
            executor: HangUpExecutor | TransferExecutor | WebhookExecutor = HangUpExecutor(context)
        elif spec.kind == "transfer":
            assert spec.target is not None  # the validator requires it
            executor = TransferExecutor(context, spec.target)
        else:
            executor = WebhookExecutor(context, spec)
        timeout = spec.timeout
        if timeout is None and spec.kind == "transfer":
            timeout = max(TRANSFER_TIMEOUT, context.default_timeout)
        table[spec.name] = RegisteredTool(executor, timeout)
    return table
