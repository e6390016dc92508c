"""Both sides of each protocol agree: what the simulated carrier sends parses with the
daemon's own dialects, what the dialects send parses with the simulated carrier, and each
malformed message is refused by the dialect with the error it claims to provoke."""

from __future__ import annotations

import pytest

from actors.audio_codec import Encoding
from actors.errors import (
    CarrierBadPayload,
    CarrierError,
    CarrierMalformedMessage,
    CarrierMessageTooBig,
    CarrierWrongFrameType,
)
from devkit.simcall import (
    AssistantAudio,
    AsteriskCaller,
    ClearRequested,
    HangupRequested,
    MarkRequested,
    TwilioCaller,
)
from sessions.dialects import (
    AsteriskDialect,
    AudioReceived,
    CallStarted,
    CallStopped,
    ClearAudio,
    DtmfReceived,
    FlowPaused,
    FlowResumed,
    MarkPlayed,
    MarksMode,
    SendAudio,
    SendMark,
    TwilioDialect,
)
from tests.simcall.conftest import CALL_SID, STREAM_SID


def _feed(dialect: TwilioDialect | AsteriskDialect, message: str | bytes) -> list[object]:
    if isinstance(message, str):
        return list(dialect.receive_text(message))
    return list(dialect.receive_bytes(message))


def test_twilio_stream_parses_with_the_daemon_dialect(twilio_caller: TwilioCaller) -> None:
    d = TwilioDialect(path="/twilio/esther")
    assert _feed(d, twilio_caller.connected()) == []
    (started,) = _feed(d, twilio_caller.start())
    assert isinstance(started, CallStarted)
    assert (started.call_id, started.stream_id) == (CALL_SID, STREAM_SID)
    assert started.assistant == "esther" and started.custom_parameters == {"a": "b"}
    frames = [bytes([i]) * 160 for i in range(3)]
    audio = [e for f in frames for e in _feed(d, twilio_caller.media(f))]
    assert [a.payload for a in audio if isinstance(a, AudioReceived)] == frames
    assert [a.timestamp_ms for a in audio if isinstance(a, AudioReceived)] == [0, 20, 40]
    # Sequence numbers are exactly what Twilio sends: none skipped, none repeated.
    sequences = [a.sequence for a in audio if isinstance(a, AudioReceived)]
    assert sequences == list(range(sequences[0], sequences[0] + 3))
    assert _feed(d, twilio_caller.dtmf("5")) == [DtmfReceived(digit="5")]
    d.send(SendMark(name="m1"))
    assert _feed(d, twilio_caller.mark("m1")) == [MarkPlayed(name="m1")]
    assert _feed(d, twilio_caller.stop()) == [CallStopped(reason="stop")]


def test_twilio_daemon_commands_parse_as_carrier_events(twilio_caller: TwilioCaller) -> None:
    d = TwilioDialect()
    _feed(d, twilio_caller.connected())
    _feed(d, twilio_caller.start())
    out = []
    for command in (SendAudio(payload=b"\x01" * 320), SendMark(name="m"), ClearAudio()):
        for message in d.send(command):
            assert isinstance(message, str)
            out += twilio_caller.receive_text(message)
    assert out == [
        AssistantAudio(payload=b"\x01" * 320, seconds=0.04),
        MarkRequested(name="m"),
        ClearRequested(),
    ]


def test_twilio_caller_refuses_what_twilio_would(twilio_caller: TwilioCaller) -> None:
    with pytest.raises(CarrierWrongFrameType):
        twilio_caller.receive_bytes(b"\x00")
    with pytest.raises(CarrierError):
        twilio_caller.receive_text('{"event":"media","streamSid":"MZother","media":{}}')
    with pytest.raises(CarrierMalformedMessage):
        twilio_caller.receive_text(f'{{"event":"dance","streamSid":"{STREAM_SID}"}}')


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("bad_json", CarrierMalformedMessage),
        ("bad_base64", CarrierBadPayload),
        ("binary", CarrierWrongFrameType),
        ("oversized", CarrierMessageTooBig),
    ],
)
def test_twilio_malformed_kinds_provoke_their_error(
    twilio_caller: TwilioCaller, kind: str, error: type[CarrierError]
) -> None:
    d = TwilioDialect()
    _feed(d, twilio_caller.connected())
    _feed(d, twilio_caller.start())
    with pytest.raises(error):
        _feed(d, twilio_caller.malformed(kind))


@pytest.mark.parametrize("json_format", [True, False])
def test_asterisk_stream_parses_with_the_daemon_dialect(
    asterisk_caller: AsteriskCaller, json_format: bool
) -> None:
    caller = asterisk_caller
    caller.control_json = json_format
    caller.channel_variables = {"NOVAVOICE_ASSISTANT": "support-agent"}
    # Marks forced on: with plain text, auto would send none (the release is unknown).
    d = AsteriskDialect(path="/asterisk", marks=MarksMode.ON)
    early = caller.media(b"\x00" * caller.frame_bytes)
    assert _feed(d, early) == []  # audio before MEDIA_START is kept by the daemon
    events = _feed(d, caller.media_start())
    started = events[0]
    assert isinstance(started, CallStarted)
    assert started.frame_bytes == caller.frame_bytes
    assert started.media_format == caller.fmt
    assert started.call_id == "1761.1" and started.stream_id == "c0nn"
    # Channel variables travel only in the JSON format.
    assert started.assistant == ("support-agent" if json_format else None)
    assert [type(e) for e in events[1:]] == [AudioReceived]
    frame = caller.media(b"\x02" * caller.frame_bytes)
    assert _feed(d, frame) == [AudioReceived(payload=frame, sequence=2, timestamp_ms=20)]
    assert _feed(d, caller.xoff()) == [FlowPaused()]
    assert _feed(d, caller.xon()) == [FlowResumed()]
    assert _feed(d, caller.dtmf_end("#")) == [DtmfReceived(digit="#")]
    d.send(SendMark(name="m7"))
    assert _feed(d, caller.mark_processed("m7")) == [MarkPlayed(name="m7")]
    (status,) = _feed(d, caller.status(queue_length=3))
    assert getattr(status, "name", None) == "STATUS"


@pytest.mark.parametrize("json_format", [True, False])
def test_asterisk_daemon_commands_parse_as_carrier_events(
    asterisk_caller: AsteriskCaller, json_format: bool
) -> None:
    caller = asterisk_caller
    caller.control_json = json_format
    d = AsteriskDialect(marks=MarksMode.ON)
    _feed(d, caller.media_start())
    audio = b"\x04" * (caller.frame_bytes * 3 + 10)  # the dialect holds the odd tail
    out = []
    for command in (SendAudio(payload=audio), SendMark(name="m1"), ClearAudio()):
        for message in d.send(command):
            if isinstance(message, bytes):
                out += caller.receive_bytes(message)
            else:
                out += caller.receive_text(message)
    per_second = caller.fmt.sample_rate * caller.fmt.bytes_per_sample
    assert isinstance(out[0], AssistantAudio) and out[0].payload == audio[: caller.frame_bytes * 3]
    # The tail went out padded to one whole frame ahead of the mark.
    assert isinstance(out[1], AssistantAudio)
    assert out[1].seconds == caller.frame_bytes / per_second
    assert out[2:] == [MarkRequested(name="m1"), ClearRequested()]
    # Asterisk's HANGUP (the daemon closes the socket instead, but a carrier accepts it).
    hangup = '{"command":"HANGUP"}' if json_format else "HANGUP"
    assert caller.receive_text(hangup) == [HangupRequested()]
    assert caller.dropped_tail_bytes == 0


def test_asterisk_caller_reframes_like_asterisk() -> None:
    caller = AsteriskCaller(connection_id="c", channel_id="1.1")
    # Outside buffering an odd tail is dropped...
    (audio,) = caller.receive_bytes(b"\x01" * 250)
    assert isinstance(audio, AssistantAudio) and len(audio.payload) == 160
    assert caller.dropped_tail_bytes == 90
    # ...inside it is carried over, and padded at the stop.
    caller.receive_text('{"command":"START_MEDIA_BUFFERING"}')
    caller.receive_bytes(b"\x01" * 250)  # 160 played, 90 carried
    first = caller.receive_bytes(b"\x01" * 100)  # 90 + 100: 160 played, 30 carried
    assert isinstance(first[0], AssistantAudio) and len(first[0].payload) == 160
    assert caller.dropped_tail_bytes == 90
    stop = caller.receive_text('{"command":"STOP_MEDIA_BUFFERING","correlation_id":"x"}')
    assert isinstance(stop[0], AssistantAudio) and len(stop[0].payload) == 160
    assert caller.receive_text("X" * 129)[0].name == "IGNORED"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "error", "fmt"),
    [
        ("bad_control", CarrierMalformedMessage, "ulaw"),
        ("oversized", CarrierMessageTooBig, "ulaw"),
        ("odd_frame", CarrierBadPayload, "slin16"),
    ],
)
def test_asterisk_malformed_kinds_provoke_their_error(
    kind: str, error: type[CarrierError], fmt: str
) -> None:
    caller = AsteriskCaller(connection_id="c", channel_id="1.1", format_name=fmt)
    d = AsteriskDialect()
    _feed(d, caller.media_start())
    assert caller.fmt.encoding is (Encoding.MULAW if fmt == "ulaw" else Encoding.PCM16)
    with pytest.raises(error):
        _feed(d, caller.malformed(kind))


@pytest.mark.parametrize(
    ("release", "channel_id", "marks"),
    [
        ("20.16.0", False, False),
        ("21.12.0", False, False),
        ("22.6.0", False, False),
        ("22.7.0", True, False),
        ("23.0.0", False, False),
        ("20.18.0", True, True),
        ("22.8.0", True, True),
        ("23.2.0", True, True),
    ],
)
def test_asterisk_releases_as_the_source_says(release: str, channel_id: bool, marks: bool) -> None:
    """``_create_event_MEDIA_START`` and ``process_text_message`` at each release tag."""
    from devkit.simcall.asterisk_caller import release_features

    assert release_features(release) == (channel_id, marks)
    caller = AsteriskCaller(
        connection_id="novavoice", channel_id="1.1", control_json=False, release=release
    )
    assert ("channel_id:" in caller.media_start()) is channel_id
    out = caller.receive_text("MARK_MEDIA m0")
    assert (caller.unknown_commands == []) is marks
    assert (type(out[0]).__name__ == "MarkRequested") is marks
