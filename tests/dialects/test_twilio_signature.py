"""X-Twilio-Signature: twilio-python's published vectors, then the WebSocket upgrade."""

from __future__ import annotations

import pytest

from actors.errors import CarrierForbidden, CarrierUnauthorized
from sessions.dialects import compute_signature, validate_twilio_upgrade

# From twilio/twilio-python tests/unit/test_request_validator.py.
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


def test_twilio_python_vector() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_python_vector_with_duplicate_params() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_twilio_python_port_vectors() -> None:
    with_443 = URL.replace(".com", ".com:443")
    assert compute_signature(TOKEN, with_443, PARAMS) == "kvajT1Ptam85bY51eRf/AJRuM3w="
    http_80 = URL.replace("https", "http").replace(".com", ".com:80")
    assert compute_signature(TOKEN, http_80, PARAMS) == "0ZXoZLH/DfblKGATFgpif+LLRf4="


AUTH = "0123456789abcdef0123456789abcdef"
PUBLIC = "wss://voice.example.com"


def headers(signature: str | None) -> list[tuple[bytes, bytes]]:
    h = [(b"host", b"internal:8080"), (b"upgrade", b"websocket")]
    if signature is not None:
        h.append((b"x-twilio-signature", signature.encode()))
    return h


def test_valid_upgrade_signature() -> None:
    sig = compute_signature(AUTH, "wss://voice.example.com/twilio/esther")
    validate_twilio_upgrade(
        auth_tokens=[AUTH], public_url=PUBLIC, path="/twilio/esther", headers=headers(sig)
    )
    # The same URL signed with the default port spelled out is accepted too.
    sig443 = compute_signature(AUTH, "wss://voice.example.com:443/twilio/esther")
    validate_twilio_upgrade(
        auth_tokens=[AUTH], public_url=PUBLIC + "/", path="/twilio/esther", headers=headers(sig443)
    )


def test_default_port_is_accepted_absent_or_spelled_out() -> None:
    for signed in (
        "wss://voice.example.com/twilio/esther",
        "wss://voice.example.com:443/twilio/esther",
    ):
        sig = compute_signature(AUTH, signed)
        for public in (PUBLIC, "wss://voice.example.com:443"):
            validate_twilio_upgrade(
                auth_tokens=[AUTH], public_url=public, path="/twilio/esther", headers=headers(sig)
            )
    # Another port is another URL.
    sig8443 = compute_signature(AUTH, "wss://voice.example.com:8443/twilio/esther")
    with pytest.raises(CarrierForbidden):
        validate_twilio_upgrade(
            auth_tokens=[AUTH], public_url=PUBLIC, path="/twilio/esther", headers=headers(sig8443)
        )


def test_a_query_is_never_folded_into_the_signed_path() -> None:
    """Finding 2 of issue 9: a signature for /twilio/esther opened /twilio/?e=sther
    (the query was folded in as parameters: "/twilio/" + "e" + "sther")."""
    sig = compute_signature(AUTH, PUBLIC + "/twilio/esther")
    for path in ("/twilio/?e=sther", "/twilio?/esther=", "/twilio/esther?", "/twilio/esther?x=1"):
        with pytest.raises(CarrierForbidden, match="query string"):
            validate_twilio_upgrade(
                auth_tokens=[AUTH], public_url=PUBLIC, path=path, headers=headers(sig)
            )


def test_a_query_is_refused_even_when_signed_as_written() -> None:
    path = "/twilio/esther?tenant=a"
    sig = compute_signature(AUTH, PUBLIC + path)
    with pytest.raises(CarrierForbidden, match="query string") as info:
        validate_twilio_upgrade(
            auth_tokens=[AUTH], public_url=PUBLIC, path=path, headers=headers(sig)
        )
    assert info.value.http_status == 403


def test_any_token_of_the_list_is_accepted() -> None:
    """Finding 3 of issue 9: rotating the secondary token to primary needs both accepted."""
    primary, secondary = AUTH, "fedcba9876543210fedcba9876543210"
    tokens = [primary, secondary]
    for token in tokens:
        sig = compute_signature(token, PUBLIC + "/twilio/esther")
        validate_twilio_upgrade(
            auth_tokens=tokens, public_url=PUBLIC, path="/twilio/esther", headers=headers(sig)
        )
    stranger = compute_signature("not-one-of-ours-123", PUBLIC + "/twilio/esther")
    with pytest.raises(CarrierForbidden):
        validate_twilio_upgrade(
            auth_tokens=tokens, public_url=PUBLIC, path="/twilio/esther", headers=headers(stranger)
        )


def test_a_shared_key_signature_is_refused_with_its_reason() -> None:
    sig = compute_signature(AUTH, PUBLIC + "/twilio/esther")
    h = [*headers(sig), (b"X-Twilio-Webhooks-Signature-Settings", b"key=k1,algorithm=HMAC_SHA256")]
    with pytest.raises(CarrierForbidden, match="SharedKey"):
        validate_twilio_upgrade(
            auth_tokens=[AUTH], public_url=PUBLIC, path="/twilio/esther", headers=h
        )


def test_no_token_configured_refuses() -> None:
    sig = compute_signature(AUTH, PUBLIC + "/twilio/esther")
    with pytest.raises(CarrierUnauthorized):
        validate_twilio_upgrade(
            auth_tokens=[], public_url=PUBLIC, path="/twilio/esther", headers=headers(sig)
        )


def test_tampered_url_is_forbidden() -> None:
    sig = compute_signature(AUTH, "wss://voice.example.com/twilio/esther")
    with pytest.raises(CarrierForbidden) as info:
        validate_twilio_upgrade(
            auth_tokens=[AUTH],
            public_url=PUBLIC,
            path="/twilio/support-agent",
            headers=headers(sig),
        )
    assert (info.value.http_status, info.value.close_code) == (403, 4403)
    with pytest.raises(CarrierForbidden):
        validate_twilio_upgrade(
            auth_tokens=[AUTH],
            public_url="wss://evil.example.com",
            path="/twilio/esther",
            headers=headers(sig),
        )


def test_tampered_token_is_forbidden() -> None:
    sig = compute_signature(AUTH[::-1], "wss://voice.example.com/twilio/esther")
    with pytest.raises(CarrierForbidden):
        validate_twilio_upgrade(
            auth_tokens=[AUTH], public_url=PUBLIC, path="/twilio/esther", headers=headers(sig)
        )


@pytest.mark.parametrize("bad", ["", "not base64 at all", "é"])
def test_garbage_signature_is_refused(bad: str) -> None:
    with pytest.raises((CarrierForbidden, CarrierUnauthorized)):
        validate_twilio_upgrade(
            auth_tokens=[AUTH],
            public_url=PUBLIC,
            path="/twilio",
            headers=[("X-Twilio-Signature", bad)],
        )


def test_missing_header_is_unauthorized() -> None:
    with pytest.raises(CarrierUnauthorized) as info:
        validate_twilio_upgrade(
            auth_tokens=[AUTH], public_url=PUBLIC, path="/twilio", headers=headers(None)
        )
    assert (info.value.http_status, info.value.close_code) == (401, 4401)
