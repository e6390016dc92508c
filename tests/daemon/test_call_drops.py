"""Every caller frame the daemon drops is counted in the call's summary, by reason.

Finding 12 of issue 9: 1,153 caller frames were dropped (the caller-audio channel was full
after the conversation had started, ``queue="audio_in"``) while the call-end line said
``pre_stream_drops: 0``, because only pre-stream drops reached the summary. Autojump clock,
memory streams, a scripted Sonic that is slow to take audio.
"""

from __future__ import annotations

import trio

from sessions.config import CallSettings
from tests.daemon.fakes import FakeSonic, TwilioPeer
from tests.daemon.test_call_channel import run_scenario, send_frames, ulaw_frames


def dropped(metrics_value: float | None) -> int:
    return int(metrics_value or 0)


async def test_drops_after_the_conversation_started_reach_the_call_summary(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(200, seed=12)  # 4 s of caller audio, sent in real time

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await sonic.opened.wait()
        await trio.sleep(0.5)  # the conversation now reads caller audio
        await send_frames(peer, frames)
        await trio.sleep(1)
        await peer.stop()

    # Room for 10 frames; each audioInput takes Sonic a second: the channel overflows.
    settings = CallSettings(pre_stream_seconds=0.2)
    summary, _, _, metrics = await run_scenario(
        script, sonic=FakeSonic(audio_send_delay=1.0), settings=settings
    )
    audio_in = dropped(
        metrics.registry.get_sample_value("novavoice_queue_drops_total", {"queue": "audio_in"})
    )
    assert audio_in > 100  # most of the 200 frames
    assert summary.pre_stream_drops == 0
    assert summary.drops() == {"pre_stream": 0, "audio_in": audio_in, "rate_limited": 0}
    # What was not dropped reached Sonic, in order: nothing is lost without being counted.
    forwarded = len(frames) - audio_in
    assert summary.frames_in == len(frames)
    assert summary.audio_in.chunks_sent * 512 <= forwarded * 320
