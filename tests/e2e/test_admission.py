"""Refusals before the upgrade, over real sockets: 404, 401/403, 503, readiness, --insecure."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from actors.errors import ConfigError
from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from sessions.dialects.twilio_signature import compute_signature
from sessions.serve import Daemon, check_listen_security, open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings


async def http_get(url: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET (the admin endpoint), returning status and body."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def rejected_status(url: str, headers: list[tuple[bytes, bytes]] | None = None) -> int:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url, extra_headers=headers):
            pass  # pragma: no cover - the upgrade must be refused
    return int(info.value.status_code)


async def test_unknown_path_is_refused_with_404(daemon: Daemon) -> None:
    with trio.fail_after(10):
        assert await rejected_status(daemon.url + "/sip/esther") == 404
    refused = daemon.metrics.registry.get_sample_value(
        "novavoice_admission_refusals_total", {"reason": "not_found"}
    )
    assert refused == 1


async def test_capacity_refuses_with_503_and_readiness_follows(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    settings = daemon_settings(admission={"max_calls": 1})
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            assert (await http_get(daemon.admin_url + "/readyz"))[0] == 200
            async with open_websocket_url(daemon.url + "/twilio/esther"):
                # The first call is admitted (it waits for Twilio's start); the second is not.
                await daemon.supervisor.wait_active_calls(lambda n: n >= 1)
                assert await rejected_status(daemon.url + "/twilio/esther") == 503
                status, body = await http_get(daemon.admin_url + "/readyz")
                assert status == 503 and b"capacity" in body
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
            assert (await http_get(daemon.admin_url + "/readyz"))[0] == 200
            refused = daemon.metrics.registry.get_sample_value(
                "novavoice_admission_refusals_total", {"reason": "capacity"}
            )
            assert refused == 1


async def test_a_draining_daemon_answers_503_until_it_exits(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    # Finding 9 of issue 9: the listener closed at once on SIGTERM, so a call arriving while
    # the load balancer deregistered got a TCP refusal instead of a 503 its carrier can act on.
    with trio.fail_after(20):
        async with (
            open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as daemon,
            trio.open_nursery() as nursery,
        ):
            async with open_websocket_url(daemon.url + "/twilio/esther"):
                await daemon.supervisor.wait_active_calls(lambda n: n >= 1)
                nursery.start_soon(daemon.supervisor.drain, 60.0)
                await trio.sleep(0.2)
                assert daemon.supervisor.draining
                for _ in range(3):
                    assert await rejected_status(daemon.url + "/twilio/esther") == 503
                status, body = await http_get(daemon.admin_url + "/readyz")
                assert (status, body) == (503, b"not ready: draining\n")
            # The running call ended, so the drain completes and the listener closes.
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
        refused = daemon.metrics.registry.get_sample_value(
            "novavoice_admission_refusals_total", {"reason": "draining"}
        )
        assert refused == 3


async def test_twilio_signature_is_checked_on_the_upgrade(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    token = "twilio-auth-token-for-tests"
    public = "wss://voice.example.com"
    settings = daemon_settings(admission={"twilio_auth_token": token, "twilio_public_url": public})
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            url = daemon.url + "/twilio/esther"
            assert await rejected_status(url) == 401
            bad = [(b"X-Twilio-Signature", b"bm90IHRoZSByaWdodCBzaWduYXR1cmU=")]
            assert await rejected_status(url, bad) == 403
            signed = compute_signature(token, public + "/twilio/esther", [])
            good = [(b"X-Twilio-Signature", signed.encode())]
            async with open_websocket_url(url, extra_headers=good) as ws:
                assert not ws.closed
            forbidden = daemon.metrics.registry.get_sample_value(
                "novavoice_admission_refusals_total", {"reason": "forbidden"}
            )
            assert forbidden == 1


async def test_asterisk_requires_its_credentials(emulator: Emulator, local_s3: LocalS3) -> None:
    settings = daemon_settings(admission={"asterisk_basic_auth": ("asterisk", "s3cret-pass")})
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            url = daemon.url + "/asterisk/esther"
            assert await rejected_status(url) == 401
            wrong = [(b"Authorization", b"Basic YXN0ZXJpc2s6bm9wZQ==")]  # asterisk:nope
            assert await rejected_status(url, wrong) == 403


def test_public_listener_without_authentication_is_refused() -> None:
    settings = daemon_settings(listen={"address": ("0.0.0.0", 0)})
    with pytest.raises(ConfigError, match="NOVAVOICE_LISTEN"):
        check_listen_security("0.0.0.0", settings, insecure=False)
    check_listen_security("0.0.0.0", settings, insecure=True)  # explicitly allowed
    check_listen_security("127.0.0.1", settings, insecure=False)  # loopback is fine
    secured = daemon_settings(admission={"asterisk_bearer_token": "a-long-bearer-token"})
    check_listen_security("0.0.0.0", secured, insecure=False)


async def test_garbage_and_plain_http_do_not_disturb_the_daemon(daemon: Daemon) -> None:
    host_port = daemon.url.removeprefix("ws://")
    host, _, port = host_port.rpartition(":")
    with trio.fail_after(20):
        for payload in (
            b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n",
            b"GET /twilio/esther HTTP/1.1\r\nHost: x\r\n\r\n",  # no Upgrade header
            b"GET /twilio/esther HTTP/1.1\r\n",  # then hang up half-way
        ):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(payload)
                with trio.move_on_after(1):
                    while await stream.receive_some():
                        pass
        # The daemon is still up and serving: a real upgrade is still answered.
        assert await rejected_status(daemon.url + "/nowhere") == 404
        status, _ = await http_get(daemon.admin_url + "/healthz")
        assert status == 200
