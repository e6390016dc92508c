"""Per-frame cost of the carrier audio path: G.711 tables, rechunking, dialect parsing.

Prints mean µs per 20 ms frame (best of 5 runs of 20,000 frames) for: μ-law/A-law decode
and encode, 20 ms → 32 ms rechunking, a Twilio ``media`` message parsed and one built, and
an Asterisk binary frame. A 20 ms frame leaves 20,000 µs of real time per call.

Run: ``.venv/bin/python bench/audio_codec.py``
"""

from __future__ import annotations

import json
import sys
import timeit
from base64 import b64encode
from collections.abc import Callable

import numpy as np

from actors.audio_codec import (
    Rechunker,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)
from sessions.dialects import AsteriskDialect, SendAudio, TwilioDialect

FRAMES = 20_000


def per_frame_us(fn: Callable[[], object]) -> float:
    """Best-of-5 mean microseconds per call of ``fn``."""
    fn()  # warm up (builds the lazily cached tables)
    return min(timeit.repeat(fn, number=FRAMES, repeat=5)) / FRAMES * 1e6


def main() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(160) / 8000
    speech = (8000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 500, 160)).astype("<i2")
    pcm_20ms = speech.tobytes()  # 320 B PCM16 at 8 kHz
    ulaw_20ms = pcm16_to_ulaw(pcm_20ms)  # 160 B
    alaw_20ms = pcm16_to_alaw(pcm_20ms)

    twilio = TwilioDialect()
    twilio.receive_text(
        json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "accountSid": "AC1",
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
    )
    seq = [1]
    payload = b64encode(ulaw_20ms).decode()

    def twilio_in() -> object:
        seq[0] += 1
        n = str(seq[0])
        return twilio.receive_text(
            '{"event":"media","sequenceNumber":"' + n + '","media":{"track":"inbound",'
            '"chunk":"' + n + '","timestamp":"' + n + '0","payload":"' + payload + '"},'
            '"streamSid":"MZ1"}'
        )

    asterisk = AsteriskDialect()
    asterisk.receive_text(
        "MEDIA_START connection_id:c1 channel:WebSocket/c1 channel_id:1.1 format:ulaw "
        "optimal_frame_size:160 ptime:20"
    )
    rechunker = Rechunker(512)
    rows = [
        ("μ-law decode 160 B → PCM16", lambda: ulaw_to_pcm16(ulaw_20ms)),
        ("μ-law encode PCM16 → 160 B", lambda: pcm16_to_ulaw(pcm_20ms)),
        ("A-law decode 160 B → PCM16", lambda: alaw_to_pcm16(alaw_20ms)),
        ("A-law encode PCM16 → 160 B", lambda: pcm16_to_alaw(pcm_20ms)),
        ("rechunk 320 B frames → 512 B chunks", lambda: rechunker.push(pcm_20ms)),
        ("Twilio media message parsed (JSON+b64)", twilio_in),
        ("Twilio media message built (b64+str)", lambda: twilio.send(SendAudio(payload=ulaw_20ms))),
        ("Twilio in + μ-law decode", lambda: (twilio_in(), ulaw_to_pcm16(ulaw_20ms))),
        ("Asterisk binary frame received", lambda: asterisk.receive_bytes(ulaw_20ms)),
        ("Asterisk audio sent (whole frame)", lambda: asterisk.send(SendAudio(payload=ulaw_20ms))),
    ]
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}; µs per 20 ms frame")
    for label, fn in rows:
        us = per_frame_us(fn)
        print(f"  {label:<42} {us:7.2f} µs  ({us / 200:.4f} % of real time)")


if __name__ == "__main__":
    main()
