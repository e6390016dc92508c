"""Sans-IO throughput of the Sonic layers, in CPU time (``time.process_time``).

Run: ``.venv/bin/python bench/sansio_throughput.py [--seconds 2]``. Prints:

- signed ``audioInput`` events per CPU-second through builder + chunk wrap + event signer
  (32 ms of 16 kHz PCM16 = 1024 bytes, and 20 ms of 8 kHz = 320 bytes), and the same split
  by stage;
- output frames per CPU-second through decoder + parser (audioOutput 40 ms at 24 kHz, and
  a text/contentEnd mix).

The issue's goal for the whole client path is >= 20,000 signed audioInput events per core
per second; these figures are the sans-IO share of that budget.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable

from actors.sonic.events import audio_input, encode_input_chunk, encode_output_chunk
from actors.sonic.eventstream import MessageDecoder
from actors.sonic.output import parse_output_message
from actors.sonic.signing import Credentials, EventSigner

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
PROMPT = "3f2a9c1e-8d4b-4e6f-a1b2-c3d4e5f60718"
CONTENT = "9e8d7c6b-5a49-4837-a625-140312f0e1d2"
START_MS = 1762179725121


def rate(label: str, step: Callable[[int], object], seconds: float) -> float:
    """Run ``step(i)`` for about ``seconds`` of CPU time; print and return calls per CPU-s."""
    count, batch = 0, 256
    start = time.process_time()
    while True:
        for i in range(count, count + batch):
            step(i)
        count += batch
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            break
    per_second = count / elapsed
    print(f"  {label:58} {per_second:12,.0f} /CPU-s  ({1e6 / per_second:6.1f} µs each)")
    return per_second


def input_path(seconds: float) -> None:
    """Builder + wrap + sign for audioInput events."""
    print("== signed audioInput events (builder + encode_input_chunk + EventSigner.sign) ==")
    for label, pcm in (
        ("32 ms @ 16 kHz (1024 B PCM)", bytes(1024)),
        ("20 ms @ 8 kHz (320 B)", bytes(320)),
    ):
        signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature="00" * 32)

        def full(i: int, pcm: bytes = pcm, signer: EventSigner = signer) -> bytes:
            nova = audio_input(prompt_name=PROMPT, content_name=CONTENT, pcm=pcm)
            return signer.sign(encode_input_chunk(nova), START_MS + 32 * i)

        rate(f"full path, {label}", full, seconds)
    pcm = bytes(1024)
    nova = audio_input(prompt_name=PROMPT, content_name=CONTENT, pcm=pcm)
    inner = encode_input_chunk(nova)
    signer = EventSigner(credentials=CREDS, region="us-east-1", seed_signature="00" * 32)
    print("  -- by stage, 1024 B PCM --")
    rate(
        "audio_input builder",
        lambda i: audio_input(prompt_name=PROMPT, content_name=CONTENT, pcm=pcm),
        seconds / 2,
    )
    rate("encode_input_chunk", lambda i: encode_input_chunk(nova), seconds / 2)
    rate("EventSigner.sign", lambda i: signer.sign(inner, START_MS + 32 * i), seconds / 2)


def output_path(seconds: float) -> None:
    """Decoder + parser for output frames."""
    print("== output frames (MessageDecoder.feed + parse_output_message) ==")
    ids = {"sessionId": PROMPT, "promptName": PROMPT, "completionId": CONTENT, "contentId": CONTENT}
    audio = json.dumps(
        {"event": {"audioOutput": {**ids, "content": base64.b64encode(bytes(1920)).decode()}}}
    ).encode()
    text = json.dumps(
        {"event": {"textOutput": {**ids, "role": "ASSISTANT", "content": "Sure, I can help."}}}
    ).encode()
    end = json.dumps(
        {"event": {"contentEnd": {**ids, "type": "TEXT", "stopReason": "END_TURN"}}}
    ).encode()
    for label, frames in (
        ("audioOutput, 40 ms @ 24 kHz (1920 B PCM)", [encode_output_chunk(audio)]),
        ("textOutput + contentEnd mix", [encode_output_chunk(text), encode_output_chunk(end)]),
    ):
        decoder = MessageDecoder()

        def step(i: int, frames: list[bytes] = frames, decoder: MessageDecoder = decoder) -> None:
            for message in decoder.feed(frames[i % len(frames)]):
                parse_output_message(message)

        rate(f"{label}, {len(frames[0])} B frame", step, seconds)


def main() -> None:
    """Parse arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per figure")
    args = parser.parse_args()
    input_path(args.seconds)
    output_path(args.seconds)


if __name__ == "__main__":
    main()
