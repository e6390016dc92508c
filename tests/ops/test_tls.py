"""TLS on the carrier listener (finding 6 of issue 9): loading, the start-up check, and
reloading the certificate with real handshakes on 127.0.0.1 (no daemon: a TLS echo server
on :class:`sessions.tls.TlsListener`; the whole daemon is in ``tests/e2e/test_tls.py``)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from actors.errors import ConfigError
from sessions.config import Settings, settings_from_mapping
from sessions.metrics import Metrics
from sessions.tls import ServerTls, TlsListener, check_tls, load_server_context, tls_problems
from tests.certs import Issued, install, presented_fingerprint, trusting, write_atomically


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "tls.crt", tmp_path / "tls.key"


def tls_settings(cert: Path | None, key: Path | None, **env: str) -> Settings:
    variables = dict(env)
    if cert is not None:
        variables["NOVAVOICE_TLS_CERT"] = str(cert)
    if key is not None:
        variables["NOVAVOICE_TLS_KEY"] = str(key)
    return settings_from_mapping(variables)


# --- start-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["cert", "key"])
def test_one_file_without_the_other_fails_naming_both(files: tuple[Path, Path], given: str) -> None:
    cert, key = files
    settings = tls_settings(cert if given == "cert" else None, key if given == "key" else None)
    [problem] = tls_problems("127.0.0.1", settings)
    assert "NOVAVOICE_TLS_CERT" in problem and "NOVAVOICE_TLS_KEY" in problem
    with pytest.raises(ConfigError, match="NOVAVOICE_TLS_CERT and NOVAVOICE_TLS_KEY together"):
        check_tls("127.0.0.1", settings)


BASIC = {"ASTERISK_BASIC_AUTH": "asterisk:secret-password"}
BEARER = {"ASTERISK_BEARER_TOKEN": "bearer-token-123"}


@pytest.mark.parametrize("credentials", [BASIC, BEARER], ids=["basic", "bearer"])
@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "voice.internal"])
def test_credentials_in_clear_beyond_loopback_are_refused(
    credentials: dict[str, str], host: str
) -> None:
    [problem] = tls_problems(host, settings_from_mapping(credentials))
    assert next(iter(credentials)) in problem
    assert "NOVAVOICE_TLS_TERMINATED_UPSTREAM=1" in problem
    assert "NOVAVOICE_TLS_CERT" in problem


def test_no_refusal_on_loopback_with_upstream_tls_with_own_tls_or_without_basic_or_bearer(
    files: tuple[Path, Path],
) -> None:
    cert, key = files
    for host in ("127.0.0.1", "::1", "localhost"):
        assert tls_problems(host, settings_from_mapping(BASIC)) == []
    upstream = {**BASIC, **BEARER, "NOVAVOICE_TLS_TERMINATED_UPSTREAM": "1"}
    assert tls_problems("0.0.0.0", settings_from_mapping(upstream)) == []
    assert tls_problems("0.0.0.0", tls_settings(cert, key, **BASIC)) == []
    # Twilio's token never crosses the network (only a signature does), and Twilio
    # connects to wss:// URLs only, so TLS is somewhere in front already.
    twilio = {"TWILIO_AUTH_TOKEN": "twilio-token", "TWILIO_PUBLIC_URL": "wss://voice.example"}
    assert tls_problems("0.0.0.0", settings_from_mapping(twilio)) == []
    assert tls_problems("0.0.0.0", settings_from_mapping({})) == []


def test_a_good_pair_loads_and_reports_the_leaf_fingerprint(files: tuple[Path, Path]) -> None:
    cert, key = files
    issued = Issued.new()
    install(issued, cert, key)
    tls = check_tls("127.0.0.1", tls_settings(cert, key))
    assert tls is not None and tls.fingerprint == issued.fingerprint
    assert check_tls("127.0.0.1", settings_from_mapping({})) is None


def encrypted_key(issued: Issued) -> bytes:
    key = load_pem_private_key(issued.key_pem, None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )


def test_a_bad_certificate_or_key_fails_start_up_clearly(files: tuple[Path, Path]) -> None:
    cert, key = files
    one, other = Issued.new(), Issued.new()

    def refused(chain: bytes | None, private_key: bytes | None) -> str:
        for path, data in ((cert, chain), (key, private_key)):
            path.unlink(missing_ok=True)
            if data is not None:
                path.write_bytes(data)
        with pytest.raises(ConfigError) as caught:
            load_server_context(str(cert), str(key))
        return str(caught.value)

    assert refused(None, one.key_pem) == (
        f"NOVAVOICE_TLS_CERT={cert}: cannot read it: No such file or directory"
    )
    assert refused(one.chain_pem, None).startswith(f"NOVAVOICE_TLS_KEY={key}: cannot read it")
    assert refused(b"not a certificate\n", one.key_pem) == (
        f"NOVAVOICE_TLS_CERT={cert}: no PEM certificate in the file"
    )
    assert refused(one.chain_pem, one.chain_pem) == (
        f"NOVAVOICE_TLS_KEY={key}: no PEM private key in the file"
    )
    assert refused(one.chain_pem, other.key_pem).endswith(
        "the private key does not match the certificate"
    )
    # An encrypted key would make OpenSSL prompt on the terminal: refused instead.
    assert "encrypted" in refused(one.chain_pem, encrypted_key(one))
    truncated = one.chain_pem[: len(one.chain_pem) // 2] + b"\n-----END CERTIFICATE-----\n"
    assert refused(truncated, one.key_pem).startswith(f"NOVAVOICE_TLS_CERT={cert}")


# --- reload, with real handshakes ---------------------------------------------------------


@asynccontextmanager
async def echo_server(tls: ServerTls) -> AsyncIterator[int]:
    """A TLS echo server on 127.0.0.1:0 behind :class:`TlsListener`; yields its port."""

    async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, echo, [TlsListener(listener, tls)])
        yield port
        nursery.cancel_scope.cancel()


async def echo_once(stream: trio.SSLStream[trio.SocketStream], data: bytes) -> bytes:
    await stream.send_all(data)
    return bytes(await stream.receive_some(len(data)))


def reloads(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("novavoice_tls_reloads_total", {"outcome": outcome})
    return value or 0.0


async def test_reload_serves_the_new_certificate_to_new_handshakes_only(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novavoice.tls")
    cert, key = files
    old, new = Issued.new(), Issued.new()
    install(old, cert, key)
    metrics = Metrics(process_metrics=False)
    tls = ServerTls.load(tls_settings(cert, key).tls, lambda o: metrics.tls_reloads.labels(o).inc())
    assert tls is not None
    with trio.fail_after(10):
        async with echo_server(tls) as port:
            # A connection set up before the reload, trusting only the old CA.
            first = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=old.client_context()
            )
            assert await echo_once(first, b"before") == b"before"
            install(new, cert, key)
            assert tls.reload()
            assert tls.fingerprint == new.fingerprint
            assert await presented_fingerprint(port, trusting(old, new)) == new.fingerprint
            # A client trusting only the old CA cannot set up a new connection any more...
            with pytest.raises(trio.BrokenResourceError):
                await presented_fingerprint(port, old.client_context())
            # ...but the connection made before the reload goes on, with its certificate.
            assert await echo_once(first, b"after the reload") == b"after the reload"
            der = first.getpeercert(binary_form=True)
            assert der is not None and hashlib.sha256(der).hexdigest() == old.fingerprint
            await first.aclose()
    assert (reloads(metrics, "ok"), reloads(metrics, "failed")) == (1, 0)
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "tls_reloaded"]
    assert line.fingerprint == new.fingerprint  # type: ignore[attr-defined]
    assert line.changed is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("breakage", ["mismatched key", "garbage", "missing"])
async def test_a_failed_reload_keeps_the_old_certificate(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture, breakage: str
) -> None:
    caplog.set_level(logging.INFO, logger="novavoice.tls")
    cert, key = files
    old, other = Issued.new(), Issued.new()
    install(old, cert, key)
    metrics = Metrics(process_metrics=False)
    tls = ServerTls.load(tls_settings(cert, key).tls, lambda o: metrics.tls_reloads.labels(o).inc())
    assert tls is not None
    if breakage == "mismatched key":
        # The certificate is rotated but the key is not (yet): loading this pair into the
        # live context would have replaced its certificate and then failed on the key.
        write_atomically(cert, other.chain_pem)
    elif breakage == "garbage":
        write_atomically(cert, b"-----BEGIN CERTIFICATE-----\nhalf written")
    else:
        key.unlink()
    with trio.fail_after(10):
        async with echo_server(tls) as port:
            assert not tls.reload()
            assert tls.fingerprint == old.fingerprint
            assert await presented_fingerprint(port, old.client_context()) == old.fingerprint
    assert (reloads(metrics, "ok"), reloads(metrics, "failed")) == (0, 1)
    [line] = [r for r in caplog.records if getattr(r, "event", None) == "tls_reload_failed"]
    assert line.levelno == logging.ERROR
    assert "NOVAVOICE_TLS_" in line.error  # type: ignore[attr-defined]
