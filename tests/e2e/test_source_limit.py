"""The per-source cap on connections without a started call, through the real listener.

Every connection here comes from 127.0.0.1, the one source. A connection counts from its
upgrade request until the carrier's start (or its end); the one over the cap is refused
with HTTP 429 before the upgrade.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import TwilioCaller
from sessions.serve import Daemon, open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings


async def refused_status(url: str) -> int:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url):
            pass  # pragma: no cover - the upgrade must be refused
    return int(info.value.status_code)


def refusals(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "novavoice_admission_refusals_total", {"reason": "source_limit"}
    )
    return value or 0.0


async def test_one_source_may_hold_only_so_many_unstarted_connections(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    settings = daemon_settings(admission={"max_unstarted_per_source": 2})
    with trio.fail_after(60):
        async with (
            open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
            contextlib.AsyncExitStack() as stack,
        ):
            url = daemon.url + "/twilio/esther"

            async def connect() -> WebSocketConnection:
                return await stack.enter_async_context(
                    open_websocket_url(url, disconnect_timeout=2.0)
                )

            first, second = await connect(), await connect()  # upgraded, never started
            assert await refused_status(url) == 429
            assert refusals(daemon) == 1
            assert daemon.supervisor.unstarted.count("127.0.0.1") == 2
            # The first starts its call: it no longer counts against its source.
            caller = TwilioCaller(stream_sid="MZ20", call_sid="CA20")
            await first.send_message(caller.connected())
            await first.send_message(caller.start())
            while True:  # nothing to wait on from here: poll until the start was read
                if daemon.supervisor.unstarted.count("127.0.0.1") == 1:
                    break
                await trio.sleep(0.01)
            third = await connect()
            assert await refused_status(url) == 429
            # The second leaves without starting: its place is free again.
            await second.aclose()
            await daemon.supervisor.wait_active_calls(lambda n: n == 2)
            assert daemon.supervisor.unstarted.count("127.0.0.1") == 1
            await connect()
            assert refusals(daemon) == 2
            assert not third.closed  # the admitted ones were not disturbed
            await first.send_message(caller.stop())
