"""``novavoice serve`` as a real process: the listening line, SIGTERM drain, second signal.

The daemon runs as a subprocess configured only through the environment (the standard
``AWS_ENDPOINT_URL_*`` and ``AWS_CA_BUNDLE`` variables point it at the emulator and moto),
exactly as an operator would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from tests.daemon.fakes import TwilioPeer
from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY
from tests.e2e.test_admission import http_get


class ServeProcess:
    """A running ``novavoice serve`` and the JSON lines it logged."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        """Lines that were not JSON (a traceback printed by Python itself is a bug)."""
        self._buffer = b""
        self._new_line = trio.Event()

    async def read_logs(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self._buffer += chunk
            *complete, self._buffer = self._buffer.split(b"\n")
            for raw in complete:
                if raw.strip():
                    try:
                        self.lines.append(json.loads(raw))
                    except ValueError:
                        self.raw.append(raw.decode(errors="replace"))
            self._new_line.set()
            self._new_line = trio.Event()

    async def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first line logged with ``event`` and the given field values."""
        return await self.wait_until(
            lambda line: (
                line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            )
        )

    async def wait_until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line logged that satisfies ``predicate``."""
        while True:
            for line in self.lines:
                if predicate(line):
                    return line
            await self._new_line.wait()


async def close_code(ws: WebSocketConnection) -> int | None:
    """Read until the daemon closes the socket; its close code."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as closed:
        return closed.reason.code if closed.reason is not None else None


@asynccontextmanager
async def serve_process(
    emulator: Emulator, s3: LocalS3, *args: str, **env: str
) -> AsyncIterator[ServeProcess]:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url,
        "AWS_CA_BUNDLE": emulator.ca_file,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "NOVAVOICE_LISTEN": "127.0.0.1:0",
        "NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:0",
        **env,
    }
    command = [sys.executable, "-m", "sessions.cli", "serve", *args]
    process = await trio.lowlevel.open_process(
        command, env=environment, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    served = ServeProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(served.read_logs)
            yield served
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(5, shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_sigterm_drains_running_calls_then_exits(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, DRAIN_TIMEOUT_MS="20000") as served:
            listening = await served.wait_for("listening")
            url, admin = listening["url"], listening["admin_url"]
            async with open_websocket_url(url + "/twilio/esther") as ws:
                peer = TwilioPeer(ws)
                await peer.start()
                for _ in range(10):
                    await peer.media(b"\xff" * 160)
                served.process.send_signal(signal.SIGTERM)
                await served.wait_for("draining")
                status, body = await http_get(admin + "/readyz")
                assert (status, body) == (503, b"not ready: draining\n")
                # No new calls: the listener stays open and refuses the upgrade with 503.
                try:
                    async with open_websocket_url(url + "/twilio/esther"):
                        raise AssertionError("a new call was accepted while draining")
                except ConnectionRejected as refused:
                    assert refused.status_code == 503
                # The running call goes on: more audio is accepted, then the caller hangs up.
                for _ in range(10):
                    await peer.media(b"\xff" * 160)
                await peer.stop()
                assert await close_code(ws) == 1000
            assert await served.process.wait() == 0
            call_end = await served.wait_for("call_ended")
            assert call_end["reason"] == "hangup"
            assert call_end["frames_in"] == 20


async def test_drain_deadline_ends_calls_politely_with_1001(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, DRAIN_TIMEOUT_MS="500") as served:
            listening = await served.wait_for("listening")
            async with open_websocket_url(listening["url"] + "/twilio/esther") as ws:
                peer = TwilioPeer(ws)
                await peer.start()
                await peer.media(b"\xff" * 160)
                served.process.send_signal(signal.SIGTERM)
                assert await close_code(ws) == 1001
            assert await served.process.wait() == 0
            call_end = await served.wait_for("call_ended")
            assert call_end["reason"] == "shutdown"


async def test_second_signal_ends_everything_at_once(emulator: Emulator, local_s3: LocalS3) -> None:
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, DRAIN_TIMEOUT_MS="600000") as served:
            listening = await served.wait_for("listening")
            async with open_websocket_url(listening["url"] + "/twilio/esther") as ws:
                peer = TwilioPeer(ws)
                await peer.start()
                served.process.send_signal(signal.SIGTERM)
                await served.wait_for("draining")
                served.process.send_signal(signal.SIGINT)
                assert await close_code(ws) == 1001
            assert await served.process.wait() == 0


async def test_sighup_reopens_the_call_log_for_logrotate(
    emulator: Emulator, local_s3: LocalS3, tmp_path: Path
) -> None:
    # Finding 13 of issue 9: the call log could not be reopened, so logrotate's move left
    # the daemon writing into the rotated file. SIGHUP now reopens the path, mode 0600.
    path = tmp_path / "calls.jsonl"
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, CALL_LOG_PATH=str(path)) as served:
            await served.wait_for("listening")
            path.rename(tmp_path / "calls.jsonl.1")
            served.process.send_signal(signal.SIGHUP)
            await served.wait_for("call_log_reopen")
            served.process.send_signal(signal.SIGTERM)
            assert await served.process.wait() == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert not served.raw
