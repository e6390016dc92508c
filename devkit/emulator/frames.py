"""The emulator's side of Bedrock's chunk wrapping (reference §2.2–§2.3), sans-IO.

Kept separate from the client's ``events`` module on purpose: the emulator is a second,
independent reading of the format, so the two implementations check each other.
"""

from __future__ import annotations

import base64
import binascii
import json

import attrs

from actors.sonic.eventstream import Header, HeaderType, Message, encode_message

__all__ = [
    "FrameProblem",
    "corrupt_crc",
    "exception_frame",
    "input_event_json",
    "output_chunk_frame",
]


@attrs.frozen
class FrameProblem:
    """An input message that is not a Bedrock ``chunk`` event; ``message`` explains why."""

    message: str


def output_chunk_frame(nova_event_json: bytes) -> bytes:
    """A ``chunk`` event frame carrying one Nova output event."""
    payload = b'{"bytes":"' + base64.b64encode(nova_event_json) + b'"}'
    return encode_message(
        (
            Header.string(":message-type", "event"),
            Header.string(":event-type", "chunk"),
            Header.string(":content-type", "application/json"),
        ),
        payload,
    )


def exception_frame(exception_type: str, message: str, **extra: object) -> bytes:
    """A modeled exception frame (``:exception-type`` is the lowerCamel union member)."""
    body = json.dumps({"message": message, **extra}, separators=(",", ":")).encode()
    return encode_message(
        (
            Header.string(":message-type", "exception"),
            Header.string(":exception-type", exception_type),
            Header.string(":content-type", "application/json"),
        ),
        body,
    )


def corrupt_crc(frame: bytes) -> bytes:
    """The same frame with its message CRC flipped (for malformed-frame injection)."""
    return frame[:-4] + bytes(b ^ 0xFF for b in frame[-4:])


def _header_is(message: Message, name: str, value: str) -> bool:
    return any(
        h.name == name and h.type is HeaderType.STRING and h.value == value for h in message.headers
    )


def input_event_json(inner: Message) -> bytes | FrameProblem:
    """The Nova event JSON inside an (already unsigned) inner input message."""
    if not _header_is(inner, ":message-type", "event") or not _header_is(
        inner, ":event-type", "chunk"
    ):
        return FrameProblem("Input messages must have :message-type event and :event-type chunk")
    try:
        body = json.loads(inner.payload)
        raw = body["bytes"]
        if not isinstance(raw, str):
            raise TypeError("bytes is not a string")
        return base64.b64decode(raw, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return FrameProblem(f'Input chunk payload must be {{"bytes": "<base64>"}} ({exc})')
