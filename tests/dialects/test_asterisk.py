"""Asterisk chan_websocket dialect: both control formats, early audio, flow control, auth."""

from __future__ import annotations

import json
from base64 import b64encode

import pytest

from actors.audio_codec import Encoding, MediaFormat
from actors.errors import (
    CarrierBadPayload,
    CarrierBufferOverflow,
    CarrierError,
    CarrierLocalError,
    CarrierMalformedMessage,
    CarrierMessageTooBig,
    CarrierUnauthorized,
    CarrierUnexpectedMessage,
    CarrierUnsupportedMedia,
)
from sessions.dialects import (
    AsteriskDialect,
    AudioReceived,
    CallStarted,
    CallStopped,
    CarrierNotice,
    ClearAudio,
    ControlFormat,
    DtmfReceived,
    FlowPaused,
    FlowResumed,
    MarkPlayed,
    MarksMode,
    SendAudio,
    SendMark,
    StreamState,
    check_upgrade_auth,
)
from sessions.dialects.asterisk import select_subprotocol
from tests.dialects import samples


def paused(d: AsteriskDialect) -> bool:
    """Read the flag through a call, so the type checker does not pin it."""
    return d.paused


def marks_enabled(d: AsteriskDialect) -> bool:
    """Read the flag through a call, so the type checker does not pin it."""
    return d.marks_enabled


def test_plain_text_call() -> None:
    d = AsteriskDialect(path="/asterisk/support-agent", marks=MarksMode.ON)
    [started] = d.receive_text(samples.asterisk_media_start_plain())
    assert started == CallStarted(
        carrier="asterisk",
        call_id=samples.CHANNEL_ID,
        stream_id=samples.CONNECTION_ID,
        assistant="support-agent",
        media_format=MediaFormat(Encoding.MULAW, 8000),
        frame_bytes=160,
        channel=samples.CHANNEL,
    )
    assert d.control_format is ControlFormat.PLAIN
    f = b"\x7f" * 160
    assert d.receive_bytes(f) == [AudioReceived(payload=f, sequence=1, timestamp_ms=0)]
    assert d.receive_bytes(f) == [AudioReceived(payload=f, sequence=2, timestamp_ms=20)]
    assert d.receive_text(f"DTMF_END digit:5 channel_id:{samples.CHANNEL_ID}") == [
        DtmfReceived(digit="5")
    ]
    assert d.receive_text("MEDIA_XOFF") == [FlowPaused()]
    assert paused(d)
    assert d.receive_text("MEDIA_XON") == [FlowResumed()]
    assert not paused(d)
    # Audio goes out in whole 160-byte frames; the 40-byte tail waits.
    assert d.send(SendAudio(payload=b"\x01" * 360)) == [b"\x01" * 320]
    assert d.send(SendMark(name="turn-1")) == [b"\x01" * 40 + b"\xff" * 120, "MARK_MEDIA turn-1"]
    assert d.receive_text("MEDIA_MARK_PROCESSED turn-1") == [MarkPlayed(name="turn-1")]
    assert d.send(SendAudio(payload=b"\x02" * 100)) == []
    assert d.send(ClearAudio()) == ["FLUSH_MEDIA"]
    assert d.send(SendAudio(payload=b"\x03" * 160)) == [b"\x03" * 160]  # tail was dropped
    assert d.receive_text(
        "ERROR channel_id:1.2 error_text:FLUSH_MEDIA not supported in passthrough mode"
    ) == [
        CarrierNotice(
            name="ERROR",
            fields={
                "channel_id": "1.2",
                "error_text": "FLUSH_MEDIA not supported in passthrough mode",
            },
        )
    ]
    assert d.receive_close() == [CallStopped(reason="closed")]
    assert d.state is StreamState.STOPPED
    assert d.receive_bytes(f) == []  # late frames after the end are ignored
    assert d.receive_close() == []


def test_json_call_slin16_and_channel_variable_assistant() -> None:
    d = AsteriskDialect(path="/asterisk", default_assistant="fallback")
    [started] = d.receive_text(
        samples.asterisk_media_start_json(variables={"NOVAVOICE_ASSISTANT": "esther"})
    )
    assert isinstance(started, CallStarted)
    assert started.assistant == "esther"
    assert started.media_format == MediaFormat(Encoding.PCM16, 16000)
    assert started.custom_parameters == {"NOVAVOICE_ASSISTANT": "esther"}
    f = bytes(640)
    [ev] = d.receive_bytes(f)
    assert ev == AudioReceived(payload=f, sequence=1, timestamp_ms=0)
    [mark] = d.send(SendMark(name="m1"))
    assert json.loads(mark) == {"command": "MARK_MEDIA", "correlation_id": "m1"}
    ev2 = d.receive_text('{"event":"MEDIA_MARK_PROCESSED","channel_id":"1","correlation_id":"m1"}')
    assert ev2 == [MarkPlayed(name="m1")]
    [flush] = d.send(ClearAudio())
    assert json.loads(flush) == {"command": "FLUSH_MEDIA"}
    status = d.receive_text(
        '{"event":"STATUS","channel_id":"1","queue_length":43,"xon_level":800,'
        '"xoff_level":900,"queue_full":false,"bulk_media":true,"media_paused":false}'
    )
    assert isinstance(status[0], CarrierNotice) and status[0].fields["queue_length"] == 43
    assert d.receive_text('{"event":"MEDIA_XOFF","channel_id":"1"}') == [FlowPaused()]


def test_assistant_from_query_string() -> None:
    d = AsteriskDialect(path="/asterisk?assistant=support-agent")
    [s] = d.receive_text(samples.asterisk_media_start_plain())
    assert isinstance(s, CallStarted) and s.assistant == "support-agent"


def test_audio_before_media_start_is_kept_and_replayed() -> None:
    d = AsteriskDialect()
    early = [bytes([i]) * 160 for i in range(3)]
    for f in early:
        assert d.receive_bytes(f) == []
    events = d.receive_text(samples.asterisk_media_start_plain())
    assert isinstance(events[0], CallStarted)
    assert events[1:] == [
        AudioReceived(payload=f, sequence=i + 1, timestamp_ms=20 * i) for i, f in enumerate(early)
    ]


def test_early_audio_is_bounded() -> None:
    d = AsteriskDialect(max_early_audio_bytes=320)
    d.receive_bytes(b"\x00" * 320)
    with pytest.raises(CarrierBufferOverflow) as info:
        d.receive_bytes(b"\x00")
    assert info.value.close_code == 4008


def test_large_audio_is_split_below_asterisk_limit() -> None:
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_json())
    out = d.send(SendAudio(payload=bytes(640 * 250)))  # 5 s of slin16
    assert all(isinstance(m, bytes) and len(m) <= 65_500 and len(m) % 640 == 0 for m in out)
    assert sum(len(m) for m in out) == 640 * 250


def test_media_formats() -> None:
    for fmt, frame, rate, enc in [
        ("alaw", 160, 8000, Encoding.ALAW),
        ("slin", 320, 8000, Encoding.PCM16),
    ]:
        d = AsteriskDialect()
        [s] = d.receive_text(samples.asterisk_media_start_plain(fmt, frame))
        assert isinstance(s, CallStarted) and s.media_format == MediaFormat(enc, rate)


@pytest.mark.parametrize(
    ("text", "error", "code"),
    [
        (samples.asterisk_media_start_plain("opus", 0), CarrierUnsupportedMedia, 4006),
        (samples.asterisk_media_start_plain("slin48", 1920), CarrierUnsupportedMedia, 4006),
        (samples.asterisk_media_start_plain("slin16", 641), CarrierMalformedMessage, 4001),
        (samples.asterisk_media_start_plain("ulaw", 0), CarrierMalformedMessage, 4001),
        ("MEDIA_START format:ulaw optimal_frame_size:160", CarrierMalformedMessage, 4001),
        (
            "MEDIA_START connection_id:x format:ulaw optimal_frame_size:abc",
            CarrierMalformedMessage,
            4001,
        ),
        ("MEDIA_START connection_id", CarrierMalformedMessage, 4001),
        ("media_start", CarrierMalformedMessage, 4001),
        ("   ", CarrierMalformedMessage, 4001),
        ("DTMF_END digit:5", CarrierUnexpectedMessage, 4003),
        ("MEDIA_XOFF", CarrierUnexpectedMessage, 4003),
        ("x" * 70_000, CarrierMessageTooBig, 4005),
    ],
)
def test_errors_before_start(text: str, error: type[CarrierError], code: int) -> None:
    with pytest.raises(error) as info:
        AsteriskDialect().receive_text(text)
    assert info.value.close_code == code


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (samples.asterisk_media_start_plain(), CarrierUnexpectedMessage),
        ('{"event":"MEDIA_XON"}', CarrierMalformedMessage),  # format switched mid-call
        ("DTMF_END digit:x", CarrierMalformedMessage),
        ("DTMF_END", CarrierMalformedMessage),
    ],
)
def test_errors_while_streaming(
    asterisk_ulaw: AsteriskDialect, text: str, error: type[CarrierError]
) -> None:
    with pytest.raises(error):
        asterisk_ulaw.receive_text(text)


def test_json_errors() -> None:
    for text in ['{"event": 1}', "{not json", '{"event":"MEDIA_START","format":"ulaw"}']:
        with pytest.raises(CarrierMalformedMessage):
            AsteriskDialect().receive_text(text)
    d = AsteriskDialect(control_format=ControlFormat.JSON)
    with pytest.raises(CarrierMalformedMessage):
        d.receive_text(samples.asterisk_media_start_plain())
    start = json.loads(samples.asterisk_media_start_json())
    start["channel_variables"] = ["x"]
    with pytest.raises(CarrierMalformedMessage):
        AsteriskDialect().receive_text(json.dumps(start))


def test_odd_slin_frame_and_oversized_binary() -> None:
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_json())
    with pytest.raises(CarrierBadPayload) as info:
        d.receive_bytes(b"\x00" * 641)
    assert info.value.close_code == 4002
    with pytest.raises(CarrierMessageTooBig):
        d.receive_bytes(bytes(65_501))


def test_unknown_and_informational_events(asterisk_ulaw: AsteriskDialect) -> None:
    assert asterisk_ulaw.receive_text("SOMETHING_NEW a:b") == []
    assert asterisk_ulaw.receive_text("QUEUE_DRAINED") == [CarrierNotice(name="QUEUE_DRAINED")]
    assert asterisk_ulaw.receive_text("MEDIA_BUFFERING_COMPLETED f1") == [
        CarrierNotice(name="MEDIA_BUFFERING_COMPLETED", fields={"correlation_id": "f1"})
    ]
    assert asterisk_ulaw.receive_text("MEDIA_MARK_PROCESSED nobody") == []


def test_flush_forgets_marks(asterisk_ulaw: AsteriskDialect) -> None:
    asterisk_ulaw.send(SendMark(name="a"))
    assert asterisk_ulaw.pending_marks == {"a"}
    asterisk_ulaw.send(ClearAudio())
    assert asterisk_ulaw.pending_marks == set()


def test_local_misuse() -> None:
    d = AsteriskDialect()
    with pytest.raises(CarrierLocalError):
        d.send(SendAudio(payload=b"\xff" * 160))
    d = AsteriskDialect(marks=MarksMode.ON)
    d.receive_text(samples.asterisk_media_start_plain())
    with pytest.raises(CarrierLocalError):
        d.send(SendMark(name="has space"))
    with pytest.raises(CarrierLocalError) as info:
        d.send(SendMark(name="m" * 200))  # over chan_websocket's 128-byte command limit
    assert info.value.close_code == 4010


def test_close_1000_is_hangup() -> None:
    """Asterisk has no hang-up message: ``webchan_hangup`` calls
    ``ast_websocket_close(ws, ast_channel_tech_hangupcause(ast) ?: 1000)``, so a normal
    hang-up is CLOSE 1000."""
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_plain())
    assert d.receive_close(1000) == [CallStopped(reason="hangup")]
    assert d.receive_text("MEDIA_XON") == []
    assert d.receive_close(1000) == []


@pytest.mark.parametrize("code", [None, 1001, 1006, 1011])
def test_other_closes_are_disconnections(code: int | None) -> None:
    """Any other close (``websocket_request_hangup`` with GOING_AWAY, or no close frame)
    is not a normal hang-up."""
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_plain())
    assert d.receive_close(code) == [CallStopped(reason="closed")]


def test_subprotocol() -> None:
    assert select_subprotocol(["media"]) == "media"
    assert select_subprotocol(["chat", "media"]) == "media"
    assert select_subprotocol(["chat"]) is None


def basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    token = b64encode(f"{user}:{password}".encode())
    return [(b"authorization", b"Basic " + token)]


def test_basic_auth() -> None:
    """Every failure is 401: ``websocket_client_handle_response_code``
    (res/res_websocket_client.c) recognises only 401 as "unauthorized"; a 403 is logged
    as an invalid response."""
    creds = ("medianame", "mediapassword")
    check_upgrade_auth(basic("medianame", "mediapassword"), basic=creds)
    for user, password in [("medianame", "wrong"), ("other", "mediapassword"), ("", "")]:
        with pytest.raises(CarrierUnauthorized) as info:
            check_upgrade_auth(basic(user, password), basic=creds)
        assert info.value.http_status == 401
    with pytest.raises(CarrierUnauthorized):
        check_upgrade_auth([(b"authorization", b"Basic !!!")], basic=creds)
    with pytest.raises(CarrierUnauthorized):  # no colon at all
        check_upgrade_auth([(b"authorization", b"Basic " + b64encode(b"medianame"))], basic=creds)
    with pytest.raises(CarrierUnauthorized) as missing:
        check_upgrade_auth([], basic=creds)
    assert missing.value.http_status == 401


def test_bearer_auth() -> None:
    check_upgrade_auth([("Authorization", "Bearer s3cret")], bearer_token="s3cret")
    check_upgrade_auth([(b"authorization", b"bearer s3cret")], bearer_token="s3cret")
    with pytest.raises(CarrierUnauthorized) as wrong:
        check_upgrade_auth([(b"authorization", b"Bearer s3cre")], bearer_token="s3cret")
    assert wrong.value.http_status == 401
    with pytest.raises(CarrierUnauthorized):  # a scheme that is not configured
        check_upgrade_auth([(b"authorization", b"Digest x")], bearer_token="s3cret")
    check_upgrade_auth([])  # nothing configured: nothing checked


def test_basic_against_bearer_only_config_says_what_to_set() -> None:
    """Asterisk's client can only send Basic (``websocket_client_handshake`` builds it from
    ``username``/``password`` in websocket_client.conf): a bearer-only daemon answers 401
    with a reason naming the setting that fixes it."""
    with pytest.raises(CarrierUnauthorized) as info:
        check_upgrade_auth(basic("a", "b"), bearer_token="s3cret")
    assert info.value.http_status == 401
    assert "ASTERISK_BASIC_AUTH" in info.value.reason
    # Both configured: Basic for Asterisk, bearer for a proxy in front of it.
    check_upgrade_auth(basic("a", "b"), basic=("a", "b"), bearer_token="s3cret")
    bearer = [(b"authorization", b"Bearer s3cret")]
    check_upgrade_auth(bearer, basic=("a", "b"), bearer_token="s3cret")


def media_start_without_channel_id(connection_id: str = "novavoice") -> str:
    """``MEDIA_START`` as 20.16.0 / 22.6.0 / 23.0.0 / 21.x build it in
    ``websocket_handoff_to_channel``: no ``channel_id`` field."""
    return (
        f"MEDIA_START connection_id:{connection_id} channel:WebSocket/novavoice-0000001 "
        "format:ulaw optimal_frame_size:160 ptime:20"
    )


def test_missing_channel_id_gets_a_unique_generated_call_id() -> None:
    """For outbound calls ``connection_id`` is the websocket_client.conf section name,
    the same for every call; two calls must still get different call ids."""
    ids = set()
    for _ in range(2):
        d = AsteriskDialect()
        [started] = d.receive_text(media_start_without_channel_id())
        assert isinstance(started, CallStarted)
        assert started.call_id_generated
        assert started.stream_id == "novavoice"
        assert started.call_id.startswith("novavoice-")
        ids.add(started.call_id)
    assert len(ids) == 2
    d = AsteriskDialect()
    [started] = d.receive_text(samples.asterisk_media_start_plain())
    assert isinstance(started, CallStarted)
    assert started.call_id == samples.CHANNEL_ID and not started.call_id_generated


def test_marks_auto_plain_text_sends_none() -> None:
    """A plain-text ``MEDIA_START`` (``_create_event_MEDIA_START``) is identical in 20.17.0
    (no MARK_MEDIA) and 20.18.0 (MARK_MEDIA): nothing tells, so no marks. An unknown
    command is only logged by ``process_text_message``, never answered."""
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_plain())
    assert not d.marks_enabled
    assert d.send(SendAudio(payload=b"\x01" * 200)) == [b"\x01" * 160]
    assert d.send(SendMark(name="m0")) == []
    assert d.pending_marks == set()


def test_marks_auto_json_sends_marks() -> None:
    """The JSON control format (``WEBCHAN_CONTROL_MSG_FORMAT_JSON``) and ``MARK_MEDIA``
    arrived in the same releases, 20.18.0 / 22.8.0 / 23.2.0: JSON proves marks exist."""
    d = AsteriskDialect()
    assert not marks_enabled(d)
    d.receive_text(samples.asterisk_media_start_json())
    assert marks_enabled(d)
    assert d.send(SendMark(name="m0")) == ['{"command":"MARK_MEDIA","correlation_id":"m0"}']
    assert d.pending_marks == {"m0"}


def test_marks_off_and_on_override_auto() -> None:
    off = AsteriskDialect(marks=MarksMode.OFF)
    off.receive_text(samples.asterisk_media_start_json())
    assert off.send(SendMark(name="m0")) == []
    on = AsteriskDialect(marks=MarksMode.ON)
    on.receive_text(samples.asterisk_media_start_plain())
    assert on.send(SendMark(name="m0")) == ["MARK_MEDIA m0"]


def test_flush_forgets_marks_and_old_ids_are_ignored() -> None:
    """``FLUSH_MEDIA`` in ``process_text_message`` frees queued frames, marks included:
    a flushed mark never comes back; a late answer for it is not a played mark."""
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_json())
    d.send(SendMark(name="m0"))
    assert d.send(ClearAudio()) == ['{"command":"FLUSH_MEDIA"}']
    assert d.pending_marks == set()
    processed = '{"event":"MEDIA_MARK_PROCESSED","correlation_id":"m0"}'
    assert d.receive_text(processed) == []


def test_audio_bytes_sent_counts_whole_frames() -> None:
    """The base of the "heard" estimate when marks are off: what actually went out."""
    d = AsteriskDialect()
    d.receive_text(samples.asterisk_media_start_plain())
    d.send(SendAudio(payload=b"\x01" * 360))
    assert d.audio_bytes_sent == 320
