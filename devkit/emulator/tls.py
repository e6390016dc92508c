"""Throwaway TLS identity of the emulator: a trustme CA and a loopback server certificate.

The CA is written to a temporary PEM file so any client (ours via ``AWS_CA_BUNDLE``, the
official SDK via awscrt's trust store override, curl) can trust it; :meth:`close` deletes it.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile

import trustme

__all__ = ["EmulatorTLS"]


class EmulatorTLS:
    """A fresh CA plus a server certificate for 127.0.0.1, ::1 and localhost."""

    def __init__(self, extra_names: tuple[str, ...] = ()) -> None:
        self._ca = trustme.CA(organization_name="NovaVoice Sonic emulator")
        self._cert = self._ca.issue_cert("127.0.0.1", "::1", "localhost", *extra_names)
        self.ca_pem: bytes = self._ca.cert_pem.bytes()
        fd, self.ca_file = tempfile.mkstemp(prefix="novavoice-emulator-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.ca_pem)

    def server_context(self) -> ssl.SSLContext:
        """A server SSL context offering ALPN ``h2`` only (Bedrock streams are HTTP/2)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        ctx.set_alpn_protocols(["h2"])
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def close(self) -> None:
        """Delete the CA file (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ca_file)
