"""Server-side SigV4 verification of the initial request and of the event signature chain.

Written from the SigV4 specification (reference §1.2–§1.3), deliberately *not* by calling
our client's signer: the emulator is a second implementation, so a bug in the client's signer
shows up as a refused request instead of being mirrored. It is checked against the vectors
recorded from the official SDK (``vectors/bedrock-bidi/``). Pure: clock values are arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import attrs

__all__ = [
    "AuthFailure",
    "RequestAuth",
    "derive_key",
    "event_signature",
    "verify_request",
]

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


@attrs.frozen
class AuthFailure:
    """Why a request was refused: the HTTP status, ``x-amzn-errortype`` and message."""

    status: int
    error_type: str
    message: str


@attrs.frozen(kw_only=True)
class RequestAuth:
    """A verified request: whose key signed it and the seed of its event signature chain."""

    access_key_id: str
    secret_access_key: str
    region: str
    service: str
    seed_signature: str


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for ``date`` (``YYYYMMDD``), region and service."""
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def verify_request(
    *,
    method: str,
    path: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    session_tokens: Mapping[str, str],
    region: str,
    now: datetime,
    max_skew: float,
    signature_error_type: str = "InvalidSignatureException",
) -> RequestAuth | AuthFailure:
    """Check the SigV4 ``authorization`` of the stream's POST.

    ``headers`` are lowercase names → values, with ``host`` set to the ``:authority``;
    ``path`` is the ``:path`` as sent (query included). Returns the verified identity or the
    refusal AWS would send.
    """
    auth = headers.get("authorization")
    if not auth:
        return AuthFailure(
            403, "MissingAuthenticationTokenException", "Missing Authentication Token"
        )
    match = _AUTH.match(auth.strip())
    if match is None:
        return AuthFailure(
            403, "IncompleteSignatureException", f"Malformed authorization header: {auth[:60]!r}"
        )
    akid, scope_date, scope_region, service = (
        match["akid"],
        match["date"],
        match["region"],
        match["service"],
    )
    secret = credentials.get(akid)
    if secret is None:
        return AuthFailure(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    required_token = session_tokens.get(akid)
    if required_token is not None and headers.get("x-amz-security-token") != required_token:
        return AuthFailure(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    if scope_region != region or service != "bedrock":
        return AuthFailure(
            403,
            signature_error_type,
            f"Credential should be scoped to a valid region and service 'bedrock' in "
            f"'{region}', not '{scope_region}/{service}'.",
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return AuthFailure(403, signature_error_type, f"Invalid x-amz-date {amz_date!r}.")
    if amz_date[:8] != scope_date:
        return AuthFailure(
            403, signature_error_type, "Date in Credential scope does not match x-amz-date."
        )
    if abs((now - signed_at).total_seconds()) > max_skew:
        return AuthFailure(
            403,
            signature_error_type,
            f"Signature expired: {amz_date} is now earlier or later than "
            f"{now.strftime('%Y%m%dT%H%M%SZ')} by more than {int(max_skew)} seconds.",
        )
    signed_names = match["signed"].split(";")
    if "host" not in signed_names:
        return AuthFailure(403, signature_error_type, "'Host' must be a signed header.")
    missing = [n for n in signed_names if n not in headers]
    if missing:
        return AuthFailure(
            403, signature_error_type, f"Signed headers missing from the request: {missing}"
        )
    raw_path, _, query = path.partition("?")
    canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed_names)
    canonical = "\n".join(
        [
            method,
            quote(raw_path, safe="/-_.~"),  # the wire path encoded once more (reference §1.2)
            _canonical_query(query),
            canonical_headers,
            match["signed"],
            headers.get("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ]
    )
    scope = f"{scope_date}/{scope_region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = derive_key(secret, scope_date, scope_region, service)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["sig"]):
        return AuthFailure(
            403,
            signature_error_type,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
        )
    return RequestAuth(
        access_key_id=akid,
        secret_access_key=secret,
        region=scope_region,
        service=service,
        seed_signature=match["sig"],
    )


def event_signature(
    *,
    secret: str,
    region: str,
    service: str,
    prior_signature: str,
    date_ms: int,
    payload: bytes,
    keys: dict[str, bytes] | None = None,
) -> bytes:
    """The 32-byte ``:chunk-signature`` an event with this ``:date`` and payload must carry.

    ``keys`` (date → signing key), owned by the caller, saves re-deriving the key per event.
    """
    when = datetime.fromtimestamp(date_ms // 1000, tz=UTC)
    date_header = b"\x05:date\x08" + struct.pack(">q", date_ms)
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            when.strftime("%Y%m%dT%H%M%SZ"),
            f"{when:%Y%m%d}/{region}/{service}/aws4_request",
            prior_signature,
            hashlib.sha256(date_header).hexdigest(),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    day = f"{when:%Y%m%d}"
    key = keys.get(day) if keys is not None else None
    if key is None:
        key = derive_key(secret, day, region, service)
        if keys is not None:
            keys.clear()  # one date at a time: a stream crossing midnight re-derives once
            keys[day] = key
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()
