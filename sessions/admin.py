"""The daemon's admin HTTP endpoint over HTTP/1.1 (h11): health, metrics, prompt refresh.

Deliberately tiny and hard to abuse, since it usually listens where a load balancer, a
Kubernetes kubelet and Prometheus can reach it:

- ``GET /healthz``: 200 while the process runs (the event loop answers, so it is alive).
- ``GET /readyz``: 200 when :class:`Health` says ready, else 503 with the reason as the body.
- ``GET /metrics``: the Prometheus exposition of the daemon's private registry, in the text
  format (or OpenMetrics when the scraper asks for it through ``Accept``).
- ``POST /v1/prompts/{name}/refresh``: drop assistant ``name`` from the prompt cache, so
  the next call fetches the version just published (the prompt admin calls it after every
  publish and rollback). Needs ``Authorization: Bearer <DAEMON_ADMIN_TOKEN>``, compared in
  constant time: 401 without it or with a wrong one, 403 when the daemon has no token set
  (refresh disabled), 404 for an invalid assistant name. Answers ``{"assistant": name,
  "dropped": bool}``. Calls already running keep the prompt they started with.
- Any other path is 404, any other method 405.

This stays a hand-written h11 server on purpose: the prompt admin (``promptadmin``) runs on
Starlette and hypercorn in its own process, but the daemon keeps its dependencies and idle
memory minimal, and these few routes need nothing more.

Each connection runs in its own task and may keep its connection alive for many requests.
Every request must arrive whole (headers and body) within ``request_timeout`` from the moment
the server starts waiting for it (idle keep-alive time included), so a slowloris client is cut
off at its deadline; headers are capped at ``max_header_bytes`` (431) and bodies at
``max_body_bytes`` (413). A connection's failure is logged and ends that connection only.

Health and readiness always answer, even when idle sockets fill the ``max_connections``
slots (a failed liveness probe would restart the pod and end every call): a connection
beyond the cap gets one request within ``probe_timeout`` (short), and only ``/healthz`` and
``/readyz`` are answered there; anything else gets 503 and the connection is closed.

The admin port must stay private (a pod or loopback address, reachable by the kubelet,
the load balancer's health check and Prometheus only): ``/metrics`` reveals traffic, and
these limits bound abuse, they do not make the port fit for the internet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import h11
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from actors.assistant_names import AssistantName, validate_assistant_name
from actors.errors import InvalidAssistantName
from sessions.logs import log_event

logger = logging.getLogger(__name__)

_RECEIVE_SIZE = 16 * 1024
# After an error response: how long and how much unread input we drain before closing.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 256 * 1024
_PEER_FAILURES = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    h11.ProtocolError,
)


_REFRESH_PATH = re.compile(rb"^/v1/prompts/([^/]+)/refresh$")


class PromptInvalidator(Protocol):
    """What the refresh route needs from the prompt cache."""

    async def invalidate(self, assistant: AssistantName) -> bool:
        """Drop ``assistant``; whether anything was held."""
        ...


class RegistrySource(Protocol):
    """What ``/metrics`` exposes: a :class:`~sessions.metrics.Metrics`, or the worker
    parent's merged view (:mod:`sessions.workers`)."""

    registry: CollectorRegistry


@attrs.define(eq=False)
class Health:
    """Readiness as the supervisor sees it; the admin server only reads it.

    Starts not ready (``starting``); the supervisor calls :meth:`set_ready` once it listens
    and :meth:`set_not_ready` with a short reason (``draining``, ``at capacity``).
    """

    ready: bool = False
    reason: str = "starting"

    def set_ready(self) -> None:
        """Ready to take calls."""
        self.ready = True
        self.reason = ""

    def set_not_ready(self, reason: str) -> None:
        """Not taking calls, for ``reason`` (one short line: it is the 503 body)."""
        self.ready = False
        self.reason = reason


@attrs.frozen(kw_only=True)
class AdminLimits:
    """Bounds that keep a misbehaving client from holding the admin server's resources."""

    request_timeout: float = 10.0
    """Seconds for a whole request to arrive, idle keep-alive wait included."""
    write_timeout: float = 10.0
    """Seconds for a response to be written."""
    max_header_bytes: int = 8 * 1024
    """Largest request head (431 beyond)."""
    max_body_bytes: int = 1024
    """Largest request body (413 beyond); our GETs need none."""
    max_connections: int = 64
    """Open admin connections served normally; beyond them, only probes are answered."""
    probe_timeout: float = 1.0
    """Seconds a connection beyond ``max_connections`` has to send its one request."""


@attrs.define(eq=False)
class AdminServer:
    """Answers admin requests on streams handed to :meth:`handle` (one task per stream)."""

    metrics: RegistrySource
    health: Health
    limits: AdminLimits = AdminLimits()
    prompts: PromptInvalidator | None = None
    """The prompt cache, for the refresh route (absent: refresh answers 404)."""
    refresh_token: str | None = attrs.field(default=None, repr=False)
    """``DAEMON_ADMIN_TOKEN``; unset: the refresh route refuses every request (403)."""
    refresh_metrics: Callable[[], Awaitable[None]] | None = None
    """Awaited before each ``/metrics`` exposition (the worker parent scrapes its workers)."""
    active: int = 0
    """Connections being served right now."""

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection until it closes, fails or times out; never raises."""
        self.active += 1
        try:
            if self.active > self.limits.max_connections:
                await self._refuse_busy(stream)
            else:
                await self._serve(stream)
        except _PEER_FAILURES as exc:
            # Resets, timeouts and bad bytes are the peer's doing: routine, and never fatal.
            log_event(logger, "admin_connection_failed", level=logging.DEBUG, error=repr(exc))
        except Exception:
            # A bug in serving one request must still not take the server down.
            logger.exception("admin request failed", extra={"event": "admin_error"})
        finally:
            self.active -= 1
            with trio.move_on_after(1, shield=True):
                await stream.aclose()

    async def _refuse_busy(self, stream: trio.abc.Stream) -> None:
        # Over the cap: one short-deadline request, probes answered, everything else 503.
        # Idle sockets here cost a task for ``probe_timeout`` only, so they cannot starve
        # the probes the way they fill the normal slots.
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        request = None
        with trio.move_on_after(self.limits.probe_timeout):
            try:
                request = await self._read_request(conn, stream)
            except h11.RemoteProtocolError:
                request = None
        if request is not None and _is_probe(request):
            await self._respond(conn, stream, request)
            return
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            await self._send_response(
                conn, stream, 503, b"too many admin connections\n", close=True
            )

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        while True:
            with trio.move_on_after(self.limits.request_timeout) as deadline:
                try:
                    request = await self._read_request(conn, stream)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        status = exc.error_status_hint
                        await self._send_response(conn, stream, status, b"bad request\n", True)
                    return
            if deadline.cancelled_caught:
                # Mid-request: say so. Idle keep-alive connection: just close.
                if conn.their_state is not h11.IDLE or conn.trailing_data[0]:
                    await self._send_response(conn, stream, 408, b"request timeout\n", True)
                return
            if request is None:
                return
            await self._respond(conn, stream, request)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.abc.Stream
    ) -> h11.Request | None:
        """The next request, its body read and discarded; None when the peer closed."""
        event = await _next_event(conn, stream)
        if not isinstance(event, h11.Request):
            return None
        if event.method not in (b"GET", b"POST"):
            return event  # answered 405 at once, body unread, connection closed.
        received = 0
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self.limits.max_body_bytes:
                return event
        while True:
            event_ = await _next_event(conn, stream)
            if isinstance(event_, h11.Data):
                received += len(event_.data)
                if received > self.limits.max_body_bytes:
                    return event
            elif isinstance(event_, h11.EndOfMessage):
                return event
            else:
                return None

    async def _respond(
        self, conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request
    ) -> None:
        path = request.target.split(b"?", 1)[0]
        refresh = _REFRESH_PATH.match(path)
        allowed = b"POST" if refresh is not None else b"GET"
        if request.method != allowed:
            body = b"" if request.method == b"HEAD" else b"method not allowed\n"
            extra = [(b"allow", allowed)]
            await self._send_response(conn, stream, 405, body, True, extra)
            return
        if conn.their_state not in (h11.DONE, h11.MUST_CLOSE):  # MUST_CLOSE: "Connection: close"
            await self._send_response(conn, stream, 413, b"request body too large\n", True)
            return
        if refresh is not None:
            await self._refresh(conn, stream, request, refresh.group(1))
        elif path == b"/healthz":
            await self._send_response(conn, stream, 200, b"ok\n")
        elif path == b"/readyz":
            if self.health.ready:
                await self._send_response(conn, stream, 200, b"ready\n")
            else:
                reason = f"not ready: {self.health.reason}\n".encode(errors="replace")
                await self._send_response(conn, stream, 503, reason)
        elif path == b"/metrics":
            accept = ""
            for name, value in request.headers:
                if name == b"accept":
                    accept = value.decode("latin-1")
            encoder, content_type = choose_encoder(accept)
            try:
                if self.refresh_metrics is not None:
                    await self.refresh_metrics()
                body = encoder(self.metrics.registry)
            except Exception:
                logger.exception("metrics exposition failed", extra={"event": "admin_error"})
                await self._send_response(conn, stream, 500, b"metrics unavailable\n")
                return
            await self._send_response(
                conn, stream, 200, body, content_type=content_type.encode("latin-1")
            )
        else:
            await self._send_response(conn, stream, 404, b"not found\n")

    async def _refresh(
        self, conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request, raw: bytes
    ) -> None:
        if self.prompts is None:
            await self._send_response(conn, stream, 404, b"not found\n")
            return
        if self.refresh_token is None:
            body = b"prompt refresh is disabled: DAEMON_ADMIN_TOKEN is not set\n"
            await self._send_response(conn, stream, 403, body)
            return
        if not _bearer_matches(request.headers, self.refresh_token):
            challenge = [(b"www-authenticate", b'Bearer realm="novavoice-admin"')]
            await self._send_response(conn, stream, 401, b"unauthorized\n", False, challenge)
            return
        try:
            name = validate_assistant_name(raw.decode("ascii"))
            dropped = await self.prompts.invalidate(name)
        except (UnicodeDecodeError, InvalidAssistantName):
            await self._send_response(conn, stream, 404, b"no such assistant name\n")
            return
        log_event(logger, "prompt_refreshed", assistant=name, dropped=dropped)
        body = json.dumps({"assistant": name, "dropped": dropped}).encode() + b"\n"
        await self._send_response(conn, stream, 200, body, content_type=b"application/json")

    async def _send_response(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        status: int,
        body: bytes,
        close: bool = False,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        *,
        content_type: bytes = b"text/plain; charset=utf-8",
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *(extra_headers or []),
        ]
        if close:
            headers.append((b"connection", b"close"))
        data = conn.send(h11.Response(status_code=status, headers=headers))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        with trio.fail_after(self.limits.write_timeout):
            await stream.send_all(data)
        if close:
            await self._linger(stream)

    async def _linger(self, stream: trio.abc.Stream) -> None:
        """Half-close, then drain what the client still sends, briefly and boundedly.

        Closing a socket that has unread input makes the kernel send RST, which can destroy
        the error response before the client reads it (a 431 or 413 is exactly when the
        client has more to send).
        """
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return
        await stream.send_eof()
        drained = 0
        with trio.move_on_after(_LINGER_SECONDS):
            while drained < _LINGER_BYTES:
                chunk = await stream.receive_some(_RECEIVE_SIZE)
                if not chunk:
                    break
                drained += len(chunk)


def _is_probe(request: h11.Request) -> bool:
    """Whether ``request`` is a liveness or readiness probe (served even beyond the cap)."""
    path = request.target.split(b"?", 1)[0]
    return request.method == b"GET" and path in (b"/healthz", b"/readyz")


def _bearer_matches(headers: Any, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` is present, compared in constant time
    (over SHA-256 digests, so not even the token's length leaks)."""
    expected = hashlib.sha256(b"Bearer " + token.encode()).digest()
    for name, value in headers:
        if name == b"authorization":
            return hmac.compare_digest(hashlib.sha256(bytes(value)).digest(), expected)
    return False


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
            continue
        return event


async def serve_admin(
    listen_host: str | None,
    port: int,
    *,
    metrics: RegistrySource,
    health: Health,
    limits: AdminLimits | None = None,
    prompts: PromptInvalidator | None = None,
    refresh_token: str | None = None,
    refresh_metrics: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin endpoint until cancelled; reports the bound ``(host, port)``.

    ``port`` 0 picks a free port. When ``listen_host`` resolves to several addresses, port 0
    would give each its own port, so only the first is kept then.
    """
    server = AdminServer(
        metrics,
        health,
        limits or AdminLimits(),
        prompts=prompts,
        refresh_token=refresh_token,
        refresh_metrics=refresh_metrics,
    )
    listeners = await trio.open_tcp_listeners(port, host=listen_host)
    if port == 0:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    host, bound_port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        task_status.started((host, bound_port))
