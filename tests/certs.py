"""Certificates for the TLS tests: trustme CAs, PEM files written as cert-manager would, and
a client that reports which certificate a server presented."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import attrs
import trio
import trustme


@attrs.frozen
class Issued:
    """One CA and a server certificate it issued for 127.0.0.1 / localhost."""

    ca: trustme.CA
    cert: trustme.LeafCert

    @classmethod
    def new(cls) -> Issued:
        """A fresh CA and its server certificate."""
        ca = trustme.CA()
        return cls(ca, ca.issue_cert("127.0.0.1", "localhost"))

    @property
    def chain_pem(self) -> bytes:
        """The certificate chain, leaf first."""
        return b"".join(blob.bytes() for blob in self.cert.cert_chain_pems)

    @property
    def key_pem(self) -> bytes:
        """The leaf's private key."""
        return self.cert.private_key_pem.bytes()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf certificate (DER), hex."""
        leaf = self.cert.cert_chain_pems[0].bytes().decode()
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(leaf)).hexdigest()

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` in one rename, as cert-manager's volume update or certbot's symlink
    swap does (a reader never sees a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Write ``issued``'s chain and key to the two paths."""
    write_atomically(cert_path, issued.chain_pem)
    write_atomically(key_path, issued.key_pem)


def trusting(*issued: Issued) -> ssl.SSLContext:
    """A client context trusting every given CA (to see which certificate is presented)."""
    context = ssl.create_default_context()
    for one in issued:
        one.ca.configure_trust(context)
    return context


async def presented_fingerprint(port: int, context: ssl.SSLContext) -> str:
    """Handshake with 127.0.0.1:``port`` and return the SHA-256 of the certificate it showed."""
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    try:
        await stream.do_handshake()
        der = stream.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()
    finally:
        await trio.aclose_forcefully(stream)
