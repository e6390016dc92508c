"""Twilio Media Streams dialect: a scripted call, every error case and its close code."""

from __future__ import annotations

import json

import pytest

from actors.audio_codec import Encoding, MediaFormat
from actors.errors import (
    CarrierBadPayload,
    CarrierError,
    CarrierForbidden,
    CarrierLocalError,
    CarrierMalformedMessage,
    CarrierMessageTooBig,
    CarrierStreamMismatch,
    CarrierUnexpectedMessage,
    CarrierUnsupportedMedia,
    CarrierWrongFrameType,
)
from sessions.dialects import (
    AudioReceived,
    CallStarted,
    CallStopped,
    ClearAudio,
    DtmfReceived,
    MarkPlayed,
    SendAudio,
    SendMark,
    StreamState,
    TwilioDialect,
)
from tests.dialects import samples


def state_of(d: TwilioDialect) -> StreamState:
    """Read the state through a call, so the type checker does not pin it."""
    return d.state


def test_scripted_call() -> None:
    d = TwilioDialect(path="/twilio/esther", default_assistant="fallback")
    assert d.receive_text(samples.twilio_connected()) == []
    assert d.state is StreamState.CONNECTED
    [started] = d.receive_text(samples.twilio_start({"assistant": "other", "token": "t1"}))
    assert started == CallStarted(
        carrier="twilio",
        call_id=samples.CALL_SID,
        stream_id=samples.STREAM_SID,
        assistant="esther",  # the path wins over customParameters
        media_format=MediaFormat(Encoding.MULAW, 8000),
        frame_bytes=160,
        custom_parameters={"assistant": "other", "token": "t1"},
        account_id=samples.ACCOUNT_SID,
    )
    frame = bytes(range(160))
    assert d.receive_text(samples.twilio_media(2, 1, frame)) == [
        AudioReceived(payload=frame, sequence=2, timestamp_ms=0)
    ]
    assert d.receive_text(samples.twilio_media(3, 2, frame)) == [
        AudioReceived(payload=frame, sequence=3, timestamp_ms=20)
    ]
    assert d.receive_text(samples.twilio_dtmf(4, "#")) == [DtmfReceived(digit="#")]

    [out] = d.send(SendAudio(payload=b"\xff" * 160))
    assert isinstance(out, str)
    assert json.loads(out) == {
        "event": "media",
        "streamSid": samples.STREAM_SID,
        "media": {"payload": "/" * 212 + "/w=="},
    }
    [mark] = d.send(SendMark(name="turn-1"))
    assert json.loads(mark) == {
        "event": "mark",
        "streamSid": samples.STREAM_SID,
        "mark": {"name": "turn-1"},
    }
    assert d.pending_marks == ["turn-1"]
    [clear] = d.send(ClearAudio())
    assert json.loads(clear) == {"event": "clear", "streamSid": samples.STREAM_SID}
    assert d.pending_marks == ["turn-1"]  # Twilio echoes pending marks after a clear
    assert d.receive_text(samples.twilio_mark(5, "turn-1")) == [MarkPlayed(name="turn-1")]
    assert d.pending_marks == []
    assert d.receive_text(samples.twilio_stop(6)) == [CallStopped(reason="stop")]
    assert state_of(d) is StreamState.STOPPED
    assert d.send(SendAudio(payload=b"\xff")) == []
    assert d.receive_close() == []


def test_assistant_from_custom_parameters_then_default() -> None:
    d = TwilioDialect(path="/twilio", default_assistant="fallback")
    [s] = d.receive_text(samples.twilio_start({"assistant": "support-agent"}))
    assert isinstance(s, CallStarted) and s.assistant == "support-agent"
    d = TwilioDialect(path="/twilio/", default_assistant="fallback")
    [s] = d.receive_text(samples.twilio_start({}))
    assert isinstance(s, CallStarted) and s.assistant == "fallback"
    d = TwilioDialect(path="/twilio/..%2Fetc%2Fpasswd")
    [s] = d.receive_text(samples.twilio_start({}))
    # Handed on undecorated: the prompt path refuses hostile names itself.
    assert isinstance(s, CallStarted) and s.assistant == "../etc/passwd"


def test_signed_upgrade_binds_the_assistant_to_the_signed_path() -> None:
    """Finding 2 of issue 9: after a signature check the assistant came from the unsigned
    customParameters. Signed, only the path (or the default) can choose it."""

    def signed(path: str) -> TwilioDialect:
        return TwilioDialect(
            path=path, default_assistant="fallback", assistant_from_parameters=False
        )

    d = signed("/twilio/esther")
    [s] = d.receive_text(samples.twilio_start({"assistant": "esther", "token": "t1"}))
    assert isinstance(s, CallStarted) and s.assistant == "esther"
    d = signed("/twilio")
    [s] = d.receive_text(samples.twilio_start({"token": "t1"}))
    assert isinstance(s, CallStarted) and s.assistant == "fallback"
    for path in ("/twilio", "/twilio/esther"):
        d = signed(path)
        with pytest.raises(CarrierForbidden) as info:
            d.receive_text(samples.twilio_start({"assistant": "support-agent"}))
        assert info.value.close_code == 4403


def test_numbers_as_numbers_are_accepted_and_gaps_passed_on(twilio: TwilioDialect) -> None:
    msg = json.loads(samples.twilio_media(2, 1, b"\x00"))
    msg["sequenceNumber"] = 2
    msg["media"]["timestamp"] = 40
    [ev] = twilio.receive_text(json.dumps(msg))
    assert ev == AudioReceived(payload=b"\x00", sequence=2, timestamp_ms=40)
    [gap] = twilio.receive_text(samples.twilio_media(9, 2, b"\x00"))
    assert isinstance(gap, AudioReceived) and gap.sequence == 9


def test_outbound_track_echo_is_ignored(twilio: TwilioDialect) -> None:
    assert twilio.receive_text(samples.twilio_media(2, 1, b"\x01", track="outbound")) == []


def test_unknown_events_and_unmatched_marks_are_ignored(twilio: TwilioDialect) -> None:
    assert twilio.receive_text('{"event": "somethingNew", "x": 1}') == []
    assert twilio.receive_text(samples.twilio_mark(2, "never-sent")) == []


def test_socket_close_without_stop() -> None:
    d = TwilioDialect()
    assert d.receive_close() == [CallStopped(reason="closed")]
    assert d.state is StreamState.STOPPED


MEDIA = json.loads(samples.twilio_media(2, 1, b"\x00" * 160))


def _with(path: tuple[str, ...], value: object) -> str:
    msg = json.loads(json.dumps(MEDIA))
    node = msg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(msg)


@pytest.mark.parametrize(
    ("text", "error", "code"),
    [
        ("not json", CarrierMalformedMessage, 4001),
        ('["event"]', CarrierMalformedMessage, 4001),
        ('{"no": "event"}', CarrierMalformedMessage, 4001),
        ('{"event": 5}', CarrierMalformedMessage, 4001),
        ("[" * 100_000, CarrierMessageTooBig, 4005),
        ("[" * 60_000, CarrierMalformedMessage, 4001),
        (_with(("media", "payload"), "***"), CarrierBadPayload, 4002),
        (_with(("media", "payload"), "AAA"), CarrierBadPayload, 4002),
        (_with(("media", "payload"), 7), CarrierMalformedMessage, 4001),
        (_with(("media",), "x"), CarrierMalformedMessage, 4001),
        (_with(("sequenceNumber",), "two"), CarrierMalformedMessage, 4001),
        (_with(("sequenceNumber",), "-2"), CarrierMalformedMessage, 4001),
        (_with(("sequenceNumber",), True), CarrierMalformedMessage, 4001),
        (_with(("sequenceNumber",), "9" * 40), CarrierMalformedMessage, 4001),
        (_with(("media", "timestamp"), "1.5"), CarrierMalformedMessage, 4001),
        (_with(("streamSid",), "MZother"), CarrierStreamMismatch, 4007),
        (samples.twilio_start(), CarrierUnexpectedMessage, 4003),
        (samples.twilio_connected(), CarrierUnexpectedMessage, 4003),
        (samples.twilio_dtmf(2, "x"), CarrierMalformedMessage, 4001),
        (samples.twilio_mark(2, ""), CarrierMalformedMessage, 4001),
    ],
)
def test_errors_while_streaming(
    twilio: TwilioDialect, text: str, error: type[CarrierError], code: int
) -> None:
    with pytest.raises(error) as info:
        twilio.receive_text(text)
    assert info.value.close_code == code
    assert info.value.reason


@pytest.mark.parametrize(
    "text",
    [
        samples.twilio_media(2, 1, b"\x00"),
        samples.twilio_dtmf(2, "1"),
        samples.twilio_mark(2, "m"),
        samples.twilio_stop(2),
    ],
)
def test_messages_before_start_are_out_of_order(text: str) -> None:
    d = TwilioDialect()
    d.receive_text(samples.twilio_connected())
    with pytest.raises(CarrierUnexpectedMessage) as info:
        d.receive_text(text)
    assert info.value.close_code == 4003


def test_anything_after_stop_is_out_of_order(twilio: TwilioDialect) -> None:
    twilio.receive_text(samples.twilio_stop(2))
    with pytest.raises(CarrierUnexpectedMessage):
        twilio.receive_text(samples.twilio_media(3, 1, b"\x00"))


@pytest.mark.parametrize(
    "fmt",
    [{"encoding": "audio/x-l16"}, {"sampleRate": 16000}, {"channels": 2}],
)
def test_unsupported_media_format(fmt: dict[str, object]) -> None:
    d = TwilioDialect()
    with pytest.raises(CarrierUnsupportedMedia) as info:
        d.receive_text(samples.twilio_start(fmt=fmt))
    assert info.value.close_code == 4006


def test_malformed_start() -> None:
    start = json.loads(samples.twilio_start())
    del start["start"]["callSid"]
    with pytest.raises(CarrierMalformedMessage):
        TwilioDialect().receive_text(json.dumps(start))
    start = json.loads(samples.twilio_start({"nested": {"a": 1}}))
    with pytest.raises(CarrierMalformedMessage):
        TwilioDialect().receive_text(json.dumps(start))
    start = json.loads(samples.twilio_start())
    start["streamSid"] = "MZdifferent"
    with pytest.raises(CarrierStreamMismatch):
        TwilioDialect().receive_text(json.dumps(start))


def test_binary_frame_is_the_wrong_type(twilio: TwilioDialect) -> None:
    with pytest.raises(CarrierWrongFrameType) as info:
        twilio.receive_bytes(b"\xff" * 160)
    assert info.value.close_code == 4004


def test_oversized_message() -> None:
    d = TwilioDialect(max_message_chars=1000)
    with pytest.raises(CarrierMessageTooBig) as info:
        d.receive_text(" " * 1001)
    assert info.value.close_code == 4005


def test_local_misuse() -> None:
    d = TwilioDialect()
    with pytest.raises(CarrierLocalError) as info:
        d.send(SendAudio(payload=b"\xff"))
    assert info.value.close_code == 4010
    d.receive_text(samples.twilio_start())
    d.send(SendMark(name="a"))
    with pytest.raises(CarrierLocalError):
        d.send(SendMark(name="a"))
    with pytest.raises(CarrierLocalError):
        d.send(SendMark(name=""))
    assert d.send(SendAudio(payload=b"")) == []
