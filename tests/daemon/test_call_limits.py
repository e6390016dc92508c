"""Call limits: a maximum call length and a caller-inactivity timeout (issue 9, finding 7).

Autojump clock: hours of call time pass instantly; the assertions are about which close
code the call ended with, and when on trio's clock.
"""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed

from sessions.config import CallSettings
from tests.daemon.fakes import FakeSonic, TwilioPeer
from tests.daemon.test_call_channel import audio, audio_end, audio_start, pcm_tone, run_scenario

SILENT_FRAME = b"\xff" * 160  # μ-law zero: what a carrier sends while the caller is quiet
LOUD_FRAME = bytes([0x10, 0x90] * 80)  # μ-law near full scale, alternating sign


async def stream_frames(peer: TwilioPeer, frame: bytes, seconds: float) -> None:
    """Send one frame every 20 ms for ``seconds``, as a carrier does; stop if closed."""
    try:
        for _ in range(int(seconds * 50)):
            await peer.media(frame)
            await trio.sleep(0.02)
    except ConnectionClosed:
        pass


async def test_a_call_ends_politely_at_the_maximum_duration(
    autojump_clock: trio.abc.Clock,
) -> None:
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        # The caller keeps talking: only the length limit can end this call.
        await stream_frames(peer, LOUD_FRAME, 30)
        ended_at.append(trio.current_time())

    settings = CallSettings(max_call_duration=10.0, idle_timeout=5.0)
    start = trio.current_time()
    summary, _, _, metrics = await run_scenario(script, settings=settings)
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("max_duration", 4301)
    assert 10.0 <= ended_at[0] - start <= 10.5
    ends = metrics.registry.get_sample_value(
        "novavoice_calls_ended_total", {"carrier": "twilio", "reason": "max_duration"}
    )
    assert ends == 1


async def test_silence_from_the_caller_ends_the_call_after_the_idle_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        # Speech for 2 s, then a carrier that keeps sending silence; the daemon pads the
        # quiet with comfort silence towards Sonic, which must not count as speech either.
        await stream_frames(peer, LOUD_FRAME, 2)
        await stream_frames(peer, SILENT_FRAME, 60)
        ended_at.append(trio.current_time())

    settings = CallSettings(idle_timeout=5.0)
    start = trio.current_time()
    summary, _, _, _ = await run_scenario(script, settings=settings)
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("idle_timeout", 4302)
    # Idle counts from the last speech seen (checked once a second while the caller
    # speaks, so between 1 and 2 s), not from the start of the call.
    assert 6.0 <= ended_at[0] - start <= 7.5
    assert summary.audio_in.silence_chunks_sent == 0  # the carrier sent silence itself


async def test_a_quiet_carrier_padded_with_comfort_silence_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        # No media at all: the daemon pads the quiet with comfort silence towards Sonic.
        with trio.move_on_after(600):
            # The test's side of the socket has no close event to wait on: look twice a second.
            while peer.ws.closed is None:  # noqa: ASYNC110
                await trio.sleep(0.5)
        ended_at.append(trio.current_time())
        if peer.ws.closed is None:
            await peer.stop()  # never timed out: end it so the test fails instead of hanging

    start = trio.current_time()
    summary, _, _, _ = await run_scenario(script)  # the default idle timeout, 120 s
    assert summary.end is not None and summary.end.code == 4302
    assert summary.audio_in.silence_chunks_sent > 0
    assert 120.0 <= ended_at[0] - start <= 121.0


async def test_assistant_audio_keeps_a_call_alive(autojump_clock: trio.abc.Clock) -> None:
    answer = pcm_tone(8000)  # one second at 8 kHz

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await trio.sleep(1)
        stream = sonic.streams[0]
        # The caller stays silent, but the assistant speaks every 4 s (idle limit 5 s).
        for n in range(5):
            stream.feed(audio_start(f"a{n}"))
            stream.feed(audio(f"a{n}", answer))
            stream.feed(audio_end(f"a{n}"))
            await trio.sleep(4)
        await peer.stop()

    summary, _, _, _ = await run_scenario(script, settings=CallSettings(idle_timeout=5.0))
    assert summary.end is not None and summary.end.reason == "hangup"


def test_the_limits_default_to_two_hours_and_two_minutes() -> None:
    settings = CallSettings()
    assert settings.max_call_duration == 7200.0
    assert settings.idle_timeout == 120.0
