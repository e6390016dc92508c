"""The close-code table: carriers and operators alert on these numbers, so they never move."""

from __future__ import annotations

from actors.close_codes import CloseCode
from actors.errors import (
    CarrierAudioFlood,
    CarrierForbidden,
    CarrierUnauthorized,
    InvalidAssistantName,
    PromptAccessDenied,
    PromptNotFound,
    PromptTimeout,
    SonicHTTPError,
    SonicStreamError,
    SonicTimeout,
)

PUBLISHED = {
    "NORMAL": 1000, "GOING_AWAY": 1001, "MESSAGE_TOO_BIG": 1009, "INTERNAL_ERROR": 1011,
    "CARRIER_PROTOCOL_ERROR": 4000, "CARRIER_MALFORMED_MESSAGE": 4001,
    "CARRIER_BAD_PAYLOAD": 4002, "CARRIER_UNEXPECTED_MESSAGE": 4003,
    "CARRIER_WRONG_FRAME_TYPE": 4004, "CARRIER_MESSAGE_TOO_BIG": 4005,
    "CARRIER_UNSUPPORTED_MEDIA": 4006, "CARRIER_STREAM_MISMATCH": 4007,
    "CARRIER_BUFFER_OVERFLOW": 4008, "CARRIER_AUDIO_FLOOD": 4009, "CARRIER_LOCAL_ERROR": 4010,
    "NO_ASSISTANT": 4100, "PROMPT_NOT_FOUND": 4104, "PROMPT_TIMEOUT": 4108,
    "PROMPT_STORE_FAILED": 4110, "SONIC_FAILED": 4200, "SONIC_THROTTLED": 4201,
    "SONIC_TIMEOUT": 4208, "SONIC_SESSION_ENDED": 4209, "START_TIMEOUT": 4300,
    "MAX_DURATION": 4301, "IDLE_TIMEOUT": 4302,
    "ASSISTANT_HANG_UP": 4310, "TRANSFERRED": 4311,
    "CARRIER_UNAUTHORIZED": 4401, "CARRIER_FORBIDDEN": 4403,
}  # fmt: skip


def test_every_code_keeps_its_published_value() -> None:
    assert {code.name: int(code) for code in CloseCode} == PUBLISHED


def test_every_code_is_documented_in_the_operators_table() -> None:
    import actors.close_codes as module

    doc = module.__doc__ or ""
    for code in CloseCode:
        assert f"{int(code)}  {code.name} " in doc


def test_errors_carry_the_code_their_call_ends_with() -> None:
    assert InvalidAssistantName("x", assistant="x").close_code == CloseCode.NO_ASSISTANT
    assert PromptNotFound("x", assistant="x").close_code == CloseCode.PROMPT_NOT_FOUND
    assert PromptTimeout("x", assistant="x").close_code == CloseCode.PROMPT_TIMEOUT
    assert PromptAccessDenied("x", assistant="x").close_code == CloseCode.PROMPT_STORE_FAILED
    assert SonicTimeout("x").close_code == CloseCode.SONIC_TIMEOUT
    assert SonicHTTPError(429, "ThrottlingException", "m").close_code == CloseCode.SONIC_THROTTLED
    assert SonicHTTPError(500, "InternalServerException", "m").close_code == CloseCode.SONIC_FAILED
    stream_timeout = SonicStreamError("modelTimeoutException", "m")
    assert stream_timeout.close_code == CloseCode.SONIC_SESSION_ENDED
    assert CarrierUnauthorized("r").close_code == CloseCode.CARRIER_UNAUTHORIZED
    assert CarrierForbidden("r").close_code == CloseCode.CARRIER_FORBIDDEN
    assert CarrierAudioFlood("r").close_code == CloseCode.CARRIER_AUDIO_FLOOD
