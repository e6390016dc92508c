"""The emulator's network side: TLS on loopback, stream admission, serving connections.

:class:`Emulator` decides each new stream's fate as Bedrock would (path, SigV4 signature,
model id, throttling faults) and keeps the counters; each accepted TLS connection with ALPN
``h2`` is served by a :class:`~devkit.emulator.connection.EmulatorConnection` (HTTP/2, one
task per stream).
"""

from __future__ import annotations

import random
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from urllib.parse import unquote

import trio

from devkit.emulator.config import EmulatorConfig, StreamPlan
from devkit.emulator.connection import EmulatorConnection, Refusal
from devkit.emulator.sigcheck import AuthFailure, RequestAuth, verify_request
from devkit.emulator.stats import Counters, EmulatorStatistics
from devkit.emulator.tls import EmulatorTLS
from devkit.emulator.voice import CachedVoices

__all__ = ["Emulator", "open_emulator", "serve_emulator"]

_PATH = re.compile(r"^/model/(?P<model>[^/?]+)/invoke-with-bidirectional-stream(?:\?.*)?$")
_HANDSHAKE_TIMEOUT = 10.0


class Emulator:
    """A running emulator: where it listens, the CA to trust, and its counters."""

    def __init__(self, config: EmulatorConfig, tls: EmulatorTLS, host: str, port: int) -> None:
        self.config = config
        self.url = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
        self.ca_file = tls.ca_file
        self.ca_pem = tls.ca_pem
        self._tls = tls
        self._counters = Counters()
        self._ordinal = 0
        self._rng = random.Random(config.seed)
        self._faults_drawn = 0
        self.voices = CachedVoices(seed=config.seed)
        self._idle = trio.Event()

    def statistics(self) -> EmulatorStatistics:
        """Streams opened/active/completed, events and audio in/out, failures, faults."""
        return self._counters.snapshot()

    async def wait_idle(self) -> None:
        """Return once no stream is active (for tests and orderly shutdown)."""
        while self._counters.streams_active:
            self._idle = trio.Event()
            await self._idle.wait()

    def stream_finished(self) -> None:
        """Called by a connection when one of its streams ended."""
        self._counters.streams_active -= 1
        self._idle.set()

    @property
    def counters(self) -> Counters:
        """The live counters (for the connection and session code)."""
        return self._counters

    def admit(self, headers: dict[str, str]) -> tuple[RequestAuth, StreamPlan] | Refusal:
        """Decide a new stream's fate from its request headers, as Bedrock would."""
        self._ordinal += 1
        ordinal = self._ordinal
        cfg = self.config
        match = _PATH.match(headers.get(":path", ""))
        if headers.get(":method") != "POST" or match is None:
            return Refusal(404, "UnknownOperationException", "Unknown operation")
        signed = {k: v for k, v in headers.items() if not k.startswith(":")}
        signed["host"] = headers.get(":authority", "")
        auth = verify_request(
            method="POST",
            path=headers[":path"],
            headers=signed,
            credentials=cfg.credentials,
            session_tokens=cfg.session_tokens,
            region=cfg.region,
            now=datetime.now(UTC),
            max_skew=cfg.max_clock_skew,
            signature_error_type=cfg.signature_error_type,
        )
        if isinstance(auth, AuthFailure):
            self._counters.signature_failures += 1
            return Refusal(auth.status, auth.error_type, auth.message)
        model_id = unquote(match["model"])
        if model_id not in cfg.model_ids:
            # What Bedrock answers for an unknown model id (400, not 404).
            return Refusal(400, "ValidationException", "The provided model identifier is invalid.")
        throttled = (
            ordinal in cfg.throttle_open_ordinals
            or (cfg.throttle_open_every > 0 and ordinal % cfg.throttle_open_every == 0)
            or (cfg.throttle_open_fraction > 0 and self._rng.random() < cfg.throttle_open_fraction)
            or (0 < cfg.max_active_streams <= self._counters.streams_active)
        )
        if throttled:
            self._counters.faults_injected += 1
            return Refusal(
                429, "ThrottlingException", "Too many requests, please wait before trying again."
            )
        plan = cfg.plan_for(ordinal)
        if cfg.fault_fraction > 0 and self._rng.random() < cfg.fault_fraction:
            kind = cfg.fault_kinds[self._faults_drawn % len(cfg.fault_kinds)]
            self._faults_drawn += 1
            plan = plan.with_overrides({kind: self._rng.uniform(*cfg.fault_window)})
        return auth, plan

    async def handle_connection(self, tcp: trio.SocketStream, ssl_context: ssl.SSLContext) -> None:
        """Serve one accepted TCP connection (TLS handshake, then HTTP/2)."""
        stream = trio.SSLStream(tcp, ssl_context, server_side=True)
        try:
            with trio.fail_after(_HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            with trio.move_on_after(1, shield=True):
                await tcp.aclose()
            return
        try:
            if stream.selected_alpn_protocol() != "h2":
                return
            self._counters.connections_opened += 1
            await EmulatorConnection(self, stream).run()
        finally:
            with trio.move_on_after(1, shield=True):
                await stream.aclose()


async def serve_emulator(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[Emulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the emulator until cancelled; ``task_status.started`` gets the :class:`Emulator`."""
    tls = EmulatorTLS()
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        emulator = Emulator(config, tls, host, bound)
        ssl_context = tls.server_context()

        async def handler(tcp: trio.SocketStream) -> None:
            await emulator.handle_connection(tcp, ssl_context)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            task_status.started(emulator)
    finally:
        tls.close()


@asynccontextmanager
async def open_emulator(
    config: EmulatorConfig, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Emulator]:
    """Run an emulator for the duration of the ``async with`` block."""
    async with trio.open_nursery() as nursery:
        emulator: Emulator = await nursery.start(
            partial(serve_emulator, config, host=host, port=port)
        )
        try:
            yield emulator
        finally:
            nursery.cancel_scope.cancel()
