"""The rules of webhook tools, sans-IO: which URLs may be called, how requests are signed,
and what a response must look like.

**URLs (the SSRF guard).** The daemon only ever calls the ``url`` written in the assistant's
definition (never a URL the model or a caller supplies), without following redirects. The
URL must be ``https://``; plain ``http://`` is allowed only to a loopback host
(``localhost``, ``127.0.0.0/8``, ``::1``), for development. No user information
(``user:pass@``) and no fragment.

**Signature.** Each request carries two headers::

    X-NovaVoice-Timestamp: 1764450000            (Unix seconds when it was sent)
    X-NovaVoice-Signature: v1=<hex HMAC-SHA256>   (key: the secret, message: "<timestamp>.<body>")

where ``<body>`` is the exact bytes of the JSON request body. A receiver recomputes the
HMAC over its received timestamp and body with the shared secret, compares in constant time
(:func:`verify_signature`), and refuses timestamps more than a few minutes from its clock
(replay protection). The secret comes from the environment variable the definition names
in ``secret_env``; it never appears in a definition, a log line or a result.

**Response.** HTTP 2xx with a JSON object body of at most :data:`MAX_RESPONSE_BYTES`
holding ``content``, a string (what the model receives), and optionally ``is_error`` (a
boolean: the tool ran and reports a failure the model should hear about). Anything else
is an error result for the model; redirects are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Final
from urllib.parse import urlsplit

import attrs

TIMESTAMP_HEADER: Final = "X-NovaVoice-Timestamp"
SIGNATURE_HEADER: Final = "X-NovaVoice-Signature"
SIGNATURE_VERSION: Final = "v1"
MAX_RESPONSE_BYTES: Final = 16 * 1024
"""The largest webhook response body read (16 KiB); a longer one is an error result."""
DEFAULT_TOLERANCE_SECONDS: Final = 300


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str | None:
    """Why ``url`` may not be a webhook URL (a short phrase), or ``None`` if it may."""
    if len(url) > 2048 or any(c.isspace() for c in url):
        return "must be a URL of at most 2048 characters without spaces"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    del port
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry user information"
    if parts.fragment:
        return "must not have a fragment"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must be https:// (http:// only to a loopback host)"
    return None


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-NovaVoice-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The two signature headers of a webhook request."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: the timestamp is recent and the signature matches ``body``."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    sent = int(timestamp)
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)


def request_body(*, tool: str, arguments: object, call_id: str, assistant: str) -> bytes:
    """The JSON body of a webhook request (compact, UTF-8)."""
    payload = {"tool": tool, "input": arguments, "call_id": call_id, "assistant": assistant}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@attrs.frozen
class WebhookReply:
    """A valid webhook response: the text for the model, and whether it reports a failure."""

    content: str
    is_error: bool = False


class WebhookResponseInvalid(ValueError):
    """The webhook answered, but not with a valid response (the message says why)."""


def parse_response(status: int, body: bytes) -> WebhookReply:
    """Check a webhook's response against the schema (see the module docstring)."""
    if not 200 <= status < 300:
        raise WebhookResponseInvalid(f"webhook answered HTTP {status}")
    if len(body) > MAX_RESPONSE_BYTES:
        raise WebhookResponseInvalid(f"webhook response over {MAX_RESPONSE_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise WebhookResponseInvalid("webhook response is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookResponseInvalid("webhook response is not a JSON object")
    content = data.get("content")
    if not isinstance(content, str):
        raise WebhookResponseInvalid("webhook response has no 'content' string")
    is_error = data.get("is_error", False)
    if not isinstance(is_error, bool):
        raise WebhookResponseInvalid("webhook response 'is_error' is not a boolean")
    return WebhookReply(content=content, is_error=is_error)
