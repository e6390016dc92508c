"""A small pool of HTTP/2 connections to Bedrock, and :func:`open_sonic_client`.

The pool runs its connections in its own nursery. A new stream goes to the accepting
connection with the fewest streams that still has room under the server's
``SETTINGS_MAX_CONCURRENT_STREAMS`` (capped by ``ConnectionConfig.max_streams``). When every
connection is full, the pool opens another, one at a time, up to ``max_connections``.

Policy when all ``max_connections`` are full: the caller *waits* for a slot for at most
``acquire_timeout`` seconds, then gets :class:`SonicTimeout` (``acquire_timeout=0`` fails
at once). A connection that received GOAWAY, failed or was
closed leaves the pool at once; a draining one keeps serving its running streams in the
background until they end.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from actors.errors import SonicConnectionError, SonicTimeout
from actors.exception_groups import unwrap_lone_exception
from actors.sonic.connection import (
    Connection,
    ConnectionConfig,
    H2Stream,
    Opener,
    open_tls_stream,
)
from actors.sonic.credentials import BotocoreCredentialsProvider, CredentialsProvider
from actors.sonic.endpoint import make_ssl_context, resolve_endpoint
from actors.sonic.stream import DEFAULT_MODEL_ID, SonicClient

__all__ = ["ConnectionPool", "open_sonic_client"]

logger = logging.getLogger(__name__)


class ConnectionPool:
    """Connections to one endpoint, opened on demand in ``nursery`` (see module docstring)."""

    def __init__(
        self,
        *,
        opener: Opener,
        config: ConnectionConfig,
        nursery: trio.Nursery,
        max_connections: int = 4,
        acquire_timeout: float = 10.0,
        label: str = "bedrock",
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._opener = opener
        self._config = config
        self._nursery = nursery
        self._max_connections = max_connections
        self._acquire_timeout = acquire_timeout
        self._label = label
        self._connections: list[Connection] = []
        self._connecting = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()
        self._context = contextvars.copy_context()
        self._serial = 0
        self.connections_opened = 0
        self.connect_failures = 0
        self.acquire_timeouts = 0

    @property
    def connections(self) -> Sequence[Connection]:
        """The connections currently accepting streams."""
        return tuple(self._connections)

    def _changed(self) -> None:
        # Called synchronously by connections: drop the ones that stopped accepting, and
        # let every waiter look again.
        self._connections = [c for c in self._connections if c.accepting]
        self._lot.unpark_all()

    def _pick(self) -> Connection | None:
        best: Connection | None = None
        for conn in self._connections:
            if conn.has_capacity() and (best is None or conn.active_streams < best.active_streams):
                best = conn
        return best

    async def open_stream(self, headers: Sequence[tuple[str, str]]) -> H2Stream:
        """Send a request's HEADERS on a pooled connection and return the new stream.

        Raises :class:`SonicConnectionError` / :class:`SonicTimeout` when no connection can
        be made, and :class:`SonicTimeout` when the pool stays full for ``acquire_timeout``.
        """
        deadline = trio.current_time() + self._acquire_timeout
        while True:
            if self._closed:
                raise SonicConnectionError(f"the Sonic client for {self._label} is closed")
            conn = self._pick()
            if conn is not None:
                stream = conn.open_stream(headers)
                await trio.lowlevel.checkpoint()
                return stream
            room = len(self._connections) + self._connecting < self._max_connections
            if room and self._connecting == 0:
                await self._connect()
                continue
            if self._connecting == 0 and trio.current_time() >= deadline:
                self.acquire_timeouts += 1
                raise SonicTimeout(
                    f"all {self._max_connections} connections to {self._label} are full "
                    f"(waited {self._acquire_timeout}s for a free stream)"
                )
            # Someone is connecting (its time is bounded by connect_timeout) or the pool is
            # full: wait for any change, at most until our deadline when the pool is full.
            with trio.move_on_at(deadline if self._connecting == 0 else math.inf):
                await self._lot.park()

    async def _connect(self) -> None:
        self._serial += 1
        conn = Connection(
            self._opener,
            self._config,
            label=f"{self._label}#{self._serial}",
            on_change=self._changed,
        )
        self._connecting += 1
        done_send, done_recv = trio.open_memory_channel[Exception | None](1)
        # A connection serves every call, so its tasks are spawned in the pool's own context,
        # not in the context of the call that happened to need it: they must not log with
        # that call's id, and that call hanging up must not abort the connect for the rest.
        self._context.run(self._nursery.start_soon, self._run_connect, conn, done_send)
        try:
            error = await done_recv.receive()
        except trio.EndOfChannel:
            raise SonicConnectionError(f"the Sonic client for {self._label} is closed") from None
        if error is not None:
            raise error

    async def _run_connect(
        self, conn: Connection, done: trio.MemorySendChannel[Exception | None]
    ) -> None:
        with done:  # closed without a value if this task is cancelled (the pool closes)
            error: Exception | None = None
            try:
                await self._nursery.start(conn.run)
            except Exception as exc:
                self.connect_failures += 1
                error = exc
            else:
                self.connections_opened += 1
                if self._closed:
                    conn.close()
                else:
                    self._connections.append(conn)
            finally:
                self._connecting -= 1
                self._lot.unpark_all()
            done.send_nowait(error)

    def close(self) -> None:
        """Refuse new streams and retire every connection (each sends GOAWAY and closes)."""
        self._closed = True
        for conn in self._connections:
            conn.close()
        self._connections = []
        self._lot.unpark_all()

    def statistics(self) -> dict[str, int]:
        """Counters for metrics and tests."""
        return {
            "connections": len(self._connections),
            "connecting": self._connecting,
            "active_streams": sum(c.active_streams for c in self._connections),
            "connections_opened": self.connections_opened,
            "connect_failures": self.connect_failures,
            "acquire_timeouts": self.acquire_timeouts,
        }


@asynccontextmanager
async def open_sonic_client(
    *,
    region: str,
    model_id: str = DEFAULT_MODEL_ID,
    endpoint_url: str | None = None,
    ca_file: str | None = None,
    credentials_provider: CredentialsProvider | None = None,
    max_connections: int = 4,
    max_streams_per_connection: int = 100,
    connect_timeout: float = 10.0,
    first_response_timeout: float = 10.0,
    acquire_timeout: float = 10.0,
    close_timeout: float = 3.0,
    keepalive_interval: float | None = 20.0,
    write_coalesce_delay: float = 0.0,
    connection_config: ConnectionConfig | None = None,
    opener: Opener | None = None,
) -> AsyncIterator[SonicClient]:
    """A Sonic client with its connection pool, alive for the ``async with`` block.

    ``endpoint_url`` and ``ca_file`` default to ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` /
    ``AWS_ENDPOINT_URL`` and ``AWS_CA_BUNDLE``; credentials to botocore's standard chain.
    ``connection_config``, when given, overrides the individual connection settings;
    ``opener`` replaces TLS (tests). ``write_coalesce_delay`` (off by default) makes the
    writer wait that long before a small write, to batch many calls' paced audio per
    syscall; against the emulator it saved CPU in one run and not in another, and it adds
    its delay to every round trip (stream opens, window updates). Errors from the block
    come out as themselves, never wrapped in an ExceptionGroup. On exit every connection
    sends GOAWAY and closes.
    """
    endpoint = resolve_endpoint(region=region, endpoint_url=endpoint_url, ca_file=ca_file)
    if opener is None:
        opener = functools.partial(open_tls_stream, endpoint, make_ssl_context(endpoint))
    config = connection_config or ConnectionConfig(
        connect_timeout=connect_timeout,
        max_streams=max_streams_per_connection,
        keepalive_interval=keepalive_interval,
        close_timeout=close_timeout,
        write_coalesce_delay=write_coalesce_delay,
    )
    provider = credentials_provider or BotocoreCredentialsProvider()
    # Connection tasks never raise after they started, so a group here only wraps what
    # the body raised; hand a lone exception back as itself.
    with unwrap_lone_exception():
        async with trio.open_nursery() as nursery:
            pool = ConnectionPool(
                opener=opener,
                config=config,
                nursery=nursery,
                max_connections=max_connections,
                acquire_timeout=acquire_timeout,
                label=endpoint.authority,
            )
            client = SonicClient(
                pool=pool,
                endpoint=endpoint,
                region=region,
                model_id=model_id,
                credentials_provider=provider,
                first_response_timeout=first_response_timeout,
                close_timeout=close_timeout,
            )
            try:
                yield client
            finally:
                # Streams are closed by now (their blocks are inside ours); give connections
                # close_timeout to send GOAWAY and close, then cut what is left.
                pool.close()
                nursery.cancel_scope.deadline = trio.current_time() + close_timeout
