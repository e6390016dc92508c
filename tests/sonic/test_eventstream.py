"""The event-stream codec: AWS's public suite, every header type, limits, incremental feeding."""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib

import pytest

from actors.errors import (
    ChecksumMismatch,
    EventStreamError,
    InvalidHeader,
    InvalidMessageLength,
    MessageTooLarge,
)
from actors.sonic.eventstream import (
    MAX_HEADER_VALUE_BYTES,
    MAX_HEADERS_BYTES,
    MAX_PAYLOAD_BYTES,
    Header,
    HeaderType,
    Message,
    MessageDecoder,
    decode_message,
    encode_headers,
    encode_message,
)

from .vectors import EVENTSTREAM_SUITE, eventstream_cases


def _raw_frame(headers_block: bytes, payload: bytes, *, total_delta: int = 0) -> bytes:
    """A frame with correct CRCs around arbitrary (possibly invalid) contents."""
    total = 16 + len(headers_block) + len(payload) + total_delta
    head = struct.pack("!II", total, len(headers_block))
    body = head + struct.pack("!I", zlib.crc32(head)) + headers_block + payload
    return body + struct.pack("!I", zlib.crc32(body))


def test_suite_is_present() -> None:
    assert len(eventstream_cases("positive")) == 5
    assert len(eventstream_cases("negative")) == 4


@pytest.mark.parametrize("name", eventstream_cases("positive"))
def test_aws_positive_case_decodes_and_reencodes(name: str) -> None:
    data = (EVENTSTREAM_SUITE / "encoded" / "positive" / name).read_bytes()
    expected = json.loads((EVENTSTREAM_SUITE / "decoded" / "positive" / name).read_text())

    message = decode_message(data)

    assert len(data) == expected["total_length"]
    _total, headers_length, prelude_crc = struct.unpack("!III", data[:12])
    assert headers_length == expected["headers_length"]
    assert prelude_crc == expected["prelude_crc"] & 0xFFFFFFFF
    assert struct.unpack("!I", data[-4:])[0] == expected["message_crc"] & 0xFFFFFFFF
    assert message.payload == base64.b64decode(expected["payload"])
    assert [(h.name, int(h.type)) for h in message.headers] == [
        (h["name"], h["type"]) for h in expected["headers"]
    ]
    for got, want in zip(message.headers, expected["headers"], strict=True):
        if want["type"] == HeaderType.STRING:
            assert got.value == base64.b64decode(want["value"]).decode()
        elif want["type"] == HeaderType.BYTES:
            assert got.value == base64.b64decode(want["value"])
        elif want["type"] == HeaderType.UUID:
            assert got.value == uuid.UUID(bytes=base64.b64decode(want["value"]))
        else:
            assert got.value == want["value"]
            assert type(got.value) is type(want["value"])

    assert encode_message(message.headers, message.payload) == data


@pytest.mark.parametrize("name", eventstream_cases("negative"))
def test_aws_negative_case_raises_the_named_checksum_error(name: str) -> None:
    data = (EVENTSTREAM_SUITE / "encoded" / "negative" / name).read_bytes()
    expected = (EVENTSTREAM_SUITE / "decoded" / "negative" / name).read_text().strip()
    part = "prelude" if expected.startswith("Prelude") else "message"

    with pytest.raises(ChecksumMismatch, match=f"^{expected}") as whole:
        decode_message(data)
    assert whole.value.part == part

    # Incrementally too, even when the corrupted length promises more bytes than arrive.
    decoder = MessageDecoder()
    with pytest.raises(ChecksumMismatch, match=f"^{expected}"):
        for i in range(len(data)):
            decoder.feed(data[i : i + 1])
        decoder.eof()


def test_every_header_type_round_trips() -> None:
    headers = [
        Header.bool_("t", True),
        Header.bool_("f", False),
        Header.byte("b", -128),
        Header.int16("s", 32767),
        Header.int32("i", -(2**31)),
        Header.int64("l", 2**63 - 1),
        Header.bytes_("y", b"\x00\xff" * 10),
        Header.string("str", "héllo ✓"),
        Header.timestamp("ts", 1762179725121),
        Header.uuid("u", uuid.UUID("01020304-0506-0708-090a-0b0c0d0e0f10")),
    ]
    frame = encode_message(headers, b"payload")
    message = decode_message(frame)
    assert message == Message(tuple(headers), b"payload")
    assert [h.type for h in message.headers] == list(HeaderType)
    assert message.get("str") == "héllo ✓"
    assert message.get("missing") is None


def test_encoder_refuses_duplicate_names() -> None:
    with pytest.raises(InvalidHeader, match="duplicate"):
        encode_message([Header.string("a", "1"), Header.int32("a", 2)], b"")


@pytest.mark.parametrize(
    "header",
    [
        Header.byte("b", 128),
        Header.int16("s", -(2**15) - 1),
        Header.int32("i", 2**31),
        Header.int64("l", 2**63),
        Header("i", HeaderType.INTEGER, True),
        Header("i", HeaderType.INTEGER, "1"),
        Header("t", HeaderType.BOOL_TRUE, False),
        Header("s", HeaderType.STRING, b"bytes"),
        Header("y", HeaderType.BYTES, "str"),
        Header("u", HeaderType.UUID, b"\x00" * 16),
        Header.string("s", "\ud800"),
        Header.string("x" * 256, "long name"),
    ],
)
def test_encoder_refuses_bad_values(header: Header) -> None:
    with pytest.raises(InvalidHeader):
        encode_headers([header])


def test_encoder_limits() -> None:
    encode_headers([Header.bytes_("y", b"x" * MAX_HEADER_VALUE_BYTES)])
    with pytest.raises(MessageTooLarge):
        encode_headers([Header.bytes_("y", b"x" * (MAX_HEADER_VALUE_BYTES + 1))])
    with pytest.raises(MessageTooLarge):
        encode_headers([Header.string("s", "é" * (MAX_HEADER_VALUE_BYTES // 2 + 1))])
    many = [Header.bytes_(f"h{i}", b"x" * 30000) for i in range(5)]
    with pytest.raises(MessageTooLarge, match="headers"):
        encode_headers(many)
    encode_message([], b"x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(MessageTooLarge, match="payload"):
        encode_message([], b"x" * (MAX_PAYLOAD_BYTES + 1))


def test_decoder_limits_are_checked_from_the_prelude() -> None:
    # Only a prelude: the decoder must refuse before waiting for 16 MiB + 1 bytes.
    for headers_length, payload_length in ((MAX_HEADERS_BYTES + 1, 0), (0, MAX_PAYLOAD_BYTES + 1)):
        total = 16 + headers_length + payload_length
        head = struct.pack("!II", total, headers_length)
        prelude = head + struct.pack("!I", zlib.crc32(head))
        with pytest.raises(MessageTooLarge):
            MessageDecoder().feed(prelude)


def test_decoder_refuses_oversize_header_value() -> None:
    value = b"x" * (MAX_HEADER_VALUE_BYTES + 1)
    frame = _raw_frame(b"\x01y\x06" + struct.pack("!H", len(value)) + value, b"")
    with pytest.raises(MessageTooLarge):
        decode_message(frame)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (_raw_frame(b"\x01a\x2a", b""), InvalidHeader),
        (_raw_frame(b"\x01a\x05\x00\x01", b""), InvalidHeader),
        (_raw_frame(b"\x01a\x07\x00\x02\xff\xfe", b""), InvalidHeader),
        (_raw_frame(b"\x02\xff\xfe\x00", b""), InvalidHeader),
        (_raw_frame(b"\x05abc", b""), InvalidHeader),
        (_raw_frame(b"\x01a\x00\x01a\x01", b""), InvalidHeader),
        (_raw_frame(b"\x01a\x06\x00\x09abc", b""), InvalidHeader),
        (_raw_frame(b"\x01a\x09" + b"\x00" * 15, b""), InvalidHeader),
        (_raw_frame(b"", b"", total_delta=-1)[:15], InvalidMessageLength),
    ],
    ids=[
        "unknown-type",
        "truncated-int64",
        "bad-utf8-value",
        "bad-utf8-name",
        "name-overruns",
        "duplicate-name",
        "bytes-overrun",
        "short-uuid",
        "total-below-minimum",
    ],
)
def test_decoder_rejects_bad_headers_with_valid_crcs(
    frame: bytes, error: type[EventStreamError]
) -> None:
    with pytest.raises(error):
        decode_message(frame)


def test_headers_longer_than_message_is_invalid_length() -> None:
    head = struct.pack("!II", 20, 10)
    frame = head + struct.pack("!I", zlib.crc32(head)) + b"\x00" * 8
    with pytest.raises(InvalidMessageLength):
        decode_message(frame)


def test_decode_message_wants_exactly_one_message() -> None:
    frame = encode_message([Header.string("a", "b")], b"xyz")
    with pytest.raises(InvalidMessageLength):
        decode_message(frame + b"\x00")
    with pytest.raises(InvalidMessageLength):
        decode_message(frame[:-1])
    with pytest.raises(InvalidMessageLength):
        decode_message(frame[:5])


def test_incremental_decoder_any_split() -> None:
    frames = [
        encode_message([Header.string(":event-type", "chunk")], b"a" * n) for n in (0, 1, 300)
    ]
    stream = b"".join(frames)
    expected = [decode_message(f) for f in frames]
    for split in range(len(stream) + 1):
        decoder = MessageDecoder()
        got = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
        decoder.eof()
        assert got == expected
    decoder = MessageDecoder()
    one_by_one = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert one_by_one == expected
    assert decoder.buffered == 0


def test_good_messages_before_a_bad_one_are_delivered_then_the_error() -> None:
    good = encode_message([Header.string("a", "b")], b"ok")
    bad = bytearray(good)
    bad[-5] ^= 0x01
    decoder = MessageDecoder()
    assert decoder.feed(good + bytes(bad)) == [decode_message(good)]
    with pytest.raises(ChecksumMismatch, match=r"^Message"):
        decoder.feed(b"")
    with pytest.raises(EventStreamError, match="failed earlier"):
        decoder.feed(good)


def test_decoder_refuses_input_after_an_error() -> None:
    good = encode_message([], b"x")
    decoder = MessageDecoder()
    with pytest.raises(ChecksumMismatch, match=r"^Prelude"):
        decoder.feed(b"\x00" * 12)
    with pytest.raises(EventStreamError, match="failed earlier"):
        decoder.feed(good)
    with pytest.raises(EventStreamError):
        decoder.eof()


def test_eof_inside_a_message_is_an_error() -> None:
    frame = encode_message([], b"payload")
    decoder = MessageDecoder()
    assert decoder.feed(frame[:-3]) == []
    assert decoder.buffered == len(frame) - 3
    with pytest.raises(InvalidMessageLength, match="ended inside"):
        decoder.eof()


def test_memoised_header_blocks_still_give_correct_headers() -> None:
    decoder = MessageDecoder()
    blocks = [[Header.string(":event-type", f"e{i}")] for i in range(100)]
    for headers in blocks + blocks:
        (message,) = decoder.feed(encode_message(headers, b"p"))
        assert message.headers == tuple(headers)
