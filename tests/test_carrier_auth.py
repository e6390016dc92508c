"""The per-carrier authentication decision, sans-IO (sessions/carrier_auth.py)."""

from __future__ import annotations

from base64 import b64encode

import pytest

from actors.errors import CarrierAuthError, CarrierForbidden, CarrierUnauthorized
from sessions.carrier_auth import CarrierAuth
from sessions.config import settings_from_mapping
from sessions.dialects.twilio_signature import compute_signature

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "wss://voice.example.com"
BASIC = ("asterisk", "s3cret-pass")


def twilio_sig(path: str, token: str = TOKEN) -> list[tuple[bytes, bytes]]:
    return [(b"x-twilio-signature", compute_signature(token, PUBLIC + path).encode())]


def basic_header(user: str = BASIC[0], password: str = BASIC[1]) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + b64encode(f"{user}:{password}".encode()))]


TWILIO_ONLY = CarrierAuth(twilio_auth_tokens=(TOKEN,), twilio_public_url=PUBLIC)
BOTH = CarrierAuth(twilio_auth_tokens=(TOKEN,), twilio_public_url=PUBLIC, asterisk_basic_auth=BASIC)


def test_twilio_credentials_do_not_open_the_asterisk_route() -> None:
    """Finding 1 of issue 9: with only TWILIO_AUTH_TOKEN set, /asterisk/esther upgraded
    with no Authorization header at all."""
    with pytest.raises(CarrierUnauthorized, match="ASTERISK_BASIC_AUTH") as info:
        TWILIO_ONLY.check("asterisk", "/asterisk/esther", [])
    assert info.value.http_status == 401
    # Nor does a valid Twilio signature, even one made for the Asterisk path.
    with pytest.raises(CarrierUnauthorized):
        TWILIO_ONLY.check("asterisk", "/asterisk/esther", twilio_sig("/asterisk/esther"))


def test_asterisk_credentials_do_not_open_the_twilio_route() -> None:
    asterisk_only = CarrierAuth(asterisk_basic_auth=BASIC)
    with pytest.raises(CarrierUnauthorized, match="TWILIO_AUTH_TOKEN"):
        asterisk_only.check("twilio", "/twilio/esther", [])
    with pytest.raises(CarrierUnauthorized):
        asterisk_only.check("twilio", "/twilio/esther", basic_header())


def test_each_carrier_is_checked_with_its_own_credentials_only() -> None:
    BOTH.check("twilio", "/twilio/esther", twilio_sig("/twilio/esther"))
    BOTH.check("asterisk", "/asterisk/esther", basic_header())
    with pytest.raises(CarrierAuthError):
        BOTH.check("twilio", "/twilio/esther", basic_header())
    with pytest.raises(CarrierUnauthorized):
        BOTH.check("asterisk", "/asterisk/esther", twilio_sig("/asterisk/esther"))
    # Both headers at once: each route still looks only at its own.
    both_headers = twilio_sig("/asterisk/esther") + basic_header("asterisk", "wrong")
    with pytest.raises(CarrierUnauthorized):
        BOTH.check("asterisk", "/asterisk/esther", both_headers)


def test_no_credentials_anywhere_is_open() -> None:
    # A development daemon; start-up refuses this beyond loopback without --insecure.
    open_daemon = CarrierAuth()
    open_daemon.check("twilio", "/twilio/esther", [])
    open_daemon.check("asterisk", "/asterisk/esther", [])


def test_signed_twilio_route_refuses_a_query_string() -> None:
    with pytest.raises(CarrierForbidden, match="query string") as info:
        TWILIO_ONLY.check("twilio", "/twilio/?e=sther", twilio_sig("/twilio/esther"))
    assert info.value.http_status == 403


def test_token_list_from_the_environment_rotates() -> None:
    second = "fedcba9876543210fedcba9876543210"
    adm = settings_from_mapping(
        {"TWILIO_AUTH_TOKEN": f"{TOKEN}, {second}", "TWILIO_PUBLIC_URL": PUBLIC}
    ).admission
    auth = CarrierAuth.from_admission(adm)
    assert auth.twilio_auth_tokens == (TOKEN, second)
    for token in (TOKEN, second):
        auth.check("twilio", "/twilio/esther", twilio_sig("/twilio/esther", token))


def test_enabled_carriers_follow_the_setting() -> None:
    auth = CarrierAuth.from_admission(settings_from_mapping({"CARRIERS": "asterisk"}).admission)
    assert auth.enabled("asterisk") and not auth.enabled("twilio")
    default = CarrierAuth.from_admission(settings_from_mapping({}).admission)
    assert default.carriers == ("twilio", "asterisk")
