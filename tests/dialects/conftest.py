"""Fixtures for the carrier dialect tests: fresh dialects, already past their handshake."""

from __future__ import annotations

import pytest

from sessions.dialects import AsteriskDialect, MarksMode, TwilioDialect
from tests.dialects import samples


@pytest.fixture
def twilio() -> TwilioDialect:
    """A Twilio dialect that has seen ``connected`` and ``start``."""
    d = TwilioDialect(path="/twilio", default_assistant="esther")
    d.receive_text(samples.twilio_connected())
    d.receive_text(samples.twilio_start())
    return d


@pytest.fixture
def asterisk_ulaw() -> AsteriskDialect:
    """An Asterisk dialect (plain-text control, marks forced on) streaming ulaw."""
    d = AsteriskDialect(path="/asterisk/support-agent", marks=MarksMode.ON)
    d.receive_text(samples.asterisk_media_start_plain())
    return d
