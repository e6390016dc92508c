"""The floor: a bare trio-websocket relay that forwards carrier frames, undecoded, to a sink.

The relay accepts carrier WebSockets exactly where the daemon does (any path), opens one
WebSocket per call to a sink process and forwards every message verbatim (no JSON, no
base64, no audio, no Sonic): the least any WebSocket bridge in Python on trio must spend per
frame. The sink drains what it receives. ``bench/capacity.py`` runs the same load test
against it in the same run and measures it the same way (its CPU from ``/proc``, its frames
and active calls from its own counters), to report NovaVoice's CPU per frame as a ratio.

Both are processes of their own: ``python bench/relay_floor.py sink`` and ``python
bench/relay_floor.py relay SINK_URL`` print one JSON line ``{"event": "listening", "url":
...}``; then each line on stdin is answered with ``{"active": N, "frames": N}`` on stdout.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

ROOT = Path(__file__).resolve().parents[1]


@attrs.define
class Counters:
    """Calls in progress and messages handled by this process."""

    active: int = 0
    frames: int = 0


async def _answer_stats(counters: Counters) -> None:
    """Answer each stdin line with the counters (a worker thread reads stdin)."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            return
        print(json.dumps(attrs.asdict(counters)), flush=True)


async def _sink_handler(counters: Counters, request: WebSocketRequest) -> None:
    ws = await request.accept()
    counters.active += 1
    try:
        while True:
            await ws.get_message()
            counters.frames += 1
    except ConnectionClosed:
        pass
    finally:
        counters.active -= 1


async def _forward(
    source: WebSocketConnection,
    dest: WebSocketConnection,
    counters: Counters,
    done: trio.CancelScope,
) -> None:
    try:
        while True:
            message = await source.get_message()
            await dest.send_message(message)
            counters.frames += 1
    except ConnectionClosed:
        done.cancel()


async def _relay_handler(sink_url: str, counters: Counters, request: WebSocketRequest) -> None:
    carrier = await request.accept()
    counters.active += 1
    try:
        async with open_websocket_url(sink_url) as sink, trio.open_nursery() as nursery:
            nursery.start_soon(_forward, carrier, sink, counters, nursery.cancel_scope)
            nursery.start_soon(_forward, sink, carrier, counters, nursery.cancel_scope)
    except ConnectionClosed:
        pass
    finally:
        counters.active -= 1


async def _serve(handler: Any, counters: Counters) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
        )
        print(
            json.dumps({"event": "listening", "url": f"ws://127.0.0.1:{server.port}"}), flush=True
        )
        await _answer_stats(counters)
        nursery.cancel_scope.cancel()


class StatsProcess:
    """A relay or sink process, its URL, and its counters on demand."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline() or "{}")
        if "url" not in line:
            raise RuntimeError(f"{proc.args!r} did not start")
        self.url: str = line["url"]
        self.pid = proc.pid

    def stats(self) -> Counters:
        """Calls in progress and messages forwarded so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return Counters(**json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        """Stop the process (EOF on stdin, then SIGKILL if it lingers)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start(*args: str, log: Path) -> StatsProcess:
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
    return StatsProcess(proc)


@contextmanager
def open_sink(out: Path, impl: str = "trio-websocket") -> Iterator[StatsProcess]:
    """Start a sink alone on the stack ``impl``: pointed at by the load generator, it is the
    receive-only floor (every caller frame read and parsed, nothing sent on)."""
    sink = _start("--impl", impl, "sink", log=out / f"relay_floor.{impl}.sink-alone.log")
    try:
        yield sink
    finally:
        sink.close()


@contextmanager
def open_relay(out: Path, impl: str = "trio-websocket") -> Iterator[StatsProcess]:
    """Start a sink and a relay forwarding to it, both on the WebSocket stack ``impl`` (one of
    :data:`IMPLEMENTATIONS`); yields the relay (logs in ``out``)."""
    with ExitStack() as stack:
        sink = _start("--impl", impl, "sink", log=out / f"relay_floor.{impl}.sink.log")
        stack.callback(sink.close)
        relay = _start("--impl", impl, "relay", sink.url, log=out / f"relay_floor.{impl}.relay.log")
        stack.callback(relay.close)
        yield relay


# --- the same relay on the websockets library's trio API (websockets >= 15) -----------------
# Same process layout, same forwarding, same counters; only the WebSocket stack differs:
# websockets' own frame parser with its C speedups, no per-connection reader task feeding a
# memory channel. It answers one question for issue 13: how much of the floor is the stack.


async def _ws_sink_handler(counters: Counters, ws: Any) -> None:
    from websockets.exceptions import ConnectionClosed as WsClosed

    counters.active += 1
    try:
        while True:
            await ws.recv()
            counters.frames += 1
    except WsClosed:
        pass
    finally:
        counters.active -= 1


async def _ws_forward(source: Any, dest: Any, counters: Counters, done: trio.CancelScope) -> None:
    from websockets.exceptions import ConnectionClosed as WsClosed

    try:
        while True:
            message = await source.recv()
            await dest.send(message)
            counters.frames += 1
    except WsClosed:
        done.cancel()


async def _ws_relay_handler(sink_url: str, counters: Counters, carrier: Any) -> None:
    from websockets.exceptions import ConnectionClosed as WsClosed
    from websockets.trio.client import connect

    counters.active += 1
    try:
        async with (
            connect(sink_url, compression=None, proxy=None) as sink,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_ws_forward, carrier, sink, counters, nursery.cancel_scope)
            nursery.start_soon(_ws_forward, sink, carrier, counters, nursery.cancel_scope)
    except WsClosed:
        pass
    finally:
        counters.active -= 1


async def _ws_serve(handler: Any, counters: Counters) -> None:
    from websockets.trio.server import serve

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(serve, handler, 0, host="127.0.0.1", compression=None)
        )
        port = server.listeners[0].socket.getsockname()[1]
        print(json.dumps({"event": "listening", "url": f"ws://127.0.0.1:{port}"}), flush=True)
        await _answer_stats(counters)
        nursery.cancel_scope.cancel()


IMPLEMENTATIONS = ("trio-websocket", "websockets")


def main(argv: list[str]) -> int:
    """``[--impl websockets] sink`` or ``[--impl websockets] relay SINK_URL``: run that
    server until stdin closes (``--impl trio-websocket``, the daemon's stack, by default)."""
    counters = Counters()
    impl = "trio-websocket"
    if argv[:1] == ["--impl"] and len(argv) >= 2 and argv[1] in IMPLEMENTATIONS:
        impl, argv = argv[1], argv[2:]
    serve, sink, relay = (
        (_serve, _sink_handler, _relay_handler)
        if impl == "trio-websocket"
        else (_ws_serve, _ws_sink_handler, _ws_relay_handler)
    )
    if argv == ["sink"]:
        trio.run(serve, functools.partial(sink, counters), counters)
    elif len(argv) == 2 and argv[0] == "relay":
        trio.run(serve, functools.partial(relay, argv[1], counters), counters)
    else:
        print("usage: relay_floor.py [--impl websockets] sink | relay SINK_URL", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
