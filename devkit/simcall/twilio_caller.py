"""The carrier's side of Twilio Media Streams (``<Connect><Stream>``), sans-IO.

Builds what Twilio sends (``connected``, ``start``, ``media`` with ``sequenceNumber``,
``chunk`` and ``timestamp`` as strings, ``dtmf``, ``mark`` echoes, ``stop``) and parses
what the daemon sends back (``media``, ``mark``, ``clear``), following
``reference/telephony.md`` §1. ``malformed(kind)`` produces the deliberately broken
messages the load harness uses to check that the daemon refuses them cleanly.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode, b64encode
from typing import Any

from actors.audio_codec import Encoding, MediaFormat
from actors.errors import (
    CarrierBadPayload,
    CarrierMalformedMessage,
    CarrierStreamMismatch,
    CarrierWrongFrameType,
)
from devkit.simcall.events import (
    AssistantAudio,
    ClearRequested,
    DaemonEvent,
    MarkRequested,
)

SAMPLE_RATE = 8000
FRAME_BYTES = 160
TWILIO_FORMAT = MediaFormat(Encoding.MULAW, SAMPLE_RATE)
MALFORMED_KINDS = ("bad_json", "bad_base64", "binary", "oversized")
"""Broken messages :meth:`TwilioCaller.malformed` can build (and what the daemon should
answer: close codes 4001, 4002, 4004 and 4005 in ``actors.errors``)."""

__all__ = ["FRAME_BYTES", "MALFORMED_KINDS", "TWILIO_FORMAT", "TwilioCaller"]


class TwilioCaller:
    """One Twilio Media Stream, from Twilio's side.

    Sequence numbers start at 1 with ``start`` (``connected`` carries none) and grow by
    one per message; ``chunk`` counts media messages from 1 and ``timestamp`` is the
    media time in milliseconds (20 ms per frame), as Twilio sends them.
    """

    fmt = TWILIO_FORMAT

    def __init__(
        self,
        *,
        stream_sid: str,
        call_sid: str,
        account_sid: str = "AC00000000000000000000000000000000",
        custom_parameters: dict[str, str] | None = None,
    ) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self.custom_parameters = dict(custom_parameters or {})
        self._sequence = 0
        self._chunk = 0

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    # --- carrier → daemon -------------------------------------------------------------

    def connected(self) -> str:
        """The first message of every stream."""
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self) -> str:
        """The stream's metadata: ids, tracks, custom parameters, μ-law 8 kHz mono."""
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.custom_parameters,
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": SAMPLE_RATE,
                        "channels": 1,
                    },
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes) -> str:
        """One frame of caller audio (μ-law bytes, normally 160 = 20 ms)."""
        timestamp = self._chunk * 20
        self._chunk += 1
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(timestamp),
                    "payload": b64encode(payload).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )

    def dtmf(self, digit: str) -> str:
        """The caller pressed a key."""
        return json.dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        """Echo of a mark the daemon sent: playback reached it (or a ``clear`` dropped it)."""
        return json.dumps(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        """The last message: the caller hung up."""
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )

    def malformed(self, kind: str) -> str | bytes:
        """A deliberately broken message of ``kind`` (one of :data:`MALFORMED_KINDS`)."""
        if kind == "bad_json":
            return '{"event": "media", "media": {"payload": '
        if kind == "bad_base64":
            msg = json.loads(self.media(b"\xff" * FRAME_BYTES))
            msg["media"]["payload"] = "not*base64!" * 20
            return json.dumps(msg)
        if kind == "binary":
            return b"\xff" * FRAME_BYTES
        if kind == "oversized":
            return self.media(b"\xff" * 60_000)  # ~80 KB of base64: over the 64 KiB cap
        raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")

    # --- daemon → carrier -------------------------------------------------------------

    def receive_text(self, text: str) -> list[DaemonEvent]:
        """Parse one TEXT message from the daemon."""
        try:
            msg = json.loads(text)
        except ValueError:
            raise CarrierMalformedMessage("daemon message is not JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
            raise CarrierMalformedMessage("daemon message has no 'event'")
        if msg.get("streamSid") != self.stream_sid:
            raise CarrierStreamMismatch("daemon message names another streamSid")
        event = msg["event"]
        if event == "media":
            payload = _field(msg, "media").get("payload")
            if not isinstance(payload, str):
                raise CarrierMalformedMessage("media.payload is not a string")
            try:
                audio = b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise CarrierBadPayload("media.payload is not base64") from None
            return [AssistantAudio(payload=audio, seconds=len(audio) / SAMPLE_RATE)]
        if event == "mark":
            name = _field(msg, "mark").get("name")
            if not isinstance(name, str) or not name:
                raise CarrierMalformedMessage("mark.name is not a string")
            return [MarkRequested(name=name)]
        if event == "clear":
            return [ClearRequested()]
        raise CarrierMalformedMessage(f"unknown event {event[:32]!r} from the daemon")

    def receive_bytes(self, data: bytes) -> list[DaemonEvent]:
        """Twilio takes no BINARY frames from the stream server."""
        raise CarrierWrongFrameType("binary frame sent to Twilio")


def _field(msg: dict[str, Any], name: str) -> dict[str, Any]:
    value = msg.get(name)
    if not isinstance(value, dict):
        raise CarrierMalformedMessage(f"{name} is not an object")
    return value
