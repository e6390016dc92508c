"""Validation of ``X-Twilio-Signature`` on a Media Streams WebSocket upgrade.

Twilio signs a stream's upgrade GET the way it signs every webhook (twilio-python
``RequestValidator``): the full URL it requested, followed by each POST parameter as
``name + value`` sorted by name (none for a GET), HMAC-SHA1 keyed with the account's Auth
Token, base64-encoded. The URL is the ``wss://`` URL written in TwiML, which behind a TLS
terminating proxy we cannot see, so the daemon is configured with its public base URL.

Accepted variants, each compared in constant time (as Twilio's helper libraries do):
the URL with its query string as signed text, and the URL without it with the query
parameters folded in as parameters (Twilio's agent toolkit); each with the port as
given, without the scheme's default port, and with it added.
"""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from actors.errors import CarrierForbidden, CarrierUnauthorized
from sessions.dialects.base import header_value

SIGNATURE_HEADER = "x-twilio-signature"
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
    if default is not None:
        with_port = urlunsplit(parts._replace(netloc=f"{host}:{port or default}"))
        without = urlunsplit(parts._replace(netloc=host)) if port in (None, default) else url
        variants += [with_port, without]
    return list(dict.fromkeys(variants))


def candidate_urls(public_url: str, path: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(url, params) pairs a genuine signature may cover for ``path`` under ``public_url``."""
    base = public_url.rstrip("/")
    full = base + (path if path.startswith("/") else "/" + path)
    parts = urlsplit(full)
    out: list[tuple[str, list[tuple[str, str]]]] = [(u, []) for u in _port_variants(full)]
    if parts.query:
        bare = urlunsplit(parts._replace(query="", fragment=""))
        folded = parse_qsl(parts.query, keep_blank_values=True)
        out += [(u, folded) for u in _port_variants(bare)]
    return out


def validate_twilio_upgrade(
    *,
    auth_token: str,
    public_url: str,
    path: str,
    headers: Iterable[tuple[bytes | str, bytes | str]],
) -> None:
    """Raise unless the upgrade carries a valid ``X-Twilio-Signature``.

    ``public_url`` is the scheme and host Twilio connects to (``wss://voice.example.com``),
    ``path`` the request target including any query string. A missing header raises
    :class:`~actors.errors.CarrierUnauthorized` (HTTP 401); a wrong one
    :class:`~actors.errors.CarrierForbidden` (HTTP 403).
    """
    signature = header_value(headers, SIGNATURE_HEADER)
    if not signature:
        raise CarrierUnauthorized("missing X-Twilio-Signature")
    given = signature.strip().encode("ascii", errors="replace")
    matched = False
    for url, params in candidate_urls(public_url, path):
        expected = compute_signature(auth_token, url, params).encode("ascii")
        # Compare every candidate so timing does not reveal which variant matched.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise CarrierForbidden("invalid X-Twilio-Signature")
