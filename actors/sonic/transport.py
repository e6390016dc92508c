"""What a Sonic HTTP/2 connection runs over, and how it is tuned.

:func:`open_tls_stream` opens TCP + TLS with ALPN ``h2`` (the only way to reach Bedrock's
bidirectional stream); :class:`ConnectionConfig` holds a connection's limits and timers;
:class:`GracefulH2Connection` is h2's connection minus one behaviour: on a received GOAWAY,
h2 4.x moves its state machine to CLOSED and drops queued output (python-hyper/h2#1181),
which would kill the streams RFC 9113 §6.8 lets finish.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import attrs
import h2.connection
import h2.events
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame

from actors.errors import SonicConnectionError
from actors.sonic.endpoint import Endpoint

__all__ = ["ConnectionConfig", "GracefulH2Connection", "Opener", "open_tls_stream"]

Opener = Callable[[], Awaitable[trio.abc.Stream]]
"""Opens the byte stream a connection runs over (TLS with ALPN h2, or a test stream)."""


async def open_tls_stream(endpoint: Endpoint, ssl_context: ssl.SSLContext) -> trio.abc.Stream:
    """TCP + TLS to ``endpoint`` (SNI = its host), insisting on ALPN ``h2``.

    Raises :class:`SonicConnectionError` when the socket or the handshake fails or the
    server does not speak HTTP/2; the caller bounds the time.
    """
    try:
        stream = await trio.open_ssl_over_tcp_stream(
            endpoint.host, endpoint.port, ssl_context=ssl_context, https_compatible=True
        )
    except OSError as exc:
        raise SonicConnectionError(f"cannot connect to {endpoint.authority}: {exc}") from exc
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        reason = exc.__cause__ or exc
        raise SonicConnectionError(
            f"TLS handshake with {endpoint.authority} failed: {reason}"
        ) from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    protocol = stream.selected_alpn_protocol()
    if protocol != "h2":
        await trio.aclose_forcefully(stream)
        raise SonicConnectionError(
            f"{endpoint.authority} did not negotiate HTTP/2 over TLS (ALPN gave {protocol!r})"
        )
    return stream


@attrs.frozen(kw_only=True)
class ConnectionConfig:
    """Limits and timers of one connection (seconds and bytes)."""

    connect_timeout: float = 10.0
    """TCP connect + TLS handshake + the server's first SETTINGS."""
    write_timeout: float = 10.0
    """Longest one socket write may take before the connection is declared dead."""
    write_buffer_high: int = 1 << 20
    """Bytes queued for the socket above which senders wait for the writer."""
    keepalive_interval: float | None = 20.0
    """Idle time (nothing received) before a PING; ``None`` disables keep-alive."""
    keepalive_timeout: float = 10.0
    """How long after a PING something must arrive before the connection is dead."""
    stream_window: int = 1 << 20
    """Our per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE)."""
    max_streams: int = 100
    """Most streams we open on one connection, whatever the server allows."""
    close_timeout: float = 5.0
    """Time to flush a GOAWAY and close TLS when the connection is retired."""
    write_coalesce_delay: float = 0.0
    """Seconds the writer waits for more frames before a small write (0: one scheduling
    round only). A millisecond or two batches paced audio of many calls per syscall."""


class GracefulH2Connection(h2.connection.H2Connection):
    """h2 connection that keeps streams alive after a received GOAWAY.

    Stock h2 moves its state machine to CLOSED and drops queued output on GOAWAY, refusing
    every later frame; RFC 9113 §6.8 lets streams up to ``last_stream_id`` complete. We
    only report the event; :class:`Connection` stops opening streams itself.
    """

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> tuple[list[Frame], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
