"""The supervisor: accepts carrier WebSockets, admits or refuses them, one task tree per call.

Refusals happen before the upgrade, with an HTTP status and a one-line reason: 404 for an
unknown path or a carrier not in ``CARRIERS``, 401 for missing or failed authentication (403
for a bad Twilio signature or a query string on a signed Twilio route; each carrier is
checked with its own credentials only: :mod:`sessions.carrier_auth`), 503 when
draining or at capacity, 429 when the source address already holds
``MAX_UNSTARTED_PER_SOURCE`` connections without a started call (:mod:`sessions.unstarted`),
and 404 when the assistant named in the URL is invalid or its
prompt is known to be missing (the prompt cache's negative cache, or a lookup that finishes
within ``ADMISSION_PROMPT_CHECK_MS``). Refusing before the upgrade matters on both carriers:
for Asterisk a failed handshake fails the ``Dial()`` unanswered (``webchan_call`` returns -1
when ``ast_websocket_client_connect`` fails), so the dialplan can route to a fallback,
whereas an accepted upgrade is answered at once (``websocket_handoff_to_channel`` sends
``MEDIA_START`` and queues ``AST_CONTROL_ANSWER``) and a later close looks like a normal
hang-up; for Twilio a refused ``<Connect><Stream>`` lets the TwiML continue to its next
verb. An
admitted call runs in the calls nursery under a ``one_for_one`` boundary: whatever escapes
one call is logged and closes that call's socket with 1011, and nothing else notices.

Draining (:meth:`Supervisor.drain`): readiness goes false and new upgrades are refused with
503, but the listener keeps accepting until every call has ended (or the deadline passed)
and the process exits: a call that arrives while the load balancer is still deregistering
gets a 503 its carrier can act on (a Twilio fallback verb), not a TCP refusal. Running calls
continue until the deadline, then are cancelled and end politely (Sonic closed, carrier told
1001).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Callable, Sequence

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketRequest,
    WebSocketServer,
)

from actors.assistant_names import validate_assistant_name
from actors.errors import CarrierAuthError, InvalidAssistantName
from actors.prompt_cache import PromptAvailability
from sessions.admin import Health
from sessions.call import CallChannel
from sessions.call_records import CallDeps, CallSummary
from sessions.carrier_auth import CarrierAuth
from sessions.config import AdmissionSettings
from sessions.dialects.asterisk import AsteriskDialect, select_subprotocol
from sessions.dialects.base import Dialect, assistant_from_path
from sessions.dialects.twilio import TwilioDialect
from sessions.logs import bind_call
from sessions.metrics import Carrier, Metrics
from sessions.tls import ServerTls, TlsListener
from sessions.unstarted import UnstartedConnections, UnstartedSlot

logger = logging.getLogger("novavoice.supervisor")

# Messages larger than these caps close the socket with 1009 (CloseCode.MESSAGE_TOO_BIG)
# inside trio-websocket; the
# dialects enforce their own (smaller, documented) caps with a specific close code.
MAX_WS_MESSAGE_BYTES = 256 * 1024
_CLOSED = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


@attrs.define(eq=False)
class Supervisor:
    """Admission, the calls nursery, and draining. Built by :func:`serve_calls`."""

    deps: CallDeps
    admission: AdmissionSettings
    health: Health
    metrics: Metrics
    _calls_nursery: trio.Nursery
    active_calls: int = 0
    draining: bool = False
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _auth: CarrierAuth = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: CarrierAuth.from_admission(self.admission), True),
    )
    unstarted: UnstartedConnections = attrs.field(init=False)
    """Connections per source address without a started call (``MAX_UNSTARTED_PER_SOURCE``)."""

    def __attrs_post_init__(self) -> None:
        self.unstarted = UnstartedConnections(self.admission.max_unstarted_per_source)

    # --- admission ------------------------------------------------------------------------

    def _route(self, path: str) -> Callable[[], Dialect] | None:
        route = path.split("?", 1)[0]
        default = self.deps.settings.default_assistant
        enabled = self._auth.enabled
        if enabled("twilio") and (route == "/twilio" or route.startswith("/twilio/")):
            # A signed upgrade binds the assistant to the signed path (or the default):
            # customParameters travel in the unsigned start message.
            return functools.partial(
                TwilioDialect,
                path=path,
                path_prefix="/twilio",
                default_assistant=default,
                assistant_from_parameters=not self._auth.twilio_signatures,
            )
        if enabled("asterisk") and (route == "/asterisk" or route.startswith("/asterisk/")):
            return functools.partial(
                AsteriskDialect,
                path=path,
                path_prefix="/asterisk",
                default_assistant=default,
                marks=self.deps.settings.asterisk_marks,
            )
        return None

    async def _unknown_assistant(self, carrier: str, path: str) -> str | None:
        """Why the assistant named in the URL cannot take a call, else ``None``.

        Only a name in the URL is checked: one given later (Twilio ``customParameters``,
        Asterisk's ``NOVAVOICE_ASSISTANT`` channel variable) is checked when the call
        starts, as is everything the bounded lookup could not tell.
        """
        named = assistant_from_path(path, "/" + carrier)
        if named is None:
            return None
        # Refusals here still count as prompt-load failures: the missing-prompt alert
        # (novavoice_prompt_load_failures_total{reason="not_found"}) must keep firing.
        try:
            name = validate_assistant_name(named)
        except InvalidAssistantName as exc:
            self.metrics.prompt_load_failed(exc)
            return "invalid assistant name"
        known = await self.deps.prompts.check(name, self.admission.prompt_check)
        if known is PromptAvailability.MISSING:
            self.metrics.prompt_load_failures.labels("not_found").inc()
            return f"no prompt for assistant {name!r}"
        return None

    def _authenticate(self, carrier: str, request: WebSocketRequest) -> None:
        self._auth.check(carrier, request.path, request.headers)

    async def _refuse(self, request: WebSocketRequest, status: int, reason: str) -> None:
        body = reason.encode() + b"\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if status in (429, 503):
            headers.append((b"retry-after", b"1"))
        with (
            trio.move_on_after(2.0, shield=True),
            contextlib.suppress(*_CLOSED),
        ):
            await request.reject(status, extra_headers=headers, body=body)

    async def handle(self, request: WebSocketRequest) -> None:
        """trio-websocket's handler: admit or refuse one upgrade request, then run the call.

        Nothing but cancellation escapes: an exception here would reach the calls nursery
        and end every call.
        """
        try:
            await self._handle(request)
        except Exception:
            logger.exception("connection handler failed")

    async def _handle(self, request: WebSocketRequest) -> None:
        make_dialect = self._route(request.path)
        if make_dialect is None:
            self.metrics.refused("not_found")
            enabled = " or ".join(f"/{c}/<assistant>" for c in self._auth.carriers)
            await self._refuse(request, 404, f"unknown path: use {enabled}")
            return
        dialect = make_dialect()
        carrier: Carrier = "twilio" if dialect.carrier == "twilio" else "asterisk"
        try:
            self._authenticate(carrier, request)
        except CarrierAuthError as exc:
            self.metrics.refused("unauthorized" if exc.http_status == 401 else "forbidden")
            logger.warning(
                "upgrade refused",
                extra={
                    "event": "upgrade_refused",
                    "carrier": carrier,
                    "status": exc.http_status,
                    "why": exc.reason,
                },
            )
            await self._refuse(request, exc.http_status, exc.reason)
            return
        if self.draining:
            self.metrics.refused("draining")
            await self._refuse(request, 503, "draining: not taking new calls")
            return
        if self.active_calls >= self.admission.max_calls:
            self.metrics.refused("capacity")
            await self._refuse(request, 503, "at capacity")
            return
        source = _source_address(request)
        slot = self.unstarted.admit(source)
        if slot is None:
            self.metrics.refused("source_limit")
            logger.warning(
                "upgrade refused",
                extra={
                    "event": "upgrade_refused",
                    "carrier": carrier,
                    "status": 429,
                    "why": "too many unstarted connections from one source",
                    "source": source,
                },
            )
            await self._refuse(
                request, 429, "too many connections from this address without a started call"
            )
            return
        self._admitted()
        try:
            why = await self._unknown_assistant(carrier, request.path)
            if why is not None:
                self.metrics.refused("unknown_assistant")
                logger.warning(
                    "upgrade refused",
                    extra={
                        "event": "upgrade_refused",
                        "carrier": carrier,
                        "status": 404,
                        "why": why,
                    },
                )
                await self._refuse(request, 404, why)
                return
            await self._run_admitted(request, dialect, carrier, slot)
        finally:
            slot.release()  # if the call never started
            self._released()

    def _admitted(self) -> None:
        self.active_calls += 1
        if self.active_calls >= self.admission.max_calls:
            self.health.set_not_ready("at capacity")
        self._notify()

    def _released(self) -> None:
        self.active_calls -= 1
        if not self.draining and self.active_calls < self.admission.max_calls:
            self.health.set_ready()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_active_calls(self, predicate: Callable[[int], bool]) -> None:
        """Wait until ``predicate(active_calls)`` holds (drain, tests, the demo)."""
        while not predicate(self.active_calls):
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def _run_admitted(
        self, request: WebSocketRequest, dialect: Dialect, carrier: Carrier, slot: UnstartedSlot
    ) -> None:
        subprotocol = (
            select_subprotocol(request.proposed_subprotocols) if carrier == "asterisk" else None
        )
        provisional_id = f"conn-{next(self._ids)}"
        with (
            bind_call(provisional_id, carrier) as ctx,
            self.metrics.call(carrier) as cm,
        ):
            t0 = time.perf_counter()
            try:
                ws = await request.accept(subprotocol=subprotocol)
            except ConnectionClosed:
                cm.end_reason = "disconnected"
                return
            logger.info(
                "call accepted",
                extra={"event": "call_accepted", "path": request.path.split("?", 1)[0]},
            )
            channel = CallChannel(ws, dialect, self.deps, cm, on_started=slot.release)
            try:
                await channel.run()
            except Exception as exc:
                # one_for_one: a bug ends this call only; run() already closed its socket
                # with 1011. (An ExceptionGroup of Exceptions lands here too; one holding
                # Cancelled is a BaseExceptionGroup and propagates, as cancellation must.)
                logger.exception(
                    "call crashed", extra={"event": "call_crashed", "error": type(exc).__name__}
                )
            finally:
                _log_call_end(channel.summary, time.perf_counter() - t0, ctx.call_log_drops)

    # --- lifecycle ------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Readiness false and new upgrades refused with 503 (running calls are untouched).

        The listener stays open, answering 503 before the upgrade, until
        :meth:`end_all_calls` (the end of :meth:`drain`) stops it with the calls.
        """
        self.draining = True
        self.health.set_not_ready("draining")

    async def drain(self, deadline: float) -> None:
        """Stop accepting, wait up to ``deadline`` seconds for calls, then end the rest."""
        self.stop_accepting()
        logger.info(
            "draining",
            extra={"event": "draining", "active_calls": self.active_calls, "deadline_s": deadline},
        )
        with trio.move_on_after(deadline):
            await self.wait_active_calls(lambda n: n == 0)
        self.end_all_calls()

    def end_all_calls(self) -> None:
        """Cancel every running call now (each ends politely with close code 1001), and the
        listener with them."""
        self._calls_nursery.cancel_scope.cancel(reason="shutdown")


async def serve_calls(
    host: str,
    port: int,
    deps: CallDeps,
    *,
    admission: AdmissionSettings,
    health: Health,
    metrics: Metrics,
    sockets: Sequence[socket.socket] | None = None,
    tls: ServerTls | None = None,
    task_status: trio.TaskStatus[tuple[Supervisor, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve carrier WebSockets on ``host:port`` until cancelled or drained.

    ``sockets``, when given, are already listening (a worker process inherits them from its
    parent, :mod:`sessions.workers`) and ``host``/``port`` are ignored. With ``tls`` every
    connection is TLS (``wss://``) with its live certificate (:mod:`sessions.tls`). Starts with
    ``(supervisor, bound_port)``. Returns once drained (the listener stopped and every call
    ended).
    """
    async with trio.open_nursery() as calls_nursery:
        supervisor = Supervisor(deps, admission, health, metrics, calls_nursery)
        listeners: list[trio.SocketListener]
        if sockets is not None:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in sockets]
        else:
            listeners = await trio.open_tcp_listeners(port, host=host)
            if port == 0:  # several addresses would each get their own port
                for extra in listeners[1:]:
                    await extra.aclose()
                listeners = listeners[:1]
        carrier_listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = listeners
        if tls is not None:
            carrier_listeners = [TlsListener(listener, tls) for listener in listeners]
        server = WebSocketServer(
            supervisor.handle,
            # WebSocketServer is annotated for trio's own listener classes but serves any
            # Listener (it only reads their sockets for a debug log line).
            carrier_listeners,  # type: ignore[arg-type]
            handler_nursery=calls_nursery,
            max_message_size=MAX_WS_MESSAGE_BYTES,
            connect_timeout=admission.handshake_timeout,
            disconnect_timeout=2.0,
        )
        bound = listeners[0].socket.getsockname()[1]
        # The listener runs in the calls nursery: it keeps answering (503 while draining)
        # until end_all_calls cancels it along with the calls.
        await calls_nursery.start(server.run)
        health.set_ready()
        task_status.started((supervisor, bound))
    # Drained: every call has ended and the listener was cancelled with them.
    for listener in listeners:
        with trio.move_on_after(1.0, shield=True):
            await listener.aclose()


def _source_address(request: WebSocketRequest) -> str:
    """The TCP peer's address (never a forwarded-for header: anyone can write one)."""
    remote = request.remote
    if not isinstance(remote, Endpoint):
        return str(remote)
    address = remote.address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # a dual-stack listener: one IPv4 source, one count
    return str(address)


def _log_call_end(summary: CallSummary, duration: float, call_log_drops: int) -> None:
    end = summary.end
    logger.info(
        "call ended",
        extra={
            "event": "call_ended",
            "reason": end.reason if end else None,
            "close_code": end.code if end else None,
            "duration_s": round(duration, 3),
            "turns": summary.turns,
            "barge_ins": summary.barge_ins,
            "frames_in": summary.frames_in,
            "frames_out": summary.frames_out,
            "pre_stream_drops": summary.pre_stream_drops,
            # Every drop of this call, by reason (the queue labels of the drops metric).
            "drops": summary.drops() | {"call_log": call_log_drops},
            "dtmf_digits": summary.dtmf_digits,
            "call_log_drops": call_log_drops,
            "comfort_silence_chunks": summary.audio_in.silence_chunks_sent,
            "marks_sent": summary.marks_sent,
            "marks_played": summary.marks_played,
            "audio_sent_s": round(summary.audio_sent_s, 3),
            "audio_heard_s": round(summary.audio_heard_s, 3),
            "sonic_streams": summary.sonic_streams,
            "sonic_recoveries": summary.sonic_recoveries,
            "sonic_recovery_attempts": summary.sonic_recovery_attempts,
            # One number per reason label (stall, stream_reset, ...): bounded, no free text.
            **{f"sonic_failures_{why}": n for why, n in summary.sonic_failures.items()},
            # Numeric only: the log's redaction guard drops "audio" fields that are not.
            **(
                {"first_audio_s": round(summary.first_audio_seconds, 4)}
                if summary.first_audio_seconds is not None
                else {}
            ),
            **({"fallback": summary.fallback} if summary.fallback is not None else {}),
        },
    )
