"""An unreachable, slow or untrusted Bedrock endpoint fails the call within a deadline.

Each case ends the call with a specific close code well inside the test's guard, and the
daemon then shuts down promptly: nothing hangs on a dead endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from actors.close_codes import CloseCode
from devkit.emulator import open_emulator
from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallScript, run_simulated_call
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings, emulator_config

SCRIPT = CallScript(length=6.0, utterance_seconds=(0.5, 0.5))


@asynccontextmanager
async def silent_tls_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word (no TLS handshake)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    held: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, hold, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def closed_port() -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    return port


async def call_with_endpoint(
    emulator: Emulator, s3: LocalS3, url: str, *, ca_file: str | None
) -> int | None:
    settings = daemon_settings(sonic={"connect_timeout": 1.0, "first_response_timeout": 1.0})
    overrides = attrs.evolve(
        daemon_overrides(emulator, s3), sonic_endpoint_url=url, sonic_ca_file=ca_file
    )
    with trio.fail_after(20):  # the guard: a hang fails the test instead of blocking CI
        async with open_daemon(settings, overrides) as daemon:
            report = await run_simulated_call(daemon.url, assistant="esther", script=SCRIPT)
    return report.close_code


async def test_unreachable_endpoint(emulator: Emulator, local_s3: LocalS3) -> None:
    url = f"https://127.0.0.1:{await closed_port()}"
    code = await call_with_endpoint(emulator, local_s3, url, ca_file=emulator.ca_file)
    assert code == CloseCode.SONIC_FAILED


async def test_endpoint_that_never_answers_tls(emulator: Emulator, local_s3: LocalS3) -> None:
    async with silent_tls_port() as port:
        url = f"https://127.0.0.1:{port}"
        code = await call_with_endpoint(emulator, local_s3, url, ca_file=emulator.ca_file)
    assert code == CloseCode.SONIC_TIMEOUT


async def test_untrusted_endpoint_certificate(emulator: Emulator, local_s3: LocalS3) -> None:
    # The emulator's certificate, but without trusting its CA: verification must fail.
    code = await call_with_endpoint(emulator, local_s3, emulator.url, ca_file=None)
    assert code == CloseCode.SONIC_FAILED


async def test_throttled_at_open_is_told_as_throttling(local_s3: LocalS3) -> None:
    # Set-up events go out before the HTTP answer (as the official SDK sends them); a 429
    # must still end the call as throttling (4201), not as a broken stream.
    config = attrs.evolve(emulator_config(), throttle_open_every=1)
    with trio.fail_after(20):
        async with (
            open_emulator(config) as emulator,
            open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as daemon,
        ):
            report = await run_simulated_call(daemon.url, assistant="esther", script=SCRIPT)
            errors = daemon.metrics.registry.get_sample_value(
                "novavoice_sonic_errors_total", {"type": "SonicHTTPError"}
            )
    assert report.close_code == CloseCode.SONIC_THROTTLED
    assert errors == 1
