"""Fixtures for the simulated-carrier tests: carrier-side builders with fixed ids."""

from __future__ import annotations

import pytest

from devkit.simcall import AsteriskCaller, TwilioCaller

STREAM_SID = "MZ" + "0" * 31 + "1"
CALL_SID = "CA" + "0" * 31 + "2"


@pytest.fixture
def twilio_caller() -> TwilioCaller:
    """Twilio's side of one stream."""
    return TwilioCaller(stream_sid=STREAM_SID, call_sid=CALL_SID, custom_parameters={"a": "b"})


@pytest.fixture(params=["ulaw", "slin16"])
def asterisk_caller(request: pytest.FixtureRequest) -> AsteriskCaller:
    """Asterisk's side of one channel, JSON control, in each media format."""
    return AsteriskCaller(connection_id="c0nn", channel_id="1761.1", format_name=request.param)
