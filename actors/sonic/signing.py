"""SigV4 for Bedrock bidirectional streams: the initial request and the per-event chain.

Reference ``nova-sonic.md`` §1.2–§1.3, checked byte for byte against the official SDK's
recordings in ``vectors/bedrock-bidi/``.

The initial request is signed by ``botocore.auth.SigV4Auth`` (service ``bedrock``, payload
hash ``STREAMING-AWS4-HMAC-SHA256-EVENTS``, canonical URI = the wire path URI-encoded again,
``%3A`` -> ``%253A``). The clock is injected: ``SigV4Auth.add_auth`` reads the time from the
module-global ``botocore.auth.get_current_datetime()``, and pinning it would mean patching a
global that every thread shares. So we do what ``add_auth`` does with public ``SigV4Auth``
methods only (``canonical_request``, ``string_to_sign``, ``signature``, ``scope``,
``signed_headers``) after setting ``request.context["timestamp"]`` from ``now`` ourselves,
and we place the headers ourselves in the SDK's wire order. No global is touched.

Each event is then wrapped in an outer message with ``:date`` (type 8, ms) and
``:chunk-signature`` (type 6, 32 raw bytes); the signature chains from the request's
``Signature=`` through every event to a signed empty end frame. The SigV4 key is derived
from the UTC date of each event's own ``:date``, so a stream crossing UTC midnight changes
keys; :class:`EventSigner` keeps the key of the current date so the hot path costs one
HMAC and two SHA-256 per event.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import time
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

import attrs
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from actors.errors import LocalProtocolError, SigningError
from actors.sonic.eventstream import (
    HeaderType,
    Message,
    decode_message,
    encode_with_headers_bytes,
)

__all__ = [
    "EVENT_STREAM_CONTENT_TYPE",
    "STREAMING_PAYLOAD_HASH",
    "Credentials",
    "EventSigner",
    "SignedRequest",
    "VerifiedEvent",
    "chunk_signature",
    "event_string_to_sign",
    "request_path",
    "sign_request",
    "signing_key",
    "verify_outer_message",
]

EVENT_STREAM_CONTENT_TYPE: Final = "application/vnd.amazon.eventstream"
STREAMING_PAYLOAD_HASH: Final = "STREAMING-AWS4-HMAC-SHA256-EVENTS"

_DATE_PREFIX: Final = b"\x05:date\x08"
_SIGNATURE_PREFIX: Final = b"\x10:chunk-signature\x06\x00\x20"
_I64: Final = struct.Struct("!q")


@attrs.frozen
class Credentials:
    """One set of AWS credentials, pinned for the life of a stream."""

    access_key_id: str
    secret_access_key: str = attrs.field(repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)
    expiry: datetime | None = None  # tz-aware UTC; None for long-term keys


@attrs.frozen
class SignedRequest:
    """The signed headers of the initial POST, in wire order, and the chain's seed."""

    headers: tuple[tuple[str, str], ...]
    signature: str
    canonical_request: str = ""
    string_to_sign: str = ""


def request_path(model_id: str) -> str:
    """The ``:path`` of the stream: the model id percent-encoded (``:`` -> ``%3A``)."""
    return f"/model/{quote(model_id, safe='')}/invoke-with-bidirectional-stream"


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise SigningError("the signing clock must be timezone-aware (UTC)")
    return now.astimezone(UTC)


def sign_request(
    *,
    credentials: Credentials,
    region: str,
    host: str,
    path: str,
    now: datetime,
    service: str = "bedrock",
) -> SignedRequest:
    """Sign the initial ``POST`` with SigV4 at the instant ``now``.

    ``host`` is the ``:authority`` exactly as sent (``host`` or ``host:port``); it is signed
    as the ``host`` header. Headers come back in the order the official SDK sends them:
    content-type, x-amz-date, [x-amz-security-token], x-amz-content-sha256, authorization.
    """
    now = _utc(now)
    if credentials.expiry is not None and _utc(credentials.expiry) <= now:
        raise SigningError(
            f"credentials {credentials.access_key_id} expired at {credentials.expiry.isoformat()}"
        )
    timestamp = now.strftime(SIGV4_TIMESTAMP)
    headers: list[tuple[str, str]] = [
        ("content-type", EVENT_STREAM_CONTENT_TYPE),
        ("x-amz-date", timestamp),
    ]
    if credentials.session_token:
        headers.append(("x-amz-security-token", credentials.session_token))
    headers.append(("x-amz-content-sha256", STREAMING_PAYLOAD_HASH))

    request = AWSRequest(method="POST", url=f"https://{host}{path}", headers=dict(headers))
    # Signed exactly as the :authority travels (botocore would drop an explicit :443).
    request.headers["host"] = host
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(
        ReadOnlyCredentials(
            credentials.access_key_id,
            credentials.secret_access_key,
            credentials.session_token,
        ),
        service,
        region,
    )
    try:
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        signature: str = signer.signature(string_to_sign, request)
        signed_names = signer.signed_headers(signer.headers_to_sign(request))
        scope = signer.scope(request)
    except (ValueError, UnicodeError) as exc:
        raise SigningError(f"cannot sign request for {host}{path}: {exc}") from exc
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed_names}, Signature={signature}"
    )
    headers.append(("authorization", authorization))
    return SignedRequest(
        headers=tuple(headers),
        signature=signature,
        canonical_request=canonical,
        string_to_sign=string_to_sign,
    )


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for ``date`` (``YYYYMMDD``), region and service."""
    key = hmac.digest(f"AWS4{secret_access_key}".encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def _date_header(date_ms: int) -> bytes:
    return _DATE_PREFIX + _I64.pack(date_ms)


def _timestamp(date_ms: int) -> str:
    # Second resolution, truncated, exactly as the SDK's strftime of the same instant.
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(date_ms // 1000))


def event_string_to_sign(
    *, region: str, service: str, prior_signature: str, date_ms: int, payload: bytes
) -> str:
    """The six-line string-to-sign of one event (or, with an empty payload, the end frame)."""
    stamp = _timestamp(date_ms)
    return (
        f"AWS4-HMAC-SHA256-PAYLOAD\n{stamp}\n{stamp[:8]}/{region}/{service}/aws4_request\n"
        f"{prior_signature}\n{hashlib.sha256(_date_header(date_ms)).hexdigest()}\n"
        f"{hashlib.sha256(payload).hexdigest()}"
    )


def chunk_signature(
    *,
    credentials: Credentials,
    region: str,
    prior_signature: str,
    date_ms: int,
    payload: bytes,
    service: str = "bedrock",
) -> bytes:
    """The 32 raw bytes of ``:chunk-signature`` for one event (payload = inner message)."""
    string_to_sign = event_string_to_sign(
        region=region,
        service=service,
        prior_signature=prior_signature,
        date_ms=date_ms,
        payload=payload,
    )
    key = signing_key(credentials.secret_access_key, _timestamp(date_ms)[:8], region, service)
    return hmac.digest(key, string_to_sign.encode(), "sha256")


class EventSigner:
    """Signs the events of one stream in order, then the empty end frame, then nothing.

    Not thread-safe and not reentrant: one stream owns one signer, and events must be
    signed in the order they are sent, because each signature seeds the next.
    """

    def __init__(
        self,
        *,
        credentials: Credentials,
        region: str,
        seed_signature: str,
        service: str = "bedrock",
    ) -> None:
        self._secret = credentials.secret_access_key
        self._region = region
        self._service = service
        self._prior = seed_signature
        self._ended = False
        self._key_date = ""
        self._key = b""
        self._scope_tail = f"/{region}/{service}/aws4_request\n"

    @property
    def prior_signature(self) -> str:
        """Hex signature the next frame will chain from."""
        return self._prior

    @property
    def ended(self) -> bool:
        """True once the end frame has been signed."""
        return self._ended

    def _sign(self, payload: bytes, date_ms: int) -> bytes:
        date_header = _DATE_PREFIX + _I64.pack(date_ms)
        stamp = _timestamp(date_ms)
        day = stamp[:8]
        if day != self._key_date:
            # Keyed on the frame's own UTC date: a stream crossing midnight re-derives once.
            self._key = signing_key(self._secret, day, self._region, self._service)
            self._key_date = day
        string_to_sign = "".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD\n",
                stamp,
                "\n",
                day,
                self._scope_tail,
                self._prior,
                "\n",
                hashlib.sha256(date_header).hexdigest(),
                "\n",
                hashlib.sha256(payload).hexdigest(),
            )
        )
        signature = hmac.digest(self._key, string_to_sign.encode(), "sha256")
        self._prior = signature.hex()
        return encode_with_headers_bytes(date_header + _SIGNATURE_PREFIX + signature, payload)

    def sign(self, inner_message: bytes, date_ms: int) -> bytes:
        """Wrap and sign one inner message; return the outer message bytes."""
        if self._ended:
            raise LocalProtocolError("event signed after the end frame; the stream is closed")
        return self._sign(inner_message, date_ms)

    def sign_end(self, date_ms: int) -> bytes:
        """The signed empty frame that closes the input; afterwards :meth:`sign` refuses."""
        if self._ended:
            raise LocalProtocolError("end frame already signed")
        self._ended = True
        return self._sign(b"", date_ms)


@attrs.frozen
class VerifiedEvent:
    """An outer message whose signature checked out."""

    inner: bytes  # the inner message bytes (empty for the end frame)
    signature: str  # hex; the prior signature of the next frame
    date_ms: int


def verify_outer_message(
    *,
    credentials: Credentials,
    region: str,
    prior_signature: str,
    outer: bytes | Message,
    service: str = "bedrock",
) -> VerifiedEvent:
    """Check one outer message of a client's chain (for the emulator); raise SigningError."""
    message = decode_message(outer) if isinstance(outer, bytes) else outer
    headers = {h.name: h for h in message.headers}
    date = headers.get(":date")
    signature = headers.get(":chunk-signature")
    if date is None or date.type is not HeaderType.TIMESTAMP or not isinstance(date.value, int):
        raise SigningError("event has no :date timestamp header")
    if (
        signature is None
        or signature.type is not HeaderType.BYTES
        or not isinstance(signature.value, bytes)
        or len(signature.value) != 32
    ):
        raise SigningError("event has no 32-byte :chunk-signature header")
    expected = chunk_signature(
        credentials=credentials,
        region=region,
        prior_signature=prior_signature,
        date_ms=date.value,
        payload=message.payload,
        service=service,
    )
    if not hmac.compare_digest(expected, signature.value):
        raise SigningError("event signature does not match")
    return VerifiedEvent(inner=message.payload, signature=expected.hex(), date_ms=date.value)
