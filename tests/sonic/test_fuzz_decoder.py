"""Property tests: hostile bytes only ever raise EventStreamError; encode/decode round-trips."""

from __future__ import annotations

import contextlib
import struct
import uuid
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.errors import EventStreamError
from actors.sonic.eventstream import (
    MAX_HEADER_VALUE_BYTES,
    Header,
    HeaderType,
    Message,
    MessageDecoder,
    decode_message,
    encode_message,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _utf8_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=max_size)


def _header(name: str) -> st.SearchStrategy[Header]:
    return st.one_of(
        st.booleans().map(lambda v: Header.bool_(name, v)),
        st.integers(-(2**7), 2**7 - 1).map(lambda v: Header.byte(name, v)),
        st.integers(-(2**15), 2**15 - 1).map(lambda v: Header.int16(name, v)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: Header.int32(name, v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: Header.int64(name, v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: Header.timestamp(name, v)),
        st.binary(max_size=64).map(lambda v: Header.bytes_(name, v)),
        _utf8_text(40).map(lambda v: Header.string(name, v)),
        st.binary(min_size=16, max_size=16).map(lambda v: Header.uuid(name, uuid.UUID(bytes=v))),
    )


@st.composite
def _messages(draw: st.DrawFn) -> Message:
    names = draw(
        st.lists(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
            unique=True,
            max_size=8,
        )
    )
    headers = tuple(draw(_header(name)) for name in names)
    return Message(headers, draw(st.binary(max_size=300)))


def _only_eventstream_errors(data: bytes) -> None:
    with contextlib.suppress(EventStreamError):
        decode_message(data)
    decoder = MessageDecoder()
    with contextlib.suppress(EventStreamError):
        decoder.feed(data)
        decoder.eof()


def _with_crcs(total: int, headers_length: int, body: bytes) -> bytes:
    head = struct.pack("!II", total, headers_length)
    frame = head + struct.pack("!I", zlib.crc32(head)) + body
    return frame + struct.pack("!I", zlib.crc32(frame))


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _only_eventstream_errors(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bodies_behind_valid_crcs(body: bytes) -> None:
    # Valid prelude and message CRCs force the decoder into header parsing.
    for headers_length in {0, len(body), len(body) // 2}:
        _only_eventstream_errors(_with_crcs(len(body) + 16, headers_length, body))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=6),
            # Mostly real type codes (so value parsing is reached), some unknown ones.
            st.one_of(st.integers(0, 10), st.integers(0, 255)),
            st.binary(max_size=24),
        ),
        max_size=6,
    ),
    st.binary(max_size=20),
)
def test_bad_header_types_and_lengths(
    parts: list[tuple[bytes, int, bytes]], payload: bytes
) -> None:
    block = b"".join(
        bytes((len(name),)) + name + bytes((code,)) + rest for name, code, rest in parts
    )
    _only_eventstream_errors(
        _with_crcs(16 + len(block) + len(payload), len(block), block + payload)
    )


@FUZZ
@given(
    _messages(),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_oversized_or_wrong_lengths(message: Message, total: int, headers_length: int) -> None:
    frame = encode_message(message.headers, message.payload)
    body = frame[12:-4]
    _only_eventstream_errors(_with_crcs(total, headers_length, body))


@FUZZ
@given(_messages(), st.data())
def test_truncations_and_bit_flips(message: Message, data: st.DataObject) -> None:
    frame = encode_message(message.headers, message.payload)
    cut = data.draw(st.integers(0, len(frame) - 1))
    _only_eventstream_errors(frame[:cut])
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    flipped = bytearray(frame)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        decode_message(bytes(flipped))
    except EventStreamError:
        pass
    else:
        raise AssertionError("a single bit flip must break a CRC")


@FUZZ
@given(_messages())
def test_round_trip(message: Message) -> None:
    frame = encode_message(message.headers, message.payload)
    decoded = decode_message(frame)
    assert decoded == message
    assert encode_message(decoded.headers, decoded.payload) == frame


@FUZZ
@given(st.lists(_messages(), min_size=1, max_size=5), st.data())
def test_any_chunking_yields_the_same_messages(
    messages: list[Message], data: st.DataObject
) -> None:
    stream = b"".join(encode_message(m.headers, m.payload) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = MessageDecoder()
    got: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    decoder.eof()
    assert got == messages


def test_header_strategy_covers_every_type() -> None:
    # Guards the generators above against silently dropping a type.
    seen = {
        Header.bool_("a", True).type,
        Header.bool_("a", False).type,
        Header.byte("a", 0).type,
        Header.int16("a", 0).type,
        Header.int32("a", 0).type,
        Header.int64("a", 0).type,
        Header.bytes_("a", b"").type,
        Header.string("a", "").type,
        Header.timestamp("a", 0).type,
        Header.uuid("a", uuid.UUID(int=0)).type,
    }
    assert seen == set(HeaderType)
    assert MAX_HEADER_VALUE_BYTES == 32767
