"""Compare ``botocore.eventstream`` with our decoder: AWS suite results and decode speed.

Run: ``.venv/bin/python bench/eventstream_decode.py``. Prints, for each decoder, what it
does with AWS's public event-stream suite and a few hostile inputs, then frames per
CPU-second on Nova Sonic output frames (one frame per feed, as HTTP/2 DATA usually
delivers them; a 64 KiB chunked stream; one frame fed a byte at a time).
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore import eventstream as boto_es

from actors.sonic.eventstream import (
    Header,
    MessageDecoder,
    encode_message,
)

ROOT = Path(__file__).resolve().parents[1]

SUITE = ROOT.parent / "shared" / "vectors" / "eventstream"
BIDI = ROOT.parent / "shared" / "vectors" / "bedrock-bidi"


def _boto_decode_all(data: bytes) -> list[Any]:
    buffer = boto_es.EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def _ours_decode_all(data: bytes) -> list[Any]:
    decoder = MessageDecoder()
    messages: list[Any] = list(decoder.feed(data))
    decoder.eof()
    return messages


def suite_report() -> None:
    """Run both decoders over the AWS suite and a few hostile frames; print the outcomes."""
    print("== AWS event-stream suite ==")
    for kind in ("positive", "negative"):
        for path in sorted((SUITE / "encoded" / kind).iterdir()):
            data = path.read_bytes()
            expected = (SUITE / "decoded" / kind / path.name).read_text().strip()
            for label, decode in (("botocore", _boto_decode_all), ("ours", _ours_decode_all)):
                try:
                    result = decode(data)
                    outcome = f"ok, {len(result)} message(s)"
                    if kind == "positive" and label == "botocore" and result[0].headers:
                        # botocore keeps values only: the wire type of each header is lost.
                        kinds = sorted({type(v).__name__ for v in result[0].headers.values()})
                        outcome += f"; header values as {'/'.join(kinds)}, types lost"
                except Exception as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                if kind == "negative":
                    outcome += f"   (suite expects: {expected})"
                print(f"  {kind:8} {path.name:24} {label:8} {outcome}")

    print("== hostile frames that pass the CRCs ==")
    for name, frame in _hostile_frames().items():
        for label, decode in (("botocore", _boto_decode_all), ("ours", _ours_decode_all)):
            try:
                outcome = f"accepted {len(decode(frame))} message(s)"
            except Exception as exc:
                outcome = f"{type(exc).__module__}.{type(exc).__name__}"
            print(f"  {name:28} {label:8} {outcome}")


def _raw_frame(headers_block: bytes, payload: bytes, total_delta: int = 0) -> bytes:
    total = 16 + len(headers_block) + len(payload) + total_delta
    head = struct.pack("!II", total, len(headers_block))
    prelude = head + struct.pack("!I", zlib.crc32(head))
    body = prelude + headers_block + payload
    return body + struct.pack("!I", zlib.crc32(body))


def _hostile_frames() -> dict[str, bytes]:
    return {
        "unknown header type 42": _raw_frame(b"\x01a\x2a", b""),
        "truncated int64 header": _raw_frame(b"\x01a\x05\x00\x01", b""),
        "non-UTF-8 string header": _raw_frame(b"\x01a\x07\x00\x02\xff\xfe", b""),
        "total_length < prelude": struct.pack("!II", 8, 0)
        + struct.pack("!I", zlib.crc32(struct.pack("!II", 8, 0))),
    }


def _sonic_frames() -> list[bytes]:
    frames: list[bytes] = []
    for path in sorted(BIDI.glob("*.json")):
        vector = json.loads(path.read_text())
        for response in vector["responses"]:
            if response["expect"]["kind"] == "event":
                frames.append(bytes.fromhex(response["frame_hex"]))
    # A 24 kHz, 40 ms audioOutput chunk: the bulk of what a live call receives.
    pcm = bytes(range(256)) * 8
    event = json.dumps(
        {"event": {"audioOutput": {"contentId": "x" * 36, "content": base64.b64encode(pcm)}}},
        default=bytes.decode,
    ).encode()
    payload = json.dumps({"bytes": base64.b64encode(event).decode()}).encode()
    headers = [
        Header.string(":event-type", "chunk"),
        Header.string(":content-type", "application/json"),
        Header.string(":message-type", "event"),
    ]
    frames.append(encode_message(headers, payload))
    return frames


def _rate(label: str, count: int, run: Callable[[], None], repeat: int) -> None:
    start = time.process_time()
    for _ in range(repeat):
        run()
    elapsed = time.process_time() - start
    print(f"  {label:52} {count * repeat / elapsed:12,.0f} frames/CPU-s")


def speed_report() -> None:
    """Time both decoders on the Sonic output frames."""
    frames = _sonic_frames()
    sizes = ", ".join(str(len(f)) for f in frames)
    print(f"== decode speed ({len(frames)} Sonic output frames, bytes: {sizes}) ==")

    def boto_per_frame() -> None:
        buffer = boto_es.EventStreamBuffer()
        for frame in frames:
            buffer.add_data(frame)
            for _ in buffer:
                pass

    def ours_per_frame() -> None:
        decoder = MessageDecoder()
        for frame in frames:
            decoder.feed(frame)

    stream = b"".join(frames) * 40
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

    def boto_chunked() -> None:
        buffer = boto_es.EventStreamBuffer()
        for chunk in chunks:
            buffer.add_data(chunk)
            for _ in buffer:
                pass

    def ours_chunked() -> None:
        decoder = MessageDecoder()
        for chunk in chunks:
            decoder.feed(chunk)

    one = frames[-1]
    single_bytes = [one[i : i + 1] for i in range(len(one))]

    def boto_bytewise() -> None:
        buffer = boto_es.EventStreamBuffer()
        for byte in single_bytes:
            buffer.add_data(byte)
            for _ in buffer:
                pass

    def ours_bytewise() -> None:
        decoder = MessageDecoder()
        for byte in single_bytes:
            decoder.feed(byte)

    _rate("botocore EventStreamBuffer, one frame per feed", len(frames), boto_per_frame, 4000)
    _rate("ours MessageDecoder, one frame per feed", len(frames), ours_per_frame, 4000)
    _rate("botocore, 64 KiB chunks", len(frames) * 40, boto_chunked, 100)
    _rate("ours, 64 KiB chunks", len(frames) * 40, ours_chunked, 100)
    _rate(f"botocore, {len(one)}-byte frame fed 1 byte at a time", 1, boto_bytewise, 30)
    _rate(f"ours, {len(one)}-byte frame fed 1 byte at a time", 1, ours_bytewise, 30)


if __name__ == "__main__":
    suite_report()
    speed_report()
