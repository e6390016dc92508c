"""Fuzzing: whatever a carrier sends, a dialect raises nothing but CarrierError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import CarrierError
from sessions.dialects import AsteriskDialect, TwilioDialect
from tests.dialects import samples

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Messages shaped like the real ones, with any field replaced by anything.
twilio_shaped = st.builds(
    lambda event, body, extra: json.dumps({"event": event, **body, **extra}),
    st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"]),
    st.dictionaries(
        st.sampled_from(["start", "media", "dtmf", "mark", "stop", "streamSid", "sequenceNumber"]),
        json_values,
        max_size=4,
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)
asterisk_plain = st.builds(
    lambda name, tokens: " ".join([name, *tokens]),
    st.sampled_from(
        ["MEDIA_START", "DTMF_END", "MEDIA_XOFF", "MEDIA_XON", "MEDIA_MARK_PROCESSED", "ERROR"]
    ),
    st.lists(st.text(max_size=20), max_size=6),
)
asterisk_json = st.builds(
    lambda event, body: json.dumps({"event": event, **body}),
    st.sampled_from(["MEDIA_START", "DTMF_END", "MEDIA_XOFF", "STATUS", "x"]),
    st.dictionaries(
        st.sampled_from(
            [
                "format",
                "optimal_frame_size",
                "connection_id",
                "channel_id",
                "digit",
                "channel_variables",
                "correlation_id",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
frames = st.one_of(
    st.text(max_size=300).map(lambda t: ("text", t)),
    twilio_shaped.map(lambda t: ("text", t)),
    asterisk_plain.map(lambda t: ("text", t)),
    asterisk_json.map(lambda t: ("text", t)),
    st.binary(max_size=700).map(lambda b: ("bytes", b)),
)


def _feed(dialect: TwilioDialect | AsteriskDialect, script: list[tuple[str, object]]) -> None:
    for kind, data in script:
        try:
            if kind == "text":
                assert isinstance(data, str)
                events = dialect.receive_text(data)
            else:
                assert isinstance(data, bytes)
                events = dialect.receive_bytes(data)
        except CarrierError as exc:
            assert 4000 <= exc.close_code <= 4999
            assert len(exc.reason.encode()) <= 123
            return
        assert isinstance(events, list)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=8))
def test_twilio_from_scratch(script: list[tuple[str, object]]) -> None:
    _feed(TwilioDialect(), script)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=8))
def test_twilio_while_streaming(script: list[tuple[str, object]]) -> None:
    d = TwilioDialect()
    d.receive_text(samples.twilio_start())
    _feed(d, script)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=8))
def test_asterisk_from_scratch(script: list[tuple[str, object]]) -> None:
    _feed(AsteriskDialect(), script)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=8), st.sampled_from(["plain", "json"]))
def test_asterisk_while_streaming(script: list[tuple[str, object]], fmt: str) -> None:
    d = AsteriskDialect()
    start = (
        samples.asterisk_media_start_plain()
        if fmt == "plain"
        else samples.asterisk_media_start_json()
    )
    d.receive_text(start)
    _feed(d, script)
