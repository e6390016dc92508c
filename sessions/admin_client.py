"""A minimal HTTP/1.1 GET client (h11) for the parent to probe and scrape its workers.

Only ever pointed at a worker's admin endpoint on 127.0.0.1, which this code base serves
itself (:mod:`sessions.admin`), so it handles exactly that: one GET per connection, a
``Content-Length`` body, a size cap and a deadline.
"""

from __future__ import annotations

import h11
import trio

MAX_RESPONSE_BYTES = 16 * 1024 * 1024


async def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """``GET path`` from ``host:port``; returns ``(status, body)``.

    Callers bound it with a deadline (``trio.fail_after``). Raises :class:`OSError` when the
    connection fails or breaks (a worker that exits mid-probe resets it) and
    :class:`ValueError` on a malformed or oversized answer, so a caller needs only those two.
    """
    try:
        return await _get(host, port, path)
    except trio.BrokenResourceError as exc:
        # trio reports ECONNRESET on a stream as BrokenResourceError, not OSError; left
        # unconverted it escaped the parent's probe and took the whole process down.
        raise ConnectionResetError(f"{host}:{port}: {exc}") from exc
    except h11.ProtocolError as exc:
        raise ValueError(f"{host}:{port}: malformed answer: {exc}") from exc


async def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        headers = [("host", f"{host}:{port}"), ("connection", "close")]
        data = conn.send(h11.Request(method="GET", target=path, headers=headers))
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)
        status = 0
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(64 * 1024)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_RESPONSE_BYTES:
                    raise h11.RemoteProtocolError("response too large")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, bytes(body)
