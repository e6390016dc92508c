"""No dead air: a call whose assistant cannot go on plays the fallback clip, then ends or
transfers. A Twilio peer and a scripted Sonic over memory streams, autojump clock."""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.resources
import json
from pathlib import Path

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed

from actors.close_codes import CloseCode
from actors.errors import ConfigError, PromptStoreError, SonicStreamError
from actors.fallback_audio import (
    SHIPPED_CLIP,
    FallbackClips,
    load_fallback_clips,
    shipped_fallback_clips,
)
from actors.sonic.recovery import RecoveryPolicy
from devkit.fake_prompt_store import FakePromptStore
from sessions.call import CallChannel
from sessions.config import CallSettings
from sessions.fallback import needs_fallback
from tests.daemon.fakes import FakeSonic, TwilioPeer
from tests.daemon.test_call_channel import run_scenario as _run_scenario
from tests.daemon.test_call_channel import send_frames, ulaw_frames

APOLOGY = importlib.resources.files("actors").joinpath("fallback_clips/apology.ulaw").read_bytes()
APOLOGY_SECONDS = len(APOLOGY) / 8000
MARGIN = CallSettings().fallback_play_margin
TARGET = "+15551234567"
WITH_TRANSFER = (
    "---\ntools:\n  - name: human\n    description: a person\n    kind: transfer\n"
    f"    target: '{TARGET}'\n---\nYou are Esther.\n"
)

# These calls cannot recover: the fallback is what is under test (recovery has its own tests,
# tests/daemon/test_sonic_recovery.py), so every Sonic failure here is the last one.
NO_RECOVERY = RecoveryPolicy(max_attempts=0, stall_timeout=0.0)
run_scenario = functools.partial(_run_scenario, recovery=NO_RECOVERY)


def padded(clip: bytes) -> bytes:
    """``clip`` as the carrier receives it: whole 20 ms frames, the last padded with μ-law
    silence."""
    return clip + b"\xff" * (-len(clip) % 160)


def audio_after_clear(peer: TwilioPeer) -> bytes:
    """The μ-law audio the peer received after the last ``clear``."""
    events = [m["event"] for m in peer.received]
    last_clear = len(events) - 1 - events[::-1].index("clear")
    return b"".join(
        base64.b64decode(m["media"]["payload"])
        for m in peer.received[last_clear:]
        if m["event"] == "media"
    )


async def play_and_echo_marks(peer: TwilioPeer) -> None:
    """Like Twilio: play what arrives in real time; echo each mark once playback reaches it."""
    playing_until = 0.0

    async def echo(at: float, name: str) -> None:
        await trio.sleep_until(at)
        with contextlib.suppress(ConnectionClosed):
            await peer.ws.send_message(peer.caller.mark(name))

    async with trio.open_nursery() as nursery:
        try:
            while True:
                message = json.loads(await peer.ws.get_message())
                peer.received.append(message)
                now = trio.current_time()
                if message["event"] == "media":
                    seconds = len(base64.b64decode(message["media"]["payload"])) / 8000
                    playing_until = max(playing_until, now) + seconds
                elif message["event"] == "clear":
                    playing_until = now
                elif message["event"] == "mark":
                    nursery.start_soon(echo, playing_until, message["mark"]["name"])
        except ConnectionClosed:
            nursery.cancel_scope.cancel()


@attrs.define
class FakeControl:
    """Call control that records transfers and accepts (or refuses) them."""

    accept: bool = True
    targets: list[str] = attrs.field(factory=list)

    async def transfer(self, target: str) -> bool:
        await trio.lowlevel.checkpoint()
        self.targets.append(target)
        return self.accept


async def test_an_unrecoverable_sonic_failure_plays_the_apology_then_ends_with_its_code(
    autojump_clock: trio.abc.Clock,
) -> None:
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        failed_at = trio.current_time()
        sonic.streams[0].feed(SonicStreamError("throttlingException", "slow down"))
        await peer.receive_all()  # until the daemon closes the socket
        ended_at.append(trio.current_time() - failed_at)

    summary, peer, _, _ = await run_scenario(script, peer_reads=False)
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("sonic_error", CloseCode.SONIC_THROTTLED)
    # The carrier was told to drop what it held, then got the clip, byte for byte, then a mark.
    assert audio_after_clear(peer) == padded(APOLOGY)
    assert peer.received[-1]["event"] == "mark"
    # This peer never echoes marks: the call waited the clip's length plus the margin.
    assert summary.fallback == "cut"
    assert ended_at[0] == pytest.approx(APOLOGY_SECONDS + MARGIN, abs=0.2)


async def test_the_call_ends_as_soon_as_the_carrier_confirms_the_clip_was_heard(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    log_path = tmp_path / "calls.jsonl"
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        failed_at = trio.current_time()
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))
        await play_and_echo_marks(peer)  # until the daemon closes the socket
        ended_at.append(trio.current_time() - failed_at)

    summary, peer, _, metrics = await run_scenario(script, peer_reads=False, call_log_path=log_path)
    assert summary.end is not None and summary.end.code == CloseCode.SONIC_FAILED
    assert summary.fallback == "heard"
    fallbacks = metrics.registry.get_sample_value("novavoice_fallbacks_total", {"outcome": "heard"})
    assert fallbacks == 1
    assert audio_after_clear(peer) == padded(APOLOGY)
    # Heard to the end (the mark came back after the clip played), not the timeout.
    assert APOLOGY_SECONDS <= ended_at[0] < APOLOGY_SECONDS + 0.5
    # The call log says so too (the writer drained when the log closed).
    [line] = [json.loads(text) for text in log_path.read_text().splitlines()]
    assert (line["role"], line["clip"], line["text_stage"], line["heard"]) == (
        "assistant", "apology", "clip", "all",
    )  # fmt: skip
    assert line["text"] == "Sorry, we are having technical trouble. Please hold."
    assert line["heard_ms"] == line["total_ms"]  # the clip, padded to whole 20 ms frames
    assert APOLOGY_SECONDS * 1000 <= line["total_ms"] <= APOLOGY_SECONDS * 1000 + 20


async def test_a_call_with_a_transfer_target_is_transferred_after_the_clip(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = FakePromptStore()
    store.put("esther", WITH_TRANSFER)
    control = FakeControl()
    channels: list[CallChannel] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        channels[0].control = control
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].feed(SonicStreamError("validationException", "bad event"))
        await trio.sleep(APOLOGY_SECONDS + MARGIN + 1)

    summary, peer, _, metrics = await run_scenario(script, store=store, channels=channels)
    assert control.targets == [TARGET]
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("transferred", CloseCode.TRANSFERRED)
    assert audio_after_clear(peer) == padded(APOLOGY)  # the clip came first
    errors = metrics.registry.get_sample_value(
        "novavoice_sonic_errors_total", {"type": "SonicStreamError"}
    )
    assert errors == 1


async def test_a_refused_transfer_ends_the_call_with_the_failure_code(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = FakePromptStore()
    store.put("esther", WITH_TRANSFER)
    control = FakeControl(accept=False)
    channels: list[CallChannel] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        channels[0].control = control
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].feed(SonicStreamError("validationException", "bad event"))
        await trio.sleep(APOLOGY_SECONDS + MARGIN + 1)

    summary, _, _, _ = await run_scenario(script, store=store, channels=channels)
    assert control.targets == [TARGET]
    assert summary.end is not None and summary.end.code == CloseCode.SONIC_FAILED


async def test_a_prompt_unavailable_once_the_caller_is_on_the_line_plays_the_daemon_clip(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = FakePromptStore()
    store.fail(None, lambda a, k: PromptStoreError("bucket unreachable", assistant=a, key=k))

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        await trio.sleep(APOLOGY_SECONDS + MARGIN + 1)

    summary, peer, sonic, _ = await run_scenario(script, store=store)
    assert summary.end is not None and summary.end.code == CloseCode.PROMPT_STORE_FAILED
    assert sonic.streams == []  # never reached Sonic
    assert audio_after_clear(peer) == padded(APOLOGY)
    assert summary.fallback == "cut"


async def test_the_assistants_own_clip_plays_when_this_daemon_has_it(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    own = bytes(range(0x80, 0xFF)) * 20  # 0.32 s of μ-law; no 0x7f (-0), so it round-trips
    (tmp_path / "please-hold.ulaw").write_bytes(own)
    clips = load_fallback_clips(tmp_path)
    store = FakePromptStore()
    store.put("esther", "---\nfallback_audio: please-hold\n---\nYou are Esther.\n")

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))
        await trio.sleep(10)

    _, peer, _, _ = await run_scenario(script, store=store, fallback_clips=clips)
    assert audio_after_clear(peer) == padded(own)


def test_a_missing_clip_or_rate_falls_back_to_the_shipped_apology(tmp_path: Path) -> None:
    (tmp_path / "narrow.sln").write_bytes(b"\x00\x01" * 800)  # 8 kHz only
    clips = load_fallback_clips(tmp_path)
    clip, substituted = clips.for_call("narrow", 8000)
    assert clip is not None and (clip.name, substituted) == ("narrow", False)
    clip, substituted = clips.for_call("narrow", 16000)
    assert clip is not None and (clip.name, clip.sample_rate, substituted) == (
        SHIPPED_CLIP, 16000, True,
    )  # fmt: skip
    clip, substituted = clips.for_call("unknown", 8000)
    assert clip is not None and (clip.name, substituted) == (SHIPPED_CLIP, True)
    assert clips.for_call(None, 24000) == (None, True)


def test_shipped_clips_are_the_apology_at_both_carrier_rates() -> None:
    clips = shipped_fallback_clips()
    narrow, _ = clips.for_call(None, 8000)
    wide, _ = clips.for_call(None, 16000)
    assert narrow is not None and wide is not None
    assert 3.0 < narrow.seconds < 5.0 and wide.seconds == pytest.approx(narrow.seconds, abs=0.01)


@pytest.mark.parametrize(
    ("name", "data", "complaint"),
    [
        ("sorry.wav", b"RIFF", "extension"),
        ("Sorry.ulaw", b"\xff", "name"),
        ("_x.ulaw", b"\xff", "name"),
        ("empty.sln16", b"", "empty"),
        ("odd.sln", b"\x00\x00\x00", "even"),
        ("long.ulaw", b"\xff" * 8000 * 31, "more than"),
    ],
)
def test_bad_clip_files_stop_start_up_naming_the_file(
    tmp_path: Path, name: str, data: bytes, complaint: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError, match=complaint) as info:
        load_fallback_clips(tmp_path)
    assert name in str(info.value)


def test_an_operator_clip_cannot_replace_the_shipped_apology(tmp_path: Path) -> None:
    (tmp_path / "apology.ulaw").write_bytes(b"\xff" * 800)
    with pytest.raises(ConfigError, match="already has"):
        load_fallback_clips(tmp_path)


def test_the_default_clip_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FALLBACK_AUDIO"):
        load_fallback_clips(tmp_path, default="nope")
    assert isinstance(load_fallback_clips(None), FallbackClips)


def test_which_failures_call_for_the_fallback() -> None:
    from actors.errors import CarrierProtocolError, InvalidAssistantName, PromptTimeout

    assert needs_fallback(SonicStreamError("throttlingException", "x"))
    assert needs_fallback(PromptTimeout("x", assistant="esther"))
    assert not needs_fallback(InvalidAssistantName("x", assistant="../x"))
    assert not needs_fallback(CarrierProtocolError("x"))
