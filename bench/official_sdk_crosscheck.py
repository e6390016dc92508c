"""Cross-check the emulator against the official AWS SDK (an implementation no one here wrote).

Needs Python >= 3.12 with ``aws_sdk_bedrock_runtime[awscrt]`` and this project installed, e.g.::

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/sdkvenv
    /tmp/sdkvenv/bin/pip install 'aws_sdk_bedrock_runtime[awscrt]' -e .
    /tmp/sdkvenv/bin/python bench/official_sdk_crosscheck.py

It starts ``novavoice emulator`` as a subprocess (``--emulator-python`` picks the interpreter),
then drives one full session through the SDK's CRT HTTP/2 transport (reference §5.1, §5.3):
signed request, signed events, caller audio → USER transcript, assistant audio, completion end;
a second utterance over the assistant's audio → the barge-in signal; clean close. It also
checks that a wrong secret is refused before the stream. The SDK is asyncio-only, so this
script (and only this script) uses asyncio. Prints what it saw and PASS/FAIL; exit status 1
on failure, 0 on success, 0 with SKIP when the SDK is not importable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import subprocess
import sys
import time
import uuid
from typing import Any

RATE_IN = 16000
RATE_OUT = 24000
KEY, SECRET = "AKIDCROSSCHECK", "crosscheck-secret"


def _tone(seconds: float) -> bytes:
    import numpy as np

    t = np.arange(round(seconds * RATE_IN)) / RATE_IN
    return (0.3 * 32767 * np.sin(2 * np.pi * 190 * t)).astype("<i2").tobytes()


def _silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE_IN))


def _ev(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"event": {name: body}}).encode()


def start_emulator(python: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Run the emulator with quick turns; return the process and its listening line."""
    proc = subprocess.Popen(
        [python, "-m", "sessions.cli", "emulator", "--listen", "127.0.0.1:0",
         "--access-key-id", KEY, "--secret-access-key", SECRET, "--region", "us-east-1",
         "--pause-scale", "0.2", "--time-to-first-audio", "0.1", "--reply-seconds", "3",
         "--audio-speed", "3", "--min-speech", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return proc, line


async def run_session(url: str, ca_file: str, secret: str) -> dict[str, Any]:
    """One full session through the official SDK; returns what was observed."""
    from aws_sdk_bedrock_runtime.client import (  # type: ignore[import-not-found]
        AsyncBedrockRuntimeClient,
    )
    from aws_sdk_bedrock_runtime.config import (  # type: ignore[import-not-found]
        AsyncBedrockRuntimeConfig,
    )
    from aws_sdk_bedrock_runtime.models import (  # type: ignore[import-not-found]
        BidirectionalInputPayloadPart,
        InvokeModelWithBidirectionalStreamInputChunk,
        InvokeModelWithBidirectionalStreamOperationInput,
    )
    from awscrt.io import ClientTlsContext, TlsContextOptions  # type: ignore[import-not-found]
    from smithy_http.aio.crt import AWSCRTHTTPClient  # type: ignore[import-not-found]

    transport = AWSCRTHTTPClient()
    # The SDK offers no CA option for CRT; replace its private TLS context (reference §5.3).
    options = TlsContextOptions()
    options.override_default_trust_store_from_path(ca_filepath=ca_file)
    transport._tls_ctx = ClientTlsContext(options)
    config = await AsyncBedrockRuntimeConfig.resolve(
        region="us-east-1",
        endpoint_uri=url,
        transport=transport,
        aws_access_key_id=KEY,
        aws_secret_access_key=secret,
    )
    client = AsyncBedrockRuntimeClient(config=config)
    stream = await client.invoke_model_with_bidirectional_stream(
        InvokeModelWithBidirectionalStreamOperationInput(model_id="amazon.nova-2-sonic-v1:0")
    )

    async def send(event: bytes) -> None:
        chunk = InvokeModelWithBidirectionalStreamInputChunk(
            value=BidirectionalInputPayloadPart(bytes_=event)
        )
        await stream.input_stream.send(chunk)

    prompt, mic = str(uuid.uuid4()), str(uuid.uuid4())
    await send(_ev("sessionStart", {
        "inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7},
        "turnDetectionConfiguration": {"endpointingSensitivity": "HIGH"}}))  # fmt: skip
    await send(_ev("promptStart", {
        "promptName": prompt, "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {"mediaType": "audio/lpcm", "sampleRateHertz": RATE_OUT,
            "sampleSizeBits": 16, "channelCount": 1, "voiceId": "matthew",
            "encoding": "base64", "audioType": "SPEECH"}}))  # fmt: skip
    _, output = await stream.await_output()
    await send(_ev("contentStart", {
        "promptName": prompt, "contentName": "sys", "type": "TEXT", "role": "SYSTEM",
        "interactive": False, "textInputConfiguration": {"mediaType": "text/plain"}}))  # fmt: skip
    await send(_ev("textInput", {"promptName": prompt, "contentName": "sys",
                                 "content": "You are a cross-check."}))  # fmt: skip
    await send(_ev("contentEnd", {"promptName": prompt, "contentName": "sys"}))
    await send(_ev("contentStart", {
        "promptName": prompt, "contentName": mic, "type": "AUDIO", "role": "USER",
        "interactive": True, "audioInputConfiguration": {"mediaType": "audio/lpcm",
            "sampleRateHertz": RATE_IN, "sampleSizeBits": 16, "channelCount": 1,
            "audioType": "SPEECH", "encoding": "base64"}}))  # fmt: skip

    async def send_audio(pcm: bytes) -> None:
        for i in range(0, len(pcm), 1024):
            b64 = base64.b64encode(pcm[i : i + 1024]).decode()
            await send(
                _ev("audioInput", {"promptName": prompt, "contentName": mic, "content": b64})
            )

    seen: dict[str, Any] = {"events": [], "audio_bytes": 0, "texts": [], "errors": []}
    started = time.perf_counter()
    await send_audio(_silence(0.2) + _tone(0.6) + _silence(0.4))
    barged = False
    while True:
        try:
            item = await asyncio.wait_for(output.receive(), timeout=15)
        except Exception as exc:  # the SDK raises modeled exceptions from receive()
            seen["errors"].append(f"{type(exc).__name__}: {exc}")
            break
        if item is None:
            break
        event = json.loads(item.value.bytes_)["event"]
        ((name, body),) = event.items()
        seen["events"].append(name)
        if name == "audioOutput":
            seen["audio_bytes"] += len(base64.b64decode(body["content"]))
            if "first_audio_s" not in seen:
                seen["first_audio_s"] = time.perf_counter() - started
            if not barged:  # talk over the assistant's reply
                barged = True
                await send_audio(_tone(0.4) + _silence(0.4))
        elif name == "textOutput":
            seen["texts"].append((body.get("role"), body["content"]))
        elif name == "contentStart" and "additionalModelFields" in body:
            seen.setdefault("stages", []).append(
                (body["role"], json.loads(body["additionalModelFields"])["generationStage"])
            )
        elif name == "completionEnd" and body.get("stopReason") == "END_TURN":
            break
    await send(_ev("contentEnd", {"promptName": prompt, "contentName": mic}))
    await send(_ev("promptEnd", {"promptName": prompt}))
    await send(_ev("sessionEnd", {}))
    await stream.input_stream.close()
    while True:  # drain until the server ends the stream
        try:
            item = await asyncio.wait_for(output.receive(), timeout=10)
        except Exception as exc:
            seen["errors"].append(f"after close: {type(exc).__name__}: {exc}")
            break
        if item is None:
            seen["closed_cleanly"] = True
            break
        seen["events"].append(json.loads(item.value.bytes_)["event"].popitem()[0])
    return seen


async def run_bad_secret(url: str, ca_file: str) -> str:
    """Open a stream with the wrong secret; return the error the SDK raised."""
    try:
        seen = await run_session(url, ca_file, "wrong-secret")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"no error ({seen})"


def main() -> int:
    """Run the cross-check and print the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator-python", default=sys.executable)
    args = parser.parse_args()
    version: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)
    if version < (3, 12):
        print("SKIP: the official SDK needs Python >= 3.12")
        return 0
    missing = [
        m for m in ("aws_sdk_bedrock_runtime", "awscrt") if importlib.util.find_spec(m) is None
    ]
    if missing:
        print(f"SKIP: aws_sdk_bedrock_runtime[awscrt] not installed (missing {missing})")
        return 0
    proc, line = start_emulator(args.emulator_python)
    try:
        print(f"emulator: {line['url']} (CA {line['ca_file']})")
        seen = asyncio.run(run_session(line["url"], line["ca_file"], SECRET))
        refused = asyncio.run(run_bad_secret(line["url"], line["ca_file"]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    stages = seen.get("stages", [])
    texts = seen["texts"]
    checks = {
        "no in-stream errors": not seen["errors"],
        "USER FINAL transcript": ("USER", "FINAL") in stages,
        "ASSISTANT SPECULATIVE then FINAL": ("ASSISTANT", "SPECULATIVE") in stages
        and ("ASSISTANT", "FINAL") in stages,
        "assistant audio received": seen["audio_bytes"] > 0,
        "barge-in signal": ("ASSISTANT", '{ "interrupted" : true }') in texts,
        "completionEnd END_TURN after the second utterance": seen["events"].count("completionEnd")
        >= 2,
        "stream closed cleanly after sessionEnd": seen.get("closed_cleanly", False),
        "wrong secret refused before the stream": "no error" not in refused,
    }
    print(f"events received: {len(seen['events'])}, audio bytes: {seen['audio_bytes']}, "
          f"first audio after {seen.get('first_audio_s', float('nan')):.2f} s")  # fmt: skip
    print(f"texts: {texts}")
    print(f"errors: {seen['errors']}")
    print(f"wrong secret: {refused}")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
