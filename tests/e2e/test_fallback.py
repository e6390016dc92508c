"""End to end against the emulator: no dead air, and what the caller heard.

- A Bedrock failure that the daemon cannot recover (the emulator's ``error_after`` fault:
  a ``modelStreamErrorException`` frame ends the stream) plays the shipped apology clip to
  the caller, byte for byte, and the call then ends with the failure's close code.
- With the opt-in call log on, each assistant turn gets a line saying whether the caller
  heard it all or where a barge-in cut it off, on both carriers.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.resources
import json
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from actors.close_codes import CloseCode
from devkit.emulator import open_emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallScript, TwilioCaller, run_simulated_call
from devkit.simcall.asterisk_caller import SUBPROTOCOL, AsteriskCaller
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings, emulator_config

CLIPS = importlib.resources.files("actors").joinpath("fallback_clips")
APOLOGY = CLIPS.joinpath("apology.ulaw").read_bytes()
APOLOGY_16K = CLIPS.joinpath("apology.sln16").read_bytes()


# No recovery budget: the emulator's first fault is final, so the fallback is what runs
# (recovery before it is tested in tests/e2e/test_bedrock_recovery.py).
NO_RECOVERY = daemon_settings(sonic={"recovery_max_attempts": 0})


async def twilio_call_recording_audio(url: str) -> tuple[bytes, int | None, list[str]]:
    """A Twilio caller that speaks (a tone), records every ``media`` payload received after
    the last ``clear``, and echoes marks at once. Returns that audio, the close code and
    the event names received."""
    caller = TwilioCaller(stream_sid="MZ" + "0" * 32, call_sid="CA" + "1" * 32)
    audio: list[bytes] = []
    events: list[str] = []
    tone = bytes([0x10, 0x90] * 80)  # loud enough to count as speech: a turn starts
    async with open_websocket_url(url) as ws:
        await ws.send_message(caller.connected())
        await ws.send_message(caller.start())

        async def speak() -> None:
            with contextlib.suppress(ConnectionClosed):  # the reader records the close
                for i in range(10_000):
                    frame = tone if (i // 50) % 3 == 0 else b"\xff" * 160
                    await ws.send_message(caller.media(frame))
                    await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(speak)
            try:
                while True:
                    message = json.loads(await ws.get_message())
                    events.append(message["event"])
                    if message["event"] == "clear":
                        audio.clear()
                    elif message["event"] == "media":
                        audio.append(base64.b64decode(message["media"]["payload"]))
                    elif message["event"] == "mark":
                        await ws.send_message(caller.mark(message["mark"]["name"]))
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason is not None else None
            nursery.cancel_scope.cancel()
    return b"".join(audio), code, events


async def test_an_unrecoverable_bedrock_failure_plays_the_apology_then_ends(
    local_s3: LocalS3,
) -> None:
    with trio.fail_after(30):
        async with (
            open_emulator(emulator_config(error_after=1.5)) as emulator,
            open_daemon(NO_RECOVERY, daemon_overrides(emulator, local_s3)) as daemon,
        ):
            audio, code, events = await twilio_call_recording_audio(f"{daemon.url}/twilio/esther")
            failed = daemon.metrics.registry.get_sample_value(
                # A transient error with no budget left ends the call as unrecoverable.
                "novavoice_sonic_errors_total",
                {"type": "SonicUnrecoverable"},
            )
    assert code == CloseCode.SONIC_FAILED
    assert failed == 1
    # After the carrier was told to drop what it held: the clip, whole, in 20 ms frames.
    assert audio == APOLOGY + b"\xff" * (-len(APOLOGY) % 160)
    assert events[-1] == "mark"  # and the call waited for that mark before ending


async def asterisk_slin16_call_recording_audio(url: str) -> tuple[bytes, int | None]:
    """An Asterisk (newest release, ``slin16``) caller that speaks, records the binary
    audio received after the last ``FLUSH_MEDIA`` and answers each ``MARK_MEDIA`` at once.
    Returns that audio and the close code."""
    caller = AsteriskCaller(connection_id="c" * 16, channel_id="1234.5", format_name="slin16")
    audio: list[bytes] = []
    tone = (b"\x00\x20" + b"\x00\xe0") * 160  # 20 ms at 16 kHz, loud
    async with open_websocket_url(url, subprotocols=[SUBPROTOCOL]) as ws:
        await ws.send_message(caller.media_start())

        async def speak() -> None:
            with contextlib.suppress(ConnectionClosed):  # the reader records the close
                for i in range(10_000):
                    frame = tone if (i // 50) % 3 == 0 else bytes(640)
                    await ws.send_message(caller.media(frame))
                    await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(speak)
            try:
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        audio.append(message)
                        continue
                    command = json.loads(message)
                    if command.get("command") == "FLUSH_MEDIA":
                        audio.clear()
                    elif command.get("command") == "MARK_MEDIA":
                        await ws.send_message(caller.mark_processed(command["correlation_id"]))
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason is not None else None
            nursery.cancel_scope.cancel()
    return b"".join(audio), code


async def test_asterisk_slin16_hears_the_16_khz_apology(local_s3: LocalS3) -> None:
    with trio.fail_after(30):
        async with (
            open_emulator(emulator_config(error_after=1.5)) as emulator,
            open_daemon(NO_RECOVERY, daemon_overrides(emulator, local_s3)) as daemon,
        ):
            audio, code = await asterisk_slin16_call_recording_audio(
                f"{daemon.url}/asterisk/esther"
            )
    assert code == CloseCode.SONIC_FAILED
    assert audio == APOLOGY_16K + bytes(-len(APOLOGY_16K) % 640)


@pytest.mark.parametrize("dialect", ["twilio", "asterisk"])
async def test_the_call_log_says_what_the_caller_heard_of_each_turn(
    local_s3: LocalS3, tmp_path: Path, dialect: str
) -> None:
    # As in test_calls: 4 s answers at 4x real time; the caller barges in 0.3 s into the
    # first, and hears the second to its end.
    script = CallScript(
        length=None, max_turns=2, utterance_seconds=(0.6, 0.6), barge_in_turn=0,
        barge_in_delay=0.3,
    )  # fmt: skip
    log_path = tmp_path / "calls.jsonl"
    settings = daemon_settings(logging={"call_log_path": str(log_path)})
    with trio.fail_after(40):
        async with (
            open_emulator(emulator_config(reply_seconds=4.0)) as emulator,
            open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
        ):
            report = await run_simulated_call(
                daemon.url, dialect=dialect, assistant="esther", script=script
            )
    assert report.outcome == "completed", report
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    turns = [line for line in lines if line["role"] == "assistant"]
    assert [t["turn"] for t in turns] == [1, 2]
    cut, whole = turns
    assert cut["heard"] == "part" and cut["measured"] == "estimate"
    assert 0 < cut["heard_ms"] < cut["total_ms"] <= 4000
    assert cut["text"] and cut["text"].startswith(cut["heard_text"])
    assert len(cut["heard_text"]) < len(cut["text"])
    assert whole["heard"] == "all" and whole["measured"] == "mark"
    assert whole["heard_ms"] == whole["total_ms"] and 3900 <= whole["total_ms"] <= 4100
    assert whole["text"] and whole["text_stage"] == "final"
