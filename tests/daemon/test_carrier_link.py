"""The carrier link alone: a Twilio peer on one side, its two channels on the other.

No Sonic, no prompt: the test plays the conversation, reading caller PCM from the caller-audio
channel and putting assistant commands into the queue. Autojump clock, memory streams.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from actors.audio_codec import pcm16_to_ulaw, ulaw_to_pcm16
from actors.audio_pumps import (
    AnswerEnded,
    AssistantAudio,
    AssistantCommand,
    ClearPlayback,
    OutboundQueue,
    PcmFrame,
)
from sessions.carrier_link import CarrierEnd, CarrierLink
from sessions.config import CallSettings
from sessions.dialects.twilio import TwilioDialect
from sessions.metrics import Metrics
from tests.daemon.fakes import TwilioPeer, ws_pair
from tests.daemon.test_call_channel import pcm_tone, ulaw_frames


@asynccontextmanager
async def running_link(
    *,
    lockstep: bool = False,
    frames: int = 100,
    settings: CallSettings | None = None,
    message_ms: int = 20,
) -> AsyncIterator[
    tuple[
        CarrierLink,
        TwilioPeer,
        trio.MemoryReceiveChannel[PcmFrame],
        OutboundQueue[AssistantCommand],
        list[CarrierEnd],
    ]
]:
    """A link over a memory WebSocket pair, run for the duration of the block."""
    metrics = Metrics(process_metrics=False)
    caller_send, caller_receive = trio.open_memory_channel[PcmFrame](frames)
    queue: OutboundQueue[AssistantCommand] = OutboundQueue(2.0)
    ended: list[CarrierEnd] = []
    async with ws_pair(lockstep=lockstep) as (server_ws, client_ws):
        with metrics.call("twilio") as cm:
            link = CarrierLink(
                server_ws,
                TwilioDialect(path="/twilio/esther"),
                cm,
                caller_audio=caller_send,
                assistant=queue,
                settings=settings,
                message_ms=message_ms,
            )
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    ended.append(await link.run())

                nursery.start_soon(run)
                yield link, TwilioPeer(client_ws), caller_receive, queue, ended
                nursery.cancel_scope.cancel()


async def test_caller_audio_goes_down_the_channel_as_pcm_and_a_stop_ends_the_link(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(3, seed=7)
    async with running_link() as (link, peer, caller_audio, _, ended):
        await peer.start()
        start = await link.wait_started()
        for frame in frames:
            await peer.media(frame)
        await peer.stop()
        await trio.sleep(1)
        assert ended == ["hangup"]
        received = [caller_audio.receive_nowait() for _ in frames]
    assert start.call_id == "CA00" and start.media_format.sample_rate == 8000
    assert [f.pcm for f in received] == [ulaw_to_pcm16(f) for f in frames]


async def test_a_full_caller_channel_drops_the_newest_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(5, seed=8)
    async with running_link(frames=2) as (link, peer, caller_audio, _, _):
        await peer.start()
        for frame in frames:
            await peer.media(frame)
        await trio.sleep(1)
        kept = [caller_audio.receive_nowait().pcm for _ in range(2)]
    assert kept == [ulaw_to_pcm16(f) for f in frames[:2]]
    assert link.statistics.pre_stream_drops == 3


async def test_assistant_audio_is_framed_then_marked_at_the_end_of_an_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    answer = pcm_tone(1000)  # 6.25 frames of 20 ms at 8 kHz
    async with running_link() as (link, peer, _, queue, _):
        await peer.start()
        await link.wait_started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.receive_all)
            await queue.put(AssistantAudio(pcm=answer, arrived=0.0), 0.125)
            await queue.put(AnswerEnded(), 0)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    kinds = [m["event"] for m in peer.received]
    assert kinds == ["media"] * 7 + ["mark"]
    audio = peer.audio()
    assert audio[: len(answer) // 2] == pcm16_to_ulaw(answer)
    assert audio[len(answer) // 2 :] == b"\xff" * (7 * 160 - len(answer) // 2)  # μ-law silence
    assert link.statistics.marks_sent == 1


async def test_a_clear_cuts_a_half_sent_answer_at_once(autojump_clock: trio.abc.Clock) -> None:
    # Lockstep: the carrier takes frames only as fast as the test reads them, so the
    # two-second answer is still being sent when the barge-in comes.
    async with running_link(lockstep=True) as (link, peer, _, queue, _):
        await peer.start()
        await link.wait_started()
        await queue.put(AssistantAudio(pcm=pcm_tone(16000), arrived=0.0), 2.0)
        for _ in range(10):
            peer.received.append(json.loads(await peer.ws.get_message()))
        queue.clear()  # what the conversation does on a barge-in
        await queue.put(ClearPlayback(), 0)
        while not peer.events("clear"):
            peer.received.append(json.loads(await peer.ws.get_message()))
    media_before_clear = len(peer.events("media"))
    # A few frames were already on their way (the WebSocket reader's buffer); the rest of
    # the 100 were never sent.
    assert 10 <= media_before_clear <= 14
    assert peer.received[-1]["event"] == "clear"


async def test_keypad_digits_are_counted_and_never_logged(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Finding 5 of issue 9: digits are card numbers and PINs; the log keeps only how many.
    caplog.set_level(logging.DEBUG)
    async with running_link() as (link, peer, _, _, _):
        await peer.start()
        await link.wait_started()
        for digit in "4917":
            await peer.ws.send_message(peer.caller.dtmf(digit))
        await trio.sleep(1)
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.__dict__)
        assert "'digit'" not in rendered, rendered
    assert link.statistics.dtmf_digits == 4


async def test_larger_messages_carry_whole_frames_of_one_event_and_hold_nothing_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    answer = pcm_tone(2000)  # 12.5 frames: 12 whole frames now, the half frame at the end
    async with running_link(message_ms=100) as (link, peer, _, queue, _):
        await peer.start()
        await link.wait_started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.receive_all)
            await queue.put(AssistantAudio(pcm=answer, arrived=0.0), 0.25)
            await trio.sleep(1)
            # Before the answer ends, every whole frame already went out (5 + 5 + 2 frames).
            sizes = [len(base64.b64decode(m["media"]["payload"])) for m in peer.events("media")]
            assert sizes == [800, 800, 320]
            await queue.put(AnswerEnded(), 0)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert [m["event"] for m in peer.received] == ["media"] * 4 + ["mark"]
    audio = peer.audio()
    assert audio[: len(answer) // 2] == pcm16_to_ulaw(answer)
    assert audio[len(answer) // 2 :] == b"\xff" * (13 * 160 - len(answer) // 2)


async def test_a_clear_still_cuts_an_answer_sent_in_larger_messages(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with running_link(lockstep=True, message_ms=100) as (link, peer, _, queue, _):
        await peer.start()
        await link.wait_started()
        await queue.put(AssistantAudio(pcm=pcm_tone(16000), arrived=0.0), 2.0)
        for _ in range(2):
            peer.received.append(json.loads(await peer.ws.get_message()))
        queue.clear()
        await queue.put(ClearPlayback(), 0)
        while not peer.events("clear"):
            peer.received.append(json.loads(await peer.ws.get_message()))
    media = peer.events("media")
    # 20 messages of 100 ms make the answer; only those already on their way were sent.
    assert 2 <= len(media) <= 6
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {800}
    assert peer.received[-1]["event"] == "clear"
