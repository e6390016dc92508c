"""TLS on the carrier listener: ``wss://`` served by the daemon itself, reloaded on SIGHUP.

``NOVAVOICE_TLS_CERT`` and ``NOVAVOICE_TLS_KEY`` (PEM files) turn the carrier listener into a
TLS listener. :class:`ServerTls` holds the live :class:`ssl.SSLContext`;
:meth:`ServerTls.reload` (SIGHUP, in every process that serves calls) builds a *new* context
from the files and only then swaps it in, so:

- a call in progress keeps the TLS session it was set up with (a TLS connection never looks
  at its context again after the handshake), and every handshake after the swap presents
  the new certificate;
- a failed reload (missing file, a key that does not match, half-written PEM) leaves the
  live context untouched: it is logged at ERROR and counted in
  ``novavoice_tls_reloads_total{outcome="failed"}``, and the old certificate stays in use.

Loading the new files into the live context instead (``load_cert_chain`` again on the same
object) was rejected: OpenSSL replaces the certificate before it checks the key, so a
reload that fails on the key leaves a context with the new certificate and no usable key,
and every later handshake fails. :class:`TlsListener` therefore wraps each accepted
connection with whatever context is live at accept time (``trio.SSLListener`` fixes one
context for its lifetime and cannot be subclassed).

:func:`tls_problems` is the start-up check: both files or neither, and beyond loopback,
Basic/bearer carrier credentials only over TLS, the daemon's own or a proxy's declared with
``NOVAVOICE_TLS_TERMINATED_UPSTREAM=1``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Callable
from typing import Literal

import attrs
import trio

from actors.errors import ConfigError
from sessions.config import Settings, TlsSettings
from sessions.logs import log_event

logger = logging.getLogger("novavoice.tls")

ReloadOutcome = Literal["ok", "failed"]
RELOAD_OUTCOMES: tuple[ReloadOutcome, ...] = ("ok", "failed")

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_CERT_END = b"-----END CERTIFICATE-----"


def _no_password() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal for an encrypted key,
    # and a daemon (or its SIGHUP handler) would hang there.
    raise ValueError("the private key is encrypted; give the daemon an unencrypted key file")


def _uncounted(_outcome: ReloadOutcome) -> None:
    pass


def _read(variable: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read it: {exc.strerror or exc}") from None


def certificate_fingerprint(chain_pem: bytes) -> str:
    """SHA-256 of the first (leaf) certificate of a PEM chain, hex: what operators compare
    with ``openssl x509 -noout -fingerprint -sha256`` to see which certificate is live."""
    start = chain_pem.index(_PEM_CERT)
    end = chain_pem.index(_PEM_CERT_END, start) + len(_PEM_CERT_END)
    der = ssl.PEM_cert_to_DER_cert(chain_pem[start:end].decode("ascii"))
    return hashlib.sha256(der).hexdigest()


def load_server_context(cert_path: str, key_path: str) -> tuple[ssl.SSLContext, str]:
    """A server context for ``cert_path`` + ``key_path``, and the leaf's SHA-256 fingerprint.

    Raises :class:`ConfigError` naming the variable and the file for anything wrong: a file
    that cannot be read, no PEM certificate, no PEM private key, an encrypted key, a key that
    does not match the certificate.
    """
    chain = _read("NOVAVOICE_TLS_CERT", cert_path)
    key = _read("NOVAVOICE_TLS_KEY", key_path)
    if _PEM_CERT not in chain:
        raise ConfigError(f"NOVAVOICE_TLS_CERT={cert_path}: no PEM certificate in the file")
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"NOVAVOICE_TLS_KEY={key_path}: no PEM private key in the file")
    try:
        fingerprint = certificate_fingerprint(chain)
    except ValueError:
        raise ConfigError(
            f"NOVAVOICE_TLS_CERT={cert_path}: the first certificate is not valid PEM"
        ) from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    both = f"NOVAVOICE_TLS_CERT={cert_path}, NOVAVOICE_TLS_KEY={key_path}"
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{both}: the private key does not match the certificate") from None
        raise ConfigError(
            f"{both}: not a valid certificate chain and private key (OpenSSL: {exc})"
        ) from None
    except ValueError as exc:  # _no_password
        raise ConfigError(f"NOVAVOICE_TLS_KEY={key_path}: {exc}") from None
    except OSError as exc:  # the file went away between the read and the load
        raise ConfigError(f"{both}: cannot load them: {exc.strerror or exc}") from None
    return context, fingerprint


@attrs.define(eq=False)
class ServerTls:
    """The carrier listener's TLS: the live context, reloaded from the same two files.

    Built by :meth:`load`. ``on_reload`` counts each reload's outcome (the metrics).
    """

    cert_path: str
    key_path: str
    _context: ssl.SSLContext
    fingerprint: str
    """SHA-256 of the live leaf certificate."""
    _on_reload: Callable[[ReloadOutcome], None]

    @classmethod
    def load(
        cls,
        settings: TlsSettings,
        on_reload: Callable[[ReloadOutcome], None] | None = None,
    ) -> ServerTls | None:
        """The TLS of ``settings``, or ``None`` when no certificate is configured.

        Raises :class:`ConfigError` when the files cannot be loaded (start-up fails).
        """
        if settings.cert_path is None or settings.key_path is None:
            return None
        context, fingerprint = load_server_context(settings.cert_path, settings.key_path)
        return cls(
            settings.cert_path, settings.key_path, context, fingerprint, on_reload or _uncounted
        )

    @property
    def context(self) -> ssl.SSLContext:
        """The context new connections are wrapped with."""
        return self._context

    def reload(self) -> bool:
        """Load the files again; swap the new context in only if that worked.

        Connections already set up keep theirs; the next handshake uses the new one. On
        failure the old certificate stays live and the error is logged. Returns success.
        """
        try:
            context, fingerprint = load_server_context(self.cert_path, self.key_path)
        except ConfigError as exc:
            self._on_reload("failed")
            log_event(
                logger,
                "tls_reload_failed",
                level=logging.ERROR,
                error=str(exc),
                fingerprint=self.fingerprint,
            )
            return False
        previous, self._context, self.fingerprint = self.fingerprint, context, fingerprint
        self._on_reload("ok")
        log_event(
            logger,
            "tls_reloaded",
            cert=self.cert_path,
            fingerprint=fingerprint,
            changed=fingerprint != previous,
        )
        return True


class TlsListener(trio.abc.Listener[trio.SSLStream[trio.SocketStream]]):
    """Accepts on a socket listener and wraps each connection in TLS with the context that
    is live at that moment (see the module docstring for why not ``trio.SSLListener``).

    The handshake itself runs on the connection's first read, inside trio-websocket's
    handshake deadline (``WEBSOCKET_HANDSHAKE_TIMEOUT_MS``), so a client that stalls the TLS
    handshake is dropped like one that stalls the HTTP upgrade.
    """

    def __init__(
        self, transport_listener: trio.abc.Listener[trio.SocketStream], tls: ServerTls
    ) -> None:
        self.transport_listener = transport_listener
        self.tls = tls

    async def accept(self) -> trio.SSLStream[trio.SocketStream]:
        """The next connection, TLS on top (the handshake happens on first use)."""
        stream = await self.transport_listener.accept()
        return trio.SSLStream(stream, self.tls.context, server_side=True, https_compatible=True)

    async def aclose(self) -> None:
        """Close the socket listener."""
        await self.transport_listener.aclose()


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def tls_problems(host: str, settings: Settings) -> list[str]:
    """Why the TLS settings cannot start (empty when they can); ``host`` is the carrier
    listener's.

    - ``NOVAVOICE_TLS_CERT`` and ``NOVAVOICE_TLS_KEY`` are set together or not at all.
    - Beyond loopback, Asterisk's Basic credentials or a bearer token must not travel in
      clear: the daemon serves TLS itself, or ``NOVAVOICE_TLS_TERMINATED_UPSTREAM=1``
      declares that a proxy or load balancer does. (Twilio's auth token never crosses the
      network, only a signature, and Twilio connects to ``wss://`` URLs only.)

    Whether the files load is checked by :meth:`ServerTls.load`.
    """
    tls, admission = settings.tls, settings.admission
    problems: list[str] = []
    if (tls.cert_path is None) != (tls.key_path is None):
        given, missing = (
            ("NOVAVOICE_TLS_CERT", "NOVAVOICE_TLS_KEY")
            if tls.cert_path is not None
            else ("NOVAVOICE_TLS_KEY", "NOVAVOICE_TLS_CERT")
        )
        problems.append(
            f"{given} is set but {missing} is not: set NOVAVOICE_TLS_CERT and "
            "NOVAVOICE_TLS_KEY together (or neither)"
        )
    credentials = [
        name
        for name, value in (
            ("ASTERISK_BASIC_AUTH", admission.asterisk_basic_auth),
            ("ASTERISK_BEARER_TOKEN", admission.asterisk_bearer_token),
        )
        if value is not None
    ]
    serves_tls = tls.cert_path is not None and tls.key_path is not None
    if credentials and not is_loopback(host) and not serves_tls and not tls.terminated_upstream:
        problems.append(
            f"NOVAVOICE_LISTEN={host}: {' and '.join(credentials)} would cross the network "
            "in clear: set NOVAVOICE_TLS_CERT and NOVAVOICE_TLS_KEY, or "
            "NOVAVOICE_TLS_TERMINATED_UPSTREAM=1 if a proxy or load balancer terminates TLS"
        )
    return problems


def check_tls(host: str, settings: Settings) -> ServerTls | None:
    """Start-up: raise :class:`ConfigError` with every :func:`tls_problems`, then load the
    certificate (``None`` when none is configured). Used by the worker parent, which only
    checks; a serving daemon builds its own :class:`ServerTls` with its metrics."""
    problems = tls_problems(host, settings)
    if problems:
        raise ConfigError("; ".join(problems))
    return ServerTls.load(settings.tls)
