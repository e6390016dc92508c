"""Two per-frame costs behind issue 13's levers, measured in one process, interleaved.

1. 100 ms of assistant audio to Twilio: five 20 ms ``media`` messages against one 100 ms
   message (``CALL_AUDIO_MESSAGE_MS``), each through ``TwilioDialect.send`` and wsproto's
   server-side framing (no socket: the four saved ``send`` syscalls come on top).
2. A 160-byte μ-law caller frame decoded to PCM16: numpy table indexing (the old
   ``ulaw_to_pcm16``) against ``actors.audio_codec.ulaw_to_pcm16`` (two ``bytes.translate``).

Prints the minimum and the median over ``--rounds`` alternations (each the best of 3 timeit
repeats), so other load on the machine shows as spread, not as a difference.

    .venv/bin/python bench/carrier_messages.py
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.audio_codec import ulaw_decode_table, ulaw_to_pcm16
from devkit.simcall import TwilioCaller
from sessions.dialects import SendAudio
from sessions.dialects.twilio import TwilioDialect


def _server() -> WSConnection:
    server = WSConnection(ConnectionType.SERVER)
    client = WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="bench", target="/twilio/esther")))
    for _ in server.events():
        pass
    server.send(AcceptConnection())
    return server


def _compare(cases: dict[str, Callable[[], object]], number: int, rounds: int) -> None:
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            best = min(timeit.repeat(case, number=number, repeat=3))
            results[name].append(best / number * 1e6)
    for name, values in results.items():
        values.sort()
        print(f"  {name:<34} min {values[0]:8.2f} µs  median {values[len(values) // 2]:8.2f} µs")


def main() -> int:
    """Run both comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    dialect = TwilioDialect(path="/twilio/esther")
    caller = TwilioCaller(stream_sid="MZ00", call_sid="CA00")
    dialect.receive_text(caller.connected())
    dialect.receive_text(caller.start())
    server = _server()
    audio = os.urandom(800)  # 100 ms of 8 kHz μ-law

    def five_messages() -> None:
        for i in range(5):
            for message in dialect.send(SendAudio(payload=audio[i * 160 : (i + 1) * 160])):
                server.send(TextMessage(data=str(message)))

    def one_message() -> None:
        for message in dialect.send(SendAudio(payload=audio)):
            server.send(TextMessage(data=str(message)))

    print("100 ms of assistant audio to Twilio (dialect + WebSocket framing):")
    _compare({"5 x 20 ms messages": five_messages, "1 x 100 ms message": one_message},
             5000, args.rounds)  # fmt: skip
    frame = os.urandom(160)
    table = ulaw_decode_table()

    def numpy_decode() -> bytes:
        return table[np.frombuffer(frame, dtype=np.uint8)].tobytes()

    assert numpy_decode() == ulaw_to_pcm16(frame)
    print("one 160-byte μ-law frame decoded to PCM16:")
    _compare({"numpy indexing (before)": numpy_decode,
              "bytes.translate (ulaw_to_pcm16)": lambda: ulaw_to_pcm16(frame)},
             20000, args.rounds)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
