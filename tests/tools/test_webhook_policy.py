"""The webhook rules, sans-IO: the SSRF URL rule, the signature scheme, the response schema."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from actors.webhook_policy import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookReply,
    WebhookResponseInvalid,
    check_webhook_url,
    parse_response,
    request_body,
    signature,
    signed_headers,
    verify_signature,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/lookup",
        "https://hooks.example.com:8443/a/b?x=1",
        "http://127.0.0.1:8080/dev",
        "http://127.5.6.7/dev",
        "http://localhost/dev",
        "http://[::1]:9000/dev",
        "https://10.0.0.5/internal",  # named in the definition by its author: allowed
    ],
)
def test_allowed_webhook_urls(url: str) -> None:
    assert check_webhook_url(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/x", "must be https:// (http:// only to a loopback host)"),
        ("http://10.0.0.5/x", "must be https:// (http:// only to a loopback host)"),
        (
            "http://169.254.169.254/latest/meta-data",
            "must be https:// (http:// only to a loopback host)",
        ),
        ("http://localhost.evil.example/x", "must be https:// (http:// only to a loopback host)"),
        ("ftp://hooks.example.com/x", "must be an https:// URL"),
        ("file:///etc/passwd", "must be an https:// URL"),
        ("https:///nohost", "must be an https:// URL"),
        ("https://user:pw@hooks.example.com/x", "must not carry user information"),
        ("https://hooks.example.com/x#frag", "must not have a fragment"),
        ("https://hooks.example.com:99999/x", "is not a valid URL"),
        (
            "https://hooks.example.com/a b",
            "must be a URL of at most 2048 characters without spaces",
        ),
    ],
)
def test_refused_webhook_urls(url: str, problem: str) -> None:
    assert check_webhook_url(url) == problem


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"tool":"lookup","input":{},"call_id":"CA1","assistant":"a"}'
    expected = hmac.new(b"k", b"1764450000." + body, hashlib.sha256).hexdigest()
    assert signature(b"k", 1764450000, body) == "v1=" + expected
    assert signed_headers(b"k", 1764450000, body) == {
        TIMESTAMP_HEADER: "1764450000",
        SIGNATURE_HEADER: "v1=" + expected,
    }


def test_verify_signature_accepts_the_signed_request_only() -> None:
    body = request_body(tool="t", arguments={"a": 1}, call_id="c", assistant="x")
    sig = signature(b"secret", 1000, body)
    assert verify_signature(b"secret", "1000", body, sig, now=1100)
    assert not verify_signature(b"other", "1000", body, sig, now=1100)  # wrong secret
    assert not verify_signature(b"secret", "1000", body + b" ", sig, now=1100)  # body changed
    assert not verify_signature(b"secret", "1001", body, sig, now=1100)  # timestamp changed
    assert not verify_signature(b"secret", "1000", body, sig, now=1000 + 301)  # replayed late
    assert not verify_signature(b"secret", "-1000", body, sig, now=1000)
    assert not verify_signature(b"secret", "", body, sig, now=1000)


def test_request_body_is_compact_json_in_a_fixed_shape() -> None:
    body = request_body(tool="t", arguments={"day": "lundi é"}, call_id="CA1", assistant="a")
    assert body == '{"tool":"t","input":{"day":"lundi é"},"call_id":"CA1","assistant":"a"}'.encode()


def test_parse_response() -> None:
    assert parse_response(200, b'{"content":"ok"}') == WebhookReply("ok")
    assert parse_response(201, b'{"content":"x","is_error":true}') == WebhookReply("x", True)
    for status, body in [
        (204, b""),
        (200, b'{"content":1}'),
        (200, b'{"content":"x","is_error":"yes"}'),
        (301, b'{"content":"x"}'),
        (200, b'{"content":"' + b"a" * (16 * 1024) + b'"}'),
    ]:
        with pytest.raises(WebhookResponseInvalid):
            parse_response(status, body)
