"""The tools' HTTP client: webhook POSTs and the Twilio REST call update, on trio.

The one module that imports :mod:`httpx` (an import-linter contract keeps it so). httpx
runs on trio: its transport, httpcore, picks its native trio network backend when the
running async library is trio (``httpcore._backends.auto``), so no asyncio loop is
involved. Every client here is opened per request (tools are rare; a call holds no
connection), never follows redirects (the SSRF guard) and ignores proxy variables from the
environment (``trust_env=False``: a proxy variable must not reroute a signed request).

Retries: the Twilio update is retried (at most :data:`TWILIO_ATTEMPTS` attempts, short
backoff) on connection errors, HTTP 429 and 5xx: re-sending the same TwiML to the same
call is harmless. Webhooks are not retried: a webhook may not be idempotent, and its
strict timeout leaves no room.
"""

from __future__ import annotations

import ssl
from base64 import b64encode
from typing import Final
from xml.sax.saxutils import escape

import attrs
import httpx
import trio

from actors.webhook_policy import MAX_RESPONSE_BYTES

TWILIO_ATTEMPTS: Final = 3
_BACKOFF: Final = (0.25, 0.5)


class ToolHttpError(Exception):
    """An HTTP exchange of a tool failed; the message is safe to log and to tell the model."""


def _client(ssl_context: ssl.SSLContext, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ssl_context,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


async def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    ssl_context: ssl.SSLContext,
    phase_timeout: float,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> tuple[int, bytes]:
    """POST ``body`` (JSON) to ``url`` once; the status and at most ``max_bytes + 1`` bytes
    of the response body (one more than allowed, so an oversized answer is detectable).
    ``phase_timeout`` bounds each phase (connect, write, each read); the caller bounds the
    whole exchange.

    A redirect is returned as its status, never followed.
    """
    all_headers = {"Content-Type": "application/json", "User-Agent": "novavoice-tools"}
    all_headers.update(headers)
    try:
        async with (
            _client(ssl_context, phase_timeout) as client,
            client.stream("POST", url, content=body, headers=all_headers) as response,
        ):
            data = bytearray()
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > max_bytes:
                    break
            return response.status_code, bytes(data[: max_bytes + 1])
    except httpx.TimeoutException:
        raise ToolHttpError("webhook timed out") from None
    except httpx.HTTPError as exc:
        raise ToolHttpError(f"webhook request failed ({type(exc).__name__})") from None


def dial_twiml(target: str) -> str:
    """TwiML that dials ``target``: an E.164 number, or a ``sip:`` URI in ``<Sip>``."""
    if target.startswith(("sip:", "sips:")):
        inner = f"<Sip>{escape(target)}</Sip>"
    else:
        inner = escape(target)
    return f"<Response><Dial>{inner}</Dial></Response>"


@attrs.frozen(kw_only=True)
class TwilioRest:
    """Twilio's REST API for one account: enough to hand a live call new TwiML."""

    account_sid: str
    auth_token: str = attrs.field(repr=False)
    ssl_context: ssl.SSLContext = attrs.field(repr=False)
    base_url: str
    """``https://api.twilio.com`` (``TWILIO_API_BASE_URL``), or a local fake."""
    timeout: float = 5.0
    """Seconds per attempt (connect, send, answer)."""

    def call_url(self, call_sid: str) -> str:
        """The Call resource of ``call_sid``."""
        base = self.base_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"

    async def update_call(self, call_sid: str, twiml: str) -> None:
        """POST ``Twiml=`` to the call: Twilio leaves the stream and runs it at once.

        Raises :class:`ToolHttpError` after the last failed attempt.
        """
        token = b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "User-Agent": "novavoice-tools"}
        url = self.call_url(call_sid)
        problem = "no attempt made"
        async with _client(self.ssl_context, self.timeout) as client:
            for attempt in range(TWILIO_ATTEMPTS):
                if attempt:
                    await trio.sleep(_BACKOFF[min(attempt - 1, len(_BACKOFF) - 1)])
                try:
                    response = await client.post(url, data={"Twiml": twiml}, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"Twilio request failed ({type(exc).__name__})"
                    continue
                status = response.status_code
                if 200 <= status < 300:
                    return
                problem = f"Twilio answered HTTP {status}"
                if status != 429 and status < 500:
                    break  # 4xx: wrong credentials, unknown or finished call; retrying won't help
        raise ToolHttpError(problem)
