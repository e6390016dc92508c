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
def open_relay(out: Path) -> Iterator[StatsProcess]:
    """Start a sink and a relay forwarding to it; yields the relay (logs in ``out``)."""
    with ExitStack() as stack:
        sink = _start("sink", log=out / "relay_floor.sink.log")
        stack.callback(sink.close)
        relay = _start("relay", sink.url, log=out / "relay_floor.relay.log")
        stack.callback(relay.close)
        yield relay


def main(argv: list[str]) -> int:
    """``sink`` or ``relay SINK_URL``: run that server until stdin closes."""
    counters = Counters()
    if argv == ["sink"]:
        trio.run(_serve, functools.partial(_sink_handler, counters), counters)
    elif len(argv) == 2 and argv[0] == "relay":
        trio.run(_serve, functools.partial(_relay_handler, argv[1], counters), counters)
    else:
        print("usage: relay_floor.py sink | relay SINK_URL", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
