"""Local stand-ins for what tools call: Twilio's REST API and a webhook receiver.

Both are small HTTP/1.1 servers (h11 over trio, optional TLS) bound to loopback, for the
tests and the demo. :class:`FakeTwilioRest` answers ``POST
/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` like Twilio does for a call
update: it checks HTTP Basic auth (account SID and auth token), records the ``Twiml``
form field and answers a JSON call resource. :class:`WebhookReceiver` checks each
request's NovaVoice signature (:func:`actors.webhook_policy.verify_signature`), records
it and answers with a scripted reply.
"""

from __future__ import annotations

import hmac
import json
import ssl
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import attrs
import h11
import trio

from actors.webhook_policy import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

MAX_BODY = 1 << 20


@attrs.frozen
class HttpRequest:
    """One request as the fake servers see it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class HttpResponse:
    """What a fake server answers."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def serve_http(
    handler: Handler,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on 127.0.0.1 (a free port, given to ``task_status``) until cancelled."""

    async def connection(stream: trio.abc.Stream) -> None:
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_side=True)
        try:
            await _serve_connection(stream, handler)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            with trio.move_on_after(1, shield=True):
                await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, connection, listeners)
        task_status.started(port)


async def _serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = bytes(await stream.receive_some(65536))
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    return
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
        assert request is not None
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        answer = await handler(
            HttpRequest(request.method.decode(), request.target.decode(), headers, bytes(body))
        )
        out_headers = [*answer.headers, ("content-length", str(len(answer.body)))]
        head = h11.Response(status_code=answer.status, headers=out_headers)
        for event in (head, h11.Data(data=answer.body), h11.EndOfMessage()):
            await stream.send_all(conn.send(event) or b"")
        if conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


def _json(status: int, value: object) -> HttpResponse:
    return HttpResponse(status, json.dumps(value).encode())


@attrs.frozen
class CallUpdate:
    """One call update Twilio received: whose call, and the TwiML it now runs."""

    account_sid: str
    call_sid: str
    twiml: str


@attrs.define(eq=False)
class FakeTwilioRest:
    """Twilio's Calls resource, enough for a call update (see the module docstring)."""

    account_sid: str
    auth_token: str = attrs.field(repr=False)
    updates: list[CallUpdate] = attrs.field(factory=list)
    refused: int = 0
    """Requests refused for wrong or missing credentials (HTTP 401)."""
    fail_next: list[int] = attrs.field(factory=list)
    """Statuses to answer first (e.g. ``[503]``), one per request, before succeeding."""
    updated: trio.Event = attrs.field(factory=trio.Event)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """One request to the fake API."""
        await trio.lowlevel.checkpoint()
        parts = request.target.split("?")[0].split("/")
        # ['', '2010-04-01', 'Accounts', AC..., 'Calls', 'CA....json']
        if (
            request.method != "POST"
            or len(parts) != 6
            or parts[1:3] != ["2010-04-01", "Accounts"]
            or parts[4] != "Calls"
            or not parts[5].endswith(".json")
        ):
            return _json(404, {"code": 20404, "message": "not found"})
        account, call = parts[3], parts[5][: -len(".json")]
        if not self._authorized(request.headers.get("authorization", "")) or (
            account != self.account_sid
        ):
            self.refused += 1
            return _json(401, {"code": 20003, "message": "Authenticate"})
        if self.fail_next:
            return _json(self.fail_next.pop(0), {"code": 20500, "message": "try again"})
        form = parse_qs(request.body.decode())
        twiml = form.get("Twiml", [""])[0]
        self.updates.append(CallUpdate(account, call, twiml))
        self.updated.set()
        return _json(200, {"sid": call, "account_sid": account, "status": "in-progress"})

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = b64decode(value, validate=True)
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return hmac.compare_digest(decoded, expected)


@attrs.frozen
class WebhookCall:
    """One webhook request received, and whether its signature was valid."""

    body: dict[str, object]
    raw_body: bytes
    timestamp: str
    signature: str
    signature_valid: bool


@attrs.define(eq=False)
class WebhookReceiver:
    """A webhook endpoint: verifies signatures, records requests, answers ``reply``."""

    secret: bytes = attrs.field(repr=False)
    reply: Callable[[dict[str, object]], HttpResponse] = attrs.field(
        default=lambda body: _json(200, {"content": "ok"})
    )
    delay: float = 0.0
    """Seconds to wait before answering (the timeout tests)."""
    calls: list[WebhookCall] = attrs.field(factory=list)
    clock: Callable[[], float] = time.time

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """One webhook request."""
        timestamp = request.headers.get(TIMESTAMP_HEADER.lower(), "")
        sig = request.headers.get(SIGNATURE_HEADER.lower(), "")
        valid = verify_signature(self.secret, timestamp, request.body, sig, now=self.clock())
        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}
        self.calls.append(WebhookCall(body, request.body, timestamp, sig, valid))
        if not valid:
            return _json(401, {"error": "bad signature"})
        if self.delay:
            await trio.sleep(self.delay)
        return self.reply(body)
