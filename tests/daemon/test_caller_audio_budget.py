"""The carrier link's caller-audio budget: frames beyond it are dropped and counted, and a
flood closes the call. Autojump clock, a Twilio peer over memory streams: the peer sends
without sleeping, so every frame arrives at the same trio instant."""

from __future__ import annotations

import trio

from actors.audio_codec import ulaw_to_pcm16
from actors.audio_pumps import AssistantCommand, OutboundQueue, PcmFrame
from actors.close_codes import CloseCode
from actors.errors import CarrierAudioFlood
from devkit.simcall import AsteriskCaller
from sessions.carrier_link import CarrierLink
from sessions.config import CallSettings
from sessions.dialects.asterisk import AsteriskDialect
from sessions.dialects.twilio import TwilioDialect
from sessions.metrics import Metrics
from tests.daemon.fakes import TwilioPeer, ws_pair
from tests.daemon.test_call_channel import ulaw_frames
from tests.daemon.test_carrier_link import running_link

NO_ABUSE = CallSettings(caller_audio_abuse_rate=0)


async def test_frames_beyond_the_burst_are_dropped_and_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(50, seed=5) * 100  # 5,000 frames: 100 s of audio, all at once
    async with running_link(frames=len(frames), settings=NO_ABUSE) as (link, peer, audio, _, _):
        await peer.start()
        for frame in frames:
            await peer.media(frame)
        # The clock jumps only once the link has read everything: no refill before that.
        await trio.sleep(0.001)
        kept: list[PcmFrame] = []
        while True:
            try:
                kept.append(audio.receive_nowait())
            except trio.WouldBlock:
                break
        metrics = link._cm._metrics  # the registry running_link built for this link
    # The 5 s burst (250 frames of 20 ms) passed, in order; the 4,750 others were dropped.
    assert [f.pcm for f in kept] == [ulaw_to_pcm16(f) for f in frames[:250]]
    assert link.statistics.rate_limited_drops == 4750
    assert link.statistics.pre_stream_drops == 0
    rate_limited = metrics.registry.get_sample_value(
        "novavoice_queue_drops_total", {"queue": "rate_limited"}
    )
    assert rate_limited == 4750


async def test_real_time_audio_passes_whole(autojump_clock: trio.abc.Clock) -> None:
    frames = ulaw_frames(50, seed=6) * 20  # 20 s in real time
    async with running_link(frames=len(frames)) as (link, peer, audio, _, _):
        await peer.start()
        for frame in frames:
            await peer.media(frame)
            await trio.sleep(0.02)
        await trio.sleep(0.1)
        kept = [audio.receive_nowait() for _ in frames]
    assert len(kept) == len(frames)
    assert link.statistics.rate_limited_drops == 0


async def test_a_flood_closes_the_call_with_its_close_code(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Defaults: above 10x real time for more than 30 s of audio is a flood.
    metrics = Metrics(process_metrics=False)
    caller_send, _caller_receive = trio.open_memory_channel[PcmFrame](10_000)
    queue: OutboundQueue[AssistantCommand] = OutboundQueue(2.0)
    frames = ulaw_frames(50, seed=9) * 100
    async with ws_pair() as (server_ws, client_ws):
        with metrics.call("twilio") as cm:
            link = CarrierLink(
                server_ws,
                TwilioDialect(path="/twilio/esther"),
                cm,
                caller_audio=caller_send,
                assistant=queue,
            )
            peer = TwilioPeer(client_ws)
            raised: list[CarrierAudioFlood] = []

            async def run() -> None:
                try:
                    await link.run()
                except CarrierAudioFlood as exc:
                    raised.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await peer.start()
                for frame in frames:
                    await peer.media(frame)
                await trio.sleep(1)
                nursery.cancel_scope.cancel()
    [flood] = raised
    assert flood.close_code == CloseCode.CARRIER_AUDIO_FLOOD
    assert int(flood.close_code) == 4009
    # It took the 30 s abuse burst (1,500 frames) to decide; the 5 s budget let 250 through
    # and the rest up to there were dropped, not forwarded.
    assert cm.frames_in == 1501
    assert link.statistics.rate_limited_drops == 1250


async def test_asterisk_audio_from_before_the_start_is_credited_not_dropped(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Asterisk may send audio before MEDIA_START (asterisk#1712); it arrived in real time,
    # and the dialect replays it at once after the start: 10 s of μ-law, twice the burst.
    metrics = Metrics(process_metrics=False)
    caller_send, caller_receive = trio.open_memory_channel[PcmFrame](10_000)
    queue: OutboundQueue[AssistantCommand] = OutboundQueue(2.0)
    asterisk = AsteriskCaller(connection_id="c1", channel_id="ch1")
    early = ulaw_frames(50, seed=10) * 10  # 500 frames of 20 ms
    async with ws_pair() as (server_ws, client_ws):
        with metrics.call("asterisk") as cm:
            link = CarrierLink(
                server_ws,
                AsteriskDialect(path="/asterisk/esther"),
                cm,
                caller_audio=caller_send,
                assistant=queue,
                settings=NO_ABUSE,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run)
                for frame in early:
                    await client_ws.send_message(asterisk.media(frame))
                    await trio.sleep(0.02)
                await client_ws.send_message(asterisk.media_start())
                await link.wait_started()
                # Then a flood right away: only the burst passes, the credit is spent.
                for frame in early:
                    await client_ws.send_message(asterisk.media(frame))
                await trio.sleep(0.001)
                nursery.cancel_scope.cancel()
    kept = []
    while True:
        try:
            kept.append(caller_receive.receive_nowait())
        except trio.WouldBlock:
            break
    assert [f.pcm for f in kept[: len(early)]] == [ulaw_to_pcm16(f) for f in early]
    assert len(kept) == len(early) + 250  # then the 5 s burst of the flood
    assert link.statistics.rate_limited_drops == len(early) - 250
