"""The ``HangUp`` command (the ``hang_up`` tool): Asterisk's HANGUP, nothing on Twilio."""

from __future__ import annotations

import json

from sessions.dialects.asterisk import AsteriskDialect
from sessions.dialects.base import HangUp
from sessions.dialects.twilio import TwilioDialect
from tests.dialects import samples


def test_asterisk_hang_up_is_the_hangup_command_in_both_formats() -> None:
    plain = AsteriskDialect()
    plain.receive_text(samples.asterisk_media_start_plain())
    assert plain.send(HangUp()) == ["HANGUP"]
    as_json = AsteriskDialect()
    as_json.receive_text(samples.asterisk_media_start_json())
    [command] = as_json.send(HangUp())
    assert isinstance(command, str)
    assert json.loads(command) == {"command": "HANGUP"}


def test_twilio_hang_up_sends_nothing_closing_the_stream_is_the_signal() -> None:
    d = TwilioDialect()
    d.receive_text(samples.twilio_connected())
    d.receive_text(samples.twilio_start())
    assert d.send(HangUp()) == []


def test_hang_up_after_the_stream_stopped_sends_nothing() -> None:
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_plain())
    d.receive_close(1000)
    assert d.send(HangUp()) == []
