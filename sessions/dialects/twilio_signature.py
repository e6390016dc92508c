"""Validation of ``X-Twilio-Signature`` on a Media Streams WebSocket upgrade.

Twilio signs a stream's upgrade GET the way it signs every webhook (twilio-python
``RequestValidator``): the full URL it requested, followed by each POST parameter as
``name + value`` sorted by name (none for a GET), HMAC-SHA1 keyed with the account's Auth
Token, base64-encoded. The URL is the ``wss://`` URL written in TwiML, which behind a TLS
terminating proxy we cannot see, so the daemon is configured with its public base URL.

What is accepted, and nothing else:

- the signed text is exactly ``TWILIO_PUBLIC_URL`` + the request path, with the default
  port (``:443``) either absent or spelled out (Twilio's helper libraries try both);
- the request carries no query string. A ``<Stream>`` URL takes none (Twilio error 31920:
  use ``<Parameter>`` instead), and folding a query into parameters would let a signature
  made for ``/twilio/esther`` open ``/twilio/?e=sther``: an upgrade with ``?`` in its target
  is refused (403) before any signature is computed;
- any of the configured auth tokens (``TWILIO_AUTH_TOKEN`` is a comma list, so the
  secondary token can be promoted to primary without an outage). Every candidate is
  compared, in constant time, so timing does not reveal which one matched.

Twilio's SharedKey signatures (the Webhooks configuration API, public beta) announce
themselves with ``X-Twilio-Webhooks-Signature-Settings``; nothing Twilio publishes says
they apply to Media Streams upgrades, so such an upgrade is refused with a reason that says
so rather than checked against a guess (README, "Security").
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from actors.errors import CarrierForbidden, CarrierUnauthorized
from sessions.dialects.base import header_value

SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
_DEFAULT_PORTS = {"wss": 443, "https": 443, "ws": 80, "http": 80}


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> str:
    """Twilio's signature of ``url`` plus sorted ``params`` (HMAC-SHA1, base64)."""
    items = params.items() if isinstance(params, Mapping) else params
    signed = url + "".join(k + v for k, v in sorted(items))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return [url]
    variants = [url]
    if default is not None and port in (None, default):
        variants += [
            urlunsplit(parts._replace(netloc=f"{host}:{default}")),
            urlunsplit(parts._replace(netloc=host)),
        ]
    return list(dict.fromkeys(variants))


def candidate_urls(public_url: str, path: str) -> list[str]:
    """The URLs a genuine signature may cover for ``path`` (no query) under ``public_url``."""
    base = public_url.rstrip("/")
    return _port_variants(base + (path if path.startswith("/") else "/" + path))


def validate_twilio_upgrade(
    *,
    auth_tokens: Sequence[str],
    public_url: str,
    path: str,
    headers: Iterable[tuple[bytes | str, bytes | str]],
) -> None:
    """Raise unless the upgrade carries a valid ``X-Twilio-Signature``.

    ``public_url`` is the scheme and host Twilio connects to (``wss://voice.example.com``),
    ``path`` the request target. A missing header raises
    :class:`~actors.errors.CarrierUnauthorized` (HTTP 401); a query string, a SharedKey
    signature or a wrong signature :class:`~actors.errors.CarrierForbidden` (HTTP 403).
    """
    if not auth_tokens:
        raise CarrierUnauthorized("no Twilio auth token configured (TWILIO_AUTH_TOKEN)")
    if "?" in path:
        raise CarrierForbidden(
            "query string refused on a signed Twilio route: a <Stream> URL takes none "
            "(use <Parameter>)"
        )
    headers = list(headers)
    signature = header_value(headers, SIGNATURE_HEADER)
    if not signature:
        raise CarrierUnauthorized("missing X-Twilio-Signature")
    if header_value(headers, SIGNATURE_SETTINGS_HEADER) is not None:
        raise CarrierForbidden(
            "X-Twilio-Webhooks-Signature-Settings: SharedKey signatures are not accepted on "
            "Media Streams upgrades (remove the Webhook Rule matching this URL)"
        )
    given = signature.strip().encode("ascii", errors="replace")
    matched = False
    for token in auth_tokens:
        for url in candidate_urls(public_url, path):
            expected = compute_signature(token, url).encode("ascii")
            # Compare every candidate so timing does not reveal which token or URL matched.
            matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise CarrierForbidden("invalid X-Twilio-Signature")
