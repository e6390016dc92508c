"""Realistic carrier message samples (shapes from reference/telephony.md §1-§2)."""

from __future__ import annotations

import json
from base64 import b64encode

STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL_SID = "CA5d3b4b1c9f1e4c6b8a0f2e7d9c1b3a5f"
ACCOUNT_SID = "AC25e16e9a716a4a1786a7c83f58e30482"


def twilio_connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def twilio_start(
    custom: dict[str, object] | None = None, seq: str = "1", fmt: dict[str, object] | None = None
) -> str:
    media_format: dict[str, object] = {"encoding": "audio/x-mulaw", "sampleRate": 8000}
    media_format["channels"] = 1
    media_format.update(fmt or {})
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "accountSid": ACCOUNT_SID,
                "streamSid": STREAM_SID,
                "callSid": CALL_SID,
                "tracks": ["inbound"],
                "mediaFormat": media_format,
                "customParameters": custom if custom is not None else {"FirstName": "Jane"},
            },
            "streamSid": STREAM_SID,
        }
    )


def twilio_media(seq: int, chunk: int, payload: bytes, track: str = "inbound") -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str((chunk - 1) * 20),
                "payload": b64encode(payload).decode(),
            },
            "streamSid": STREAM_SID,
        }
    )


def twilio_dtmf(seq: int, digit: str) -> str:
    return json.dumps(
        {
            "event": "dtmf",
            "streamSid": STREAM_SID,
            "sequenceNumber": str(seq),
            "dtmf": {"track": "inbound_track", "digit": digit},
        }
    )


def twilio_mark(seq: int, name: str) -> str:
    return json.dumps(
        {
            "event": "mark",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "mark": {"name": name},
        }
    )


def twilio_stop(seq: int) -> str:
    return json.dumps(
        {
            "event": "stop",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
        }
    )


CONNECTION_ID = "e226e283-c90a-4ea9-9e37-389000b9ef47"
CHANNEL = "WebSocket/connection1-00000001"
CHANNEL_ID = "1761234567.42"


def asterisk_media_start_plain(fmt: str = "ulaw", frame: int = 160) -> str:
    return (
        f"MEDIA_START connection_id:{CONNECTION_ID} channel:{CHANNEL} channel_id:{CHANNEL_ID} "
        f"format:{fmt} optimal_frame_size:{frame} ptime:20"
    )


def asterisk_media_start_json(
    fmt: str = "slin16", frame: int = 640, variables: dict[str, str] | None = None
) -> str:
    return json.dumps(
        {
            "event": "MEDIA_START",
            "connection_id": CONNECTION_ID,
            "channel": CHANNEL,
            "channel_id": CHANNEL_ID,
            "format": fmt,
            "optimal_frame_size": frame,
            "ptime": 20,
            "channel_variables": variables or {"MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(frame)},
        },
        separators=(",", ":"),
    )
