"""Signer unit tests: request headers, chain continuity, end frame, UTC midnight, refusal."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from actors.errors import LocalProtocolError, SigningError
from actors.sonic.eventstream import Header, decode_message, encode_message
from actors.sonic.signing import (
    Credentials,
    EventSigner,
    chunk_signature,
    event_string_to_sign,
    request_path,
    sign_request,
    signing_key,
    verify_outer_message,
)

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TOKEN_CREDS = Credentials("ASIAEXAMPLE", "secret/key+", session_token="to+ken/==")
NOW = datetime(2025, 11, 3, 14, 22, 5, 117000, tzinfo=UTC)
PATH = request_path("amazon.nova-2-sonic-v1:0")
HOST = "bedrock-runtime.us-east-1.amazonaws.com"


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _inner(text: str) -> bytes:
    return encode_message([Header.string(":event-type", "chunk")], text.encode())


def test_request_path_encodes_the_model_id() -> None:
    assert PATH == "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"


def test_header_order_without_and_with_session_token() -> None:
    plain = sign_request(credentials=CREDS, region="us-east-1", host=HOST, path=PATH, now=NOW)
    assert [name for name, _ in plain.headers] == [
        "content-type",
        "x-amz-date",
        "x-amz-content-sha256",
        "authorization",
    ]
    token = sign_request(credentials=TOKEN_CREDS, region="us-west-2", host=HOST, path=PATH, now=NOW)
    assert [name for name, _ in token.headers] == [
        "content-type",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "authorization",
    ]
    values = dict(token.headers)
    assert values["x-amz-security-token"] == "to+ken/=="
    assert values["x-amz-date"] == "20251103T142205Z"
    assert values["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20251103/us-west-2/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
        "Signature="
    )
    assert values["authorization"].endswith(token.signature)
    assert len(token.signature) == 64


def test_same_as_botocore_add_auth_with_its_clock_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    # Our clock-injected path must equal botocore's own add_auth for the same instant.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(
        method="POST",
        url=f"https://{HOST}{PATH}",
        headers={
            "content-type": "application/vnd.amazon.eventstream",
            "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-EVENTS",
        },
    )
    botocore.auth.SigV4Auth(
        ReadOnlyCredentials("ASIAEXAMPLE", "secret/key+", "to+ken/=="), "bedrock", "us-west-2"
    ).add_auth(request)
    ours = dict(
        sign_request(
            credentials=TOKEN_CREDS, region="us-west-2", host=HOST, path=PATH, now=NOW
        ).headers
    )
    assert ours["authorization"] == request.headers["Authorization"]


def test_canonical_request_double_encodes_and_signs_host_port() -> None:
    signed = sign_request(
        credentials=CREDS, region="us-east-1", host="127.0.0.1:8443", path=PATH + "?", now=NOW
    )
    lines = signed.canonical_request.split("\n")
    assert lines[1] == "/model/amazon.nova-2-sonic-v1%253A0/invoke-with-bidirectional-stream"
    assert lines[2] == ""
    assert "host:127.0.0.1:8443" in lines
    assert lines[-1] == "STREAMING-AWS4-HMAC-SHA256-EVENTS"
    explicit_443 = sign_request(
        credentials=CREDS, region="us-east-1", host=f"{HOST}:443", path=PATH, now=NOW
    )
    assert f"host:{HOST}:443" in explicit_443.canonical_request.split("\n")


def test_request_signature_depends_on_the_injected_clock_only() -> None:
    def sign(now: datetime) -> str:
        return sign_request(
            credentials=CREDS, region="us-east-1", host=HOST, path=PATH, now=now
        ).signature

    assert sign(NOW) == sign(NOW.replace(microsecond=999000))
    assert sign(NOW) == sign(NOW.astimezone(datetime.now().astimezone().tzinfo))
    assert sign(NOW) != sign(NOW + timedelta(seconds=1))


def test_request_refuses_naive_clock_and_expired_credentials() -> None:
    with pytest.raises(SigningError, match="timezone"):
        sign_request(
            credentials=CREDS,
            region="us-east-1",
            host=HOST,
            path=PATH,
            now=NOW.replace(tzinfo=None),
        )
    expired = Credentials("AKID", "s", session_token="t", expiry=NOW - timedelta(seconds=1))
    with pytest.raises(SigningError, match="expired"):
        sign_request(credentials=expired, region="us-east-1", host=HOST, path=PATH, now=NOW)
    fresh = Credentials("AKID", "s", session_token="t", expiry=NOW + timedelta(minutes=5))
    sign_request(credentials=fresh, region="us-east-1", host=HOST, path=PATH, now=NOW)


def test_chain_continuity() -> None:
    seed = "ab" * 32
    signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature=seed)
    prior = seed
    base = _ms(NOW)
    for i in range(5):
        inner = _inner(f"event {i}")
        outer = signer.sign(inner, base + i * 32)
        message = decode_message(outer)
        assert [h.name for h in message.headers] == [":date", ":chunk-signature"]
        assert message.get(":date") == base + i * 32
        assert message.payload == inner
        expected = chunk_signature(
            credentials=CREDS,
            region="us-east-1",
            prior_signature=prior,
            date_ms=base + i * 32,
            payload=inner,
        )
        assert message.get(":chunk-signature") == expected
        verified = verify_outer_message(
            credentials=CREDS, region="us-east-1", prior_signature=prior, outer=outer
        )
        assert verified.inner == inner
        prior = expected.hex()
        assert signer.prior_signature == prior
    end = decode_message(signer.sign_end(base + 1000))
    assert end.payload == b""
    assert end.get(":chunk-signature") == chunk_signature(
        credentials=CREDS,
        region="us-east-1",
        prior_signature=prior,
        date_ms=base + 1000,
        payload=b"",
    )


def test_the_same_event_signs_differently_at_each_position() -> None:
    signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature="00" * 32)
    inner = _inner("same")
    first = decode_message(signer.sign(inner, _ms(NOW))).get(":chunk-signature")
    second = decode_message(signer.sign(inner, _ms(NOW))).get(":chunk-signature")
    assert first != second


def test_verify_rejects_broken_chain_or_tampering() -> None:
    signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature="00" * 32)
    outer = signer.sign(_inner("x"), _ms(NOW))
    with pytest.raises(SigningError):
        verify_outer_message(
            credentials=CREDS, region="us-east-1", prior_signature="11" * 32, outer=outer
        )
    with pytest.raises(SigningError):
        verify_outer_message(
            credentials=Credentials("AKIDEXAMPLE", "other"),
            region="us-east-1",
            prior_signature="00" * 32,
            outer=outer,
        )
    unsigned = encode_message([Header.timestamp(":date", 1)], b"")
    with pytest.raises(SigningError, match="chunk-signature"):
        verify_outer_message(
            credentials=CREDS, region="us-east-1", prior_signature="00" * 32, outer=unsigned
        )


def test_end_frame_then_refusal() -> None:
    signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature="00" * 32)
    signer.sign(_inner("x"), _ms(NOW))
    ended_before = signer.ended
    signer.sign_end(_ms(NOW))
    assert (ended_before, signer.ended) == (False, True)
    with pytest.raises(LocalProtocolError):
        signer.sign(_inner("late"), _ms(NOW))
    with pytest.raises(LocalProtocolError):
        signer.sign_end(_ms(NOW))


def test_utc_midnight_changes_the_signing_key() -> None:
    before = _ms(datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
    after = before + 1  # 2026-01-01T00:00:00.000Z
    secret = CREDS.secret_access_key
    signer = EventSigner(credentials=CREDS, region="eu-north-1", seed_signature="cd" * 32)
    prior = signer.prior_signature
    inner = _inner("across midnight")

    first = decode_message(signer.sign(inner, before)).get(":chunk-signature")
    sts = event_string_to_sign(
        region="eu-north-1", service="bedrock", prior_signature=prior, date_ms=before, payload=inner
    )
    assert sts.split("\n")[1:3] == [
        "20251231T235959Z",
        "20251231/eu-north-1/bedrock/aws4_request",
    ]
    key_31 = signing_key(secret, "20251231", "eu-north-1", "bedrock")
    assert first == hmac.digest(key_31, sts.encode(), "sha256")

    prior = signer.prior_signature
    second = decode_message(signer.sign(inner, after)).get(":chunk-signature")
    sts = event_string_to_sign(
        region="eu-north-1", service="bedrock", prior_signature=prior, date_ms=after, payload=inner
    )
    assert sts.split("\n")[1:3] == ["20260101T000000Z", "20260101/eu-north-1/bedrock/aws4_request"]
    key_01 = signing_key(secret, "20260101", "eu-north-1", "bedrock")
    assert key_01 != key_31
    assert second == hmac.digest(key_01, sts.encode(), "sha256")
    assert second != hmac.digest(key_31, sts.encode(), "sha256")

    # A clock stepping back over midnight must not reuse the newer day's key.
    prior = signer.prior_signature
    third = decode_message(signer.sign(inner, before)).get(":chunk-signature")
    assert third == chunk_signature(
        credentials=CREDS, region="eu-north-1", prior_signature=prior, date_ms=before, payload=inner
    )


def test_date_header_hash_is_over_the_15_encoded_bytes() -> None:
    date_ms = 1762179725121
    sts = event_string_to_sign(
        region="us-east-1", service="bedrock", prior_signature="", date_ms=date_ms, payload=b""
    )
    encoded = b"\x05:date\x08" + date_ms.to_bytes(8, "big")
    assert len(encoded) == 15
    assert sts.split("\n")[4] == hashlib.sha256(encoded).hexdigest()
    assert sts.split("\n")[5] == hashlib.sha256(b"").hexdigest()
