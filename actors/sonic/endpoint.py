"""Where the Bedrock Runtime endpoint is and how to trust it.

AWS's standard variables decide, as in every SDK: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, then
``AWS_ENDPOINT_URL``, else the regional ``https://bedrock-runtime.{region}.amazonaws.com``;
``AWS_CA_BUNDLE`` names extra trust (a VPC proxy, or the local emulator's CA). The signed
``host`` is the HTTP/2 ``:authority`` exactly as written in the URL (``host`` or
``host:port``), which is what the official SDK signs for an overridden endpoint.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

from actors.errors import ConfigError

__all__ = ["Endpoint", "make_ssl_context", "resolve_endpoint"]


@attrs.frozen(kw_only=True)
class Endpoint:
    """A resolved Bedrock Runtime endpoint.

    ``host`` is what we connect to and send as TLS SNI, ``port`` the TCP port,
    ``authority`` the ``:authority`` header and signed host, ``base_path`` a path prefix from
    the URL (empty for AWS endpoints), ``ca_file`` an optional PEM bundle to trust.
    """

    host: str
    port: int
    authority: str
    base_path: str = ""
    ca_file: str | None = None

    @property
    def url(self) -> str:
        """The endpoint as an ``https://`` URL (for logs)."""
        return f"https://{self.authority}{self.base_path}"

    def request_path(self, path: str) -> str:
        """The ``:path`` to send: the endpoint's base path followed by ``path``."""
        return f"{self.base_path}{path}"


def resolve_endpoint(
    *,
    region: str,
    endpoint_url: str | None = None,
    ca_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Resolve the endpoint from arguments first, then AWS's standard variables.

    Raises :class:`~actors.errors.ConfigError` for anything but an ``https`` URL: Bedrock's
    bidirectional stream needs HTTP/2, which we only speak over TLS with ALPN.
    """
    env = os.environ if environ is None else environ
    source = "endpoint_url"
    url = endpoint_url
    for name in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"):
        if url:
            break
        url = env.get(name) or None
        source = name
    if not url:
        url = f"https://bedrock-runtime.{region}.amazonaws.com"
        source = "region"
    if ca_file is None:
        ca_file = env.get("AWS_CA_BUNDLE") or None
    return _parse(url, source=source, ca_file=ca_file)


def _parse(url: str, *, source: str, ca_file: str | None) -> Endpoint:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{source}={url!r}: {exc}") from None
    if parts.scheme != "https":
        raise ConfigError(f"{source}={url!r}: must be an https:// URL (HTTP/2 needs TLS)")
    if not parts.hostname:
        raise ConfigError(f"{source}={url!r}: has no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{source}={url!r}: must not carry credentials, query or fragment")
    # The authority is signed exactly as written, so keep the URL's spelling of host[:port].
    authority = parts.netloc
    return Endpoint(
        host=parts.hostname,
        port=443 if port is None else port,
        authority=authority,
        base_path=parts.path.rstrip("/"),
        ca_file=ca_file,
    )


def make_ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    """A client TLS context offering only ALPN ``h2``, trusting the system store and
    ``endpoint.ca_file`` when set (read once, here, at client start)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if endpoint.ca_file:
        try:
            context.load_verify_locations(cafile=endpoint.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"AWS_CA_BUNDLE={endpoint.ca_file!r}: {exc}") from None
    context.set_alpn_protocols(["h2"])
    return context
