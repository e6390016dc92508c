"""Endpoint resolution (AWS's standard variables), credentials from botocore's chain with
expiry, and TLS/ALPN checks on a real loopback socket."""

from __future__ import annotations

import ssl
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.credentials
import pytest
import trio
import trustme

from actors.errors import ConfigError, SigningError, SonicConnectionError
from actors.sonic.connection import open_tls_stream
from actors.sonic.credentials import BotocoreCredentialsProvider, credentials_from_botocore
from actors.sonic.endpoint import make_ssl_context, resolve_endpoint


def test_regional_endpoint_by_default() -> None:
    endpoint = resolve_endpoint(region="eu-west-1", environ={})
    assert (endpoint.host, endpoint.port, endpoint.authority) == (
        "bedrock-runtime.eu-west-1.amazonaws.com",
        443,
        "bedrock-runtime.eu-west-1.amazonaws.com",
    )
    assert endpoint.ca_file is None


def test_service_variable_wins_over_global_and_ca_bundle_is_read() -> None:
    env = {
        "AWS_ENDPOINT_URL": "https://global.example:1111",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "https://127.0.0.1:8443/",
        "AWS_CA_BUNDLE": "/tmp/ca.pem",
    }
    endpoint = resolve_endpoint(region="us-east-1", environ=env)
    assert (endpoint.host, endpoint.port, endpoint.authority) == (
        "127.0.0.1",
        8443,
        "127.0.0.1:8443",
    )
    assert endpoint.ca_file == "/tmp/ca.pem"
    assert endpoint.request_path("/model/x") == "/model/x"
    env.pop("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
    assert resolve_endpoint(region="us-east-1", environ=env).authority == "global.example:1111"
    # an explicit argument beats the environment
    assert (
        resolve_endpoint(region="us-east-1", endpoint_url="https://vpce.example", environ=env).host
        == "vpce.example"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "https://", "https://h/?x=1", "https://u:p@h", "https://h:x"]
)
def test_bad_endpoint_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        resolve_endpoint(region="us-east-1", endpoint_url=url, environ={})


class _FakeSession:
    def __init__(self, source: Any) -> None:
        self.source = source
        self.threads: list[str] = []

    def get_credentials(self) -> Any:
        self.threads.append(threading.current_thread().name)
        return self.source


async def test_botocore_provider_exposes_expiry_and_refreshes_before_it() -> None:
    clock = [datetime(2030, 1, 1, tzinfo=UTC)]
    expiries = iter([clock[0] + timedelta(minutes=60), clock[0] + timedelta(minutes=120)])

    def refresh() -> dict[str, str]:
        return {
            "access_key": "ASIAX",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": next(expiries).isoformat(),
        }

    # botocore's own default windows: advisory refresh at 15 min, mandatory at 10 min
    source = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="test"
    )
    # botocore compares against its own clock; pin it to ours
    source._time_fetcher = lambda: clock[0]  # type: ignore[attr-defined]
    session = _FakeSession(source)
    provider = BotocoreCredentialsProvider(
        session_factory=lambda: session, refresh_margin=timedelta(minutes=10), now=lambda: clock[0]
    )
    first = await provider.get_credentials()
    assert first.session_token == "token"
    assert first.expiry == datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    assert session.threads and session.threads[0] != threading.main_thread().name
    assert await provider.get_credentials() is first  # cached
    assert provider.resolutions == 1
    clock[0] += timedelta(minutes=51)  # inside the 10-minute margin: resolve again
    second = await provider.get_credentials()
    assert provider.resolutions == 2
    assert second.expiry == datetime(2030, 1, 1, 2, 0, tzinfo=UTC)


async def test_botocore_provider_without_credentials_is_a_signing_error() -> None:
    provider = BotocoreCredentialsProvider(session_factory=lambda: _FakeSession(None))
    with pytest.raises(SigningError, match="no AWS credentials"):
        await provider.get_credentials()


async def test_keys_that_cannot_refresh_are_not_re_resolved_per_stream() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    source = botocore.credentials.Credentials("ASIAX", "secret", "token")
    source._expiry_time = now + timedelta(minutes=5)  # type: ignore[attr-defined]
    session = _FakeSession(source)
    provider = BotocoreCredentialsProvider(
        session_factory=lambda: session, refresh_margin=timedelta(minutes=10), now=lambda: now
    )
    first = await provider.get_credentials()
    assert first.expiry == now + timedelta(minutes=5)  # inside the margin, still usable
    for _ in range(5):
        assert await provider.get_credentials() is first
    assert provider.resolutions == 1  # asked again only after retry_interval


def test_long_term_keys_have_no_expiry() -> None:
    creds = credentials_from_botocore(botocore.credentials.Credentials("AKIA", "secret"))
    assert (creds.access_key_id, creds.session_token, creds.expiry) == ("AKIA", None, None)


async def _serve_tls(ca: trustme.CA, alpn: list[str], task_status: Any) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(alpn)

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            await stream.receive_some()
        except trio.BrokenResourceError:
            pass

    listeners = await trio.open_ssl_over_tcp_listeners(0, server_ctx, host="127.0.0.1")
    await trio.serve_listeners(handle, listeners, task_status=task_status)


@pytest.mark.parametrize("alpn", [["h2"], ["http/1.1"]])
async def test_tls_opener_insists_on_h2(tmp_path: Any, alpn: list[str]) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(_serve_tls, ca, alpn)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        endpoint = resolve_endpoint(
            region="us-east-1", endpoint_url=f"https://127.0.0.1:{port}", ca_file=str(ca_file)
        )
        with trio.fail_after(10):
            if alpn == ["h2"]:
                stream = await open_tls_stream(endpoint, make_ssl_context(endpoint))
                assert stream.selected_alpn_protocol() == "h2"  # type: ignore[attr-defined]
                await stream.aclose()
            else:
                with pytest.raises(SonicConnectionError, match="HTTP/2"):
                    await open_tls_stream(endpoint, make_ssl_context(endpoint))
        nursery.cancel_scope.cancel()


async def test_tls_opener_rejects_an_untrusted_certificate() -> None:
    ca = trustme.CA()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(_serve_tls, ca, ["h2"])
        port = listeners[0].transport_listener.socket.getsockname()[1]
        endpoint = resolve_endpoint(
            region="us-east-1", endpoint_url=f"https://127.0.0.1:{port}", environ={}
        )
        with trio.fail_after(10), pytest.raises(SonicConnectionError, match="TLS handshake"):
            await open_tls_stream(endpoint, make_ssl_context(endpoint))
        nursery.cancel_scope.cancel()
