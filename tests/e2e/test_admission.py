"""Refusals before the upgrade, over real sockets: 404, 401/403, 503, readiness, --insecure."""
# Asterisk facts these tests rely on (asterisk/asterisk):
# - res/res_websocket_client.c websocket_client_handle_response_code: only 401 is
#   "unauthorized"; any other non-101 status is logged as an invalid response.
# - channels/chan_websocket.c webchan_call: a failed ast_websocket_client_connect returns -1
#   with AST_CAUSE_NO_ROUTE_DESTINATION, so Dial() fails unanswered and the dialplan goes on.

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

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
    settings = daemon_settings(
        admission={"twilio_auth_tokens": (token,), "twilio_public_url": public}
    )
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
            assert await rejected_status(url, wrong) == 401  # never 403: Asterisk knows 401 only
            right = [(b"Authorization", b"Basic YXN0ZXJpc2s6czNjcmV0LXBhc3M=")]
            async with open_websocket_url(url, extra_headers=right) as ws:
                assert not ws.closed
            unauthorized = daemon.metrics.registry.get_sample_value(
                "novavoice_admission_refusals_total", {"reason": "unauthorized"}
            )
            assert unauthorized == 2


async def test_basic_header_against_bearer_only_config_is_a_clear_401(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    settings = daemon_settings(admission={"asterisk_bearer_token": "a-long-bearer-token"})
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            url = daemon.url + "/asterisk/esther"
            basic = [(b"Authorization", b"Basic YXN0ZXJpc2s6czNjcmV0LXBhc3M=")]
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(url, extra_headers=basic):
                    pass  # pragma: no cover
            assert info.value.status_code == 401
            assert b"ASTERISK_BASIC_AUTH" in (info.value.body or b"")
            bearer = [(b"Authorization", b"Bearer a-long-bearer-token")]  # a proxy's
            async with open_websocket_url(url, extra_headers=bearer) as ws:
                assert not ws.closed


@pytest.mark.parametrize("carrier", ["asterisk", "twilio"])
async def test_unknown_assistant_is_refused_before_the_upgrade(
    carrier: str, emulator: Emulator, local_s3: LocalS3
) -> None:
    """404 before answering: an invalid name, or a prompt the store says is missing."""
    settings = daemon_settings(admission={"prompt_check": 5.0})  # robust on a loaded machine
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            assert await rejected_status(f"{daemon.url}/{carrier}/Bad..Name") == 404
            assert await rejected_status(f"{daemon.url}/{carrier}/nobody-here") == 404
            # Known now (negative cache): refused again without waiting for S3.
            assert await rejected_status(f"{daemon.url}/{carrier}/nobody-here") == 404
            async with open_websocket_url(f"{daemon.url}/{carrier}/esther") as ws:
                assert not ws.closed
            refused = daemon.metrics.registry.get_sample_value(
                "novavoice_admission_refusals_total", {"reason": "unknown_assistant"}
            )
            assert refused == 3
            assert daemon.supervisor.active_calls <= 1


async def test_slow_prompt_lookup_accepts_and_fails_later(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    """A lookup that does not finish within ADMISSION_PROMPT_CHECK_MS (0 here: negative
    cache only) is accepted, and the call fails after the start as before (4104), once the
    caller has heard the fallback clip (no dead air: sessions/fallback.py)."""
    settings = daemon_settings(admission={"prompt_check": 0.0})
    with trio.fail_after(20):
        async with (
            open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
            open_websocket_url(daemon.url + "/asterisk/nobody-here") as ws,
        ):
            await ws.send_message(
                "MEDIA_START connection_id:c1 channel:WebSocket/x-1 channel_id:1.1 "
                "format:ulaw optimal_frame_size:160 ptime:20"
            )
            audio = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    message = await ws.get_message()
                    audio += len(message) if isinstance(message, bytes) else 0
            assert closed.value.reason is not None
            assert closed.value.reason.code == 4104
            assert audio >= 8000 * 3  # the apology (about 3.8 s of 8 kHz μ-law) came first


def test_public_listener_without_authentication_is_refused() -> None:
    settings = daemon_settings(listen={"address": ("0.0.0.0", 0)})
    with pytest.raises(ConfigError, match="NOVAVOICE_LISTEN"):
        check_listen_security("0.0.0.0", settings, insecure=False)
    check_listen_security("0.0.0.0", settings, insecure=True)  # explicitly allowed
    check_listen_security("127.0.0.1", settings, insecure=False)  # loopback is fine
    # Every enabled carrier needs its own credentials (finding 1 of issue 9): a bearer
    # token for Asterisk alone no longer passes while Twilio is enabled.
    secured = daemon_settings(admission={"asterisk_bearer_token": "a-long-bearer-token"})
    with pytest.raises(ConfigError, match="carrier twilio"):
        check_listen_security("0.0.0.0", secured, insecure=False)
    asterisk_only = daemon_settings(
        admission={"asterisk_bearer_token": "a-long-bearer-token", "carriers": ("asterisk",)}
    )
    check_listen_security("0.0.0.0", asterisk_only, insecure=False)


TOKEN = "twilio-auth-token-for-tests"
SECOND_TOKEN = "twilio-secondary-token-for-tests"
PUBLIC = "wss://voice.example.com"
BASIC_OK = [(b"Authorization", b"Basic YXN0ZXJpc2s6czNjcmV0LXBhc3M=")]  # asterisk:s3cret-pass


def signed(path: str, token: str = TOKEN) -> list[tuple[bytes, bytes]]:
    return [(b"X-Twilio-Signature", compute_signature(token, PUBLIC + path).encode())]


async def test_twilio_credentials_alone_leave_no_carrier_open(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    """Finding 1 of issue 9: with only TWILIO_AUTH_TOKEN set, /asterisk/esther with no
    Authorization header upgraded (101) and loaded the prompt."""
    settings = daemon_settings(
        admission={"twilio_auth_tokens": (TOKEN,), "twilio_public_url": PUBLIC}
    )
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            assert await rejected_status(daemon.url + "/asterisk/esther") == 401
            # A valid Twilio signature, even one made for the Asterisk path, opens nothing.
            for path in ("/asterisk/esther", "/twilio/esther"):
                assert await rejected_status(daemon.url + "/asterisk/esther", signed(path)) == 401
            async with open_websocket_url(
                daemon.url + "/twilio/esther", extra_headers=signed("/twilio/esther")
            ) as ws:
                assert not ws.closed
            assert daemon.supervisor.active_calls <= 1


async def test_each_route_accepts_only_its_own_carriers_credentials(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    settings = daemon_settings(
        admission={
            "twilio_auth_tokens": (TOKEN,),
            "twilio_public_url": PUBLIC,
            "asterisk_basic_auth": ("asterisk", "s3cret-pass"),
        }
    )
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            assert await rejected_status(daemon.url + "/twilio/esther", BASIC_OK) == 401
            sig = signed("/asterisk/esther")
            assert await rejected_status(daemon.url + "/asterisk/esther", sig) == 401
            async with open_websocket_url(daemon.url + "/asterisk/esther", extra_headers=BASIC_OK):
                pass
            async with open_websocket_url(
                daemon.url + "/twilio/esther", extra_headers=signed("/twilio/esther")
            ):
                pass


async def test_a_disabled_carrier_answers_404_before_the_upgrade(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    settings = daemon_settings(admission={"carriers": ("asterisk",)})
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            for path in ("/twilio/esther", "/twilio", "/twilio/nobody"):
                with pytest.raises(ConnectionRejected) as info:
                    async with open_websocket_url(daemon.url + path):
                        pass  # pragma: no cover
                assert info.value.status_code == 404
                assert b"/asterisk/<assistant>" in (info.value.body or b"")
                assert b"/twilio" not in (info.value.body or b"")
            async with open_websocket_url(daemon.url + "/asterisk/esther") as ws:
                assert not ws.closed
            refused = daemon.metrics.registry.get_sample_value(
                "novavoice_admission_refusals_total", {"reason": "not_found"}
            )
            assert refused == 3


async def test_a_query_string_on_a_signed_twilio_route_is_refused(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    """Finding 2 of issue 9: a signature for /twilio/esther opened /twilio/?e=sther."""
    settings = daemon_settings(
        admission={"twilio_auth_tokens": (TOKEN,), "twilio_public_url": PUBLIC}
    )
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            sig = signed("/twilio/esther")
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket_url(daemon.url + "/twilio/?e=sther", extra_headers=sig):
                    pass  # pragma: no cover
            assert info.value.status_code == 403
            assert b"query string" in (info.value.body or b"")
            as_written = signed("/twilio/esther?x=1")
            assert await rejected_status(daemon.url + "/twilio/esther?x=1", as_written) == 403
            assert daemon.supervisor.active_calls == 0


async def test_signed_call_takes_its_assistant_from_the_signed_path(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    """Finding 2 of issue 9, second half: the assistant came from unsigned customParameters."""
    settings = daemon_settings(
        admission={"twilio_auth_tokens": (TOKEN,), "twilio_public_url": PUBLIC}
    )
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ00000000000000000000000000000001",
        "start": {
            "streamSid": "MZ00000000000000000000000000000001",
            "callSid": "CA00000000000000000000000000000001",
            "accountSid": "AC00000000000000000000000000000001",
            "tracks": ["inbound"],
            "customParameters": {"assistant": "support-agent"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    with trio.fail_after(20):
        async with (
            open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
            open_websocket_url(
                daemon.url + "/twilio/esther", extra_headers=signed("/twilio/esther")
            ) as ws,
        ):
            await ws.send_message(json.dumps(start))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 4403


async def test_either_token_of_a_rotation_is_accepted(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    """Finding 3 of issue 9: only one token was accepted, so a rotation was an outage."""
    settings = daemon_settings(
        admission={"twilio_auth_tokens": (TOKEN, SECOND_TOKEN), "twilio_public_url": PUBLIC}
    )
    with trio.fail_after(20):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            url = daemon.url + "/twilio/esther"
            for token in (TOKEN, SECOND_TOKEN):
                async with open_websocket_url(url, extra_headers=signed("/twilio/esther", token)):
                    pass
            stranger = signed("/twilio/esther", "a-token-nobody-configured")
            assert await rejected_status(url, stranger) == 403


@pytest.mark.parametrize(
    ("admission", "variable"),
    [
        ({"twilio_auth_tokens": (TOKEN,)}, "TWILIO_PUBLIC_URL"),
        ({"twilio_public_url": PUBLIC}, "TWILIO_AUTH_TOKEN"),
        (
            {"twilio_auth_tokens": (TOKEN,), "twilio_public_url": "https://voice.example.com"},
            "TWILIO_PUBLIC_URL must be a wss:// URL",
        ),
    ],
)
async def test_start_up_refuses_a_half_configured_twilio(
    admission: dict[str, object], variable: str, emulator: Emulator, local_s3: LocalS3
) -> None:
    """Finding 4 of issue 9: these started, and then every real call got 403."""
    settings = daemon_settings(admission=admission)
    with trio.fail_after(20), pytest.raises(ConfigError, match=variable):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3), insecure=True):
            pass  # pragma: no cover - start-up must fail


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
