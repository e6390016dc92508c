"""What the caller heard, per assistant turn, through a real carrier link and dialect.

The test plays the conversation (turn numbers, texts, queue commands, the barge-in) and the
carrier (the load harness's Twilio and Asterisk callers over a memory WebSocket, echoing
marks when playback reaches them, as each carrier does). The call log's lines are read
from its queue. Autojump clock: playback takes the audio's own time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from actors.audio_pumps import (
    AnswerEnded,
    AssistantAudio,
    AssistantCommand,
    ClearPlayback,
    OutboundQueue,
    PcmFrame,
)
from devkit.simcall import TwilioCaller
from devkit.simcall.asterisk_caller import AsteriskCaller
from devkit.simcall.events import ClearRequested, MarkRequested
from sessions.carrier_link import CarrierLink
from sessions.dialects.asterisk import AsteriskDialect, MarksMode
from sessions.dialects.base import Dialect
from sessions.dialects.twilio import TwilioDialect
from sessions.heard_log import HeardLog
from sessions.logs import CallLog
from sessions.metrics import Metrics
from tests.daemon.fakes import ws_pair
from tests.daemon.test_call_channel import pcm_tone

FULL = "Hello, how can I help?"
CUT = "Your appointment is at noon on Tuesday."
Caller = TwilioCaller | AsteriskCaller


def carrier(kind: str) -> tuple[Dialect, Caller]:
    if kind == "twilio":
        return TwilioDialect(path="/twilio/esther"), TwilioCaller(stream_sid="MZ1", call_sid="CA1")
    if kind == "asterisk":
        dialect = AsteriskDialect(path="/asterisk/esther", marks=MarksMode.AUTO)
        return dialect, AsteriskCaller(connection_id="c1", channel_id="ch1")
    # A release before MARK_MEDIA: no marks at all, so the estimate decides.
    old = AsteriskCaller(
        connection_id="c1", channel_id="ch1", control_json=False, release="20.17.0"
    )
    return AsteriskDialect(path="/asterisk/esther", marks=MarksMode.AUTO), old


async def play_as_carrier(ws: Any, caller: Caller) -> None:
    """Receive what the daemon sends; echo each mark when playback reaches it (Twilio
    echoes pending marks at once on a clear; Asterisk drops them)."""
    playing_until = 0.0
    pending: list[tuple[float, str]] = []
    async with trio.open_nursery() as nursery:

        async def echo(at: float, name: str) -> None:
            await trio.sleep_until(at)
            if (at, name) in pending:
                pending.remove((at, name))
                await ws.send_message(
                    caller.mark(name)
                    if isinstance(caller, TwilioCaller)
                    else caller.mark_processed(name)
                )

        while True:
            message = await ws.get_message()
            events = (
                caller.receive_text(message)
                if isinstance(message, str)
                else caller.receive_bytes(message)
            )
            now = trio.current_time()
            for ev in events:
                if isinstance(ev, MarkRequested):
                    pending.append((max(playing_until, now), ev.name))
                    nursery.start_soon(echo, *pending[-1])
                elif isinstance(ev, ClearRequested):
                    playing_until = now
                    if isinstance(caller, TwilioCaller):
                        for _, name in pending:
                            await ws.send_message(caller.mark(name))
                    pending.clear()
                elif hasattr(ev, "seconds"):
                    playing_until = max(playing_until, now) + ev.seconds


@pytest.mark.parametrize("kind", ["twilio", "asterisk", "asterisk-no-marks"])
async def test_a_fully_heard_turn_and_a_barged_in_turn(
    autojump_clock: trio.abc.Clock, kind: str
) -> None:
    dialect, caller = carrier(kind)
    log_send, log_receive = trio.open_memory_channel[bytes | None](100)
    heard = HeardLog(CallLog("memory", log_send))
    queue: OutboundQueue[AssistantCommand] = OutboundQueue(10.0)
    caller_send, _caller_receive = trio.open_memory_channel[PcmFrame](100)
    metrics = Metrics(process_metrics=False)
    async with ws_pair() as (server_ws, client_ws), trio.open_nursery() as nursery:
        with metrics.call("twilio") as cm:
            link = CarrierLink(
                server_ws, dialect, cm, caller_audio=caller_send, assistant=queue, heard=heard
            )
            nursery.start_soon(link.run)
            nursery.start_soon(play_as_carrier, client_ws, caller)
            if isinstance(caller, TwilioCaller):
                await client_ws.send_message(caller.connected())
                await client_ws.send_message(caller.start())
            else:
                await client_ws.send_message(caller.media_start())
            start = await link.wait_started()
            rate = start.media_format.sample_rate

            # Turn 1: one second, heard to its end.
            heard.turn_started(1)
            heard.generated(1, 1.0)
            await queue.put(AssistantAudio(pcm=pcm_tone(rate), arrived=0.0, turn=1), 1.0)
            await queue.put(AnswerEnded(turn=1), 0)
            heard.final_text(1, FULL)  # Nova Sonic's FINAL text comes after the audio
            await trio.sleep(1.5)

            # Turn 2: three seconds generated at once; the caller barges in after one.
            heard.preview(CUT)
            heard.turn_started(2)
            heard.generated(2, 3.0)
            t0 = trio.current_time()
            await queue.put(AssistantAudio(pcm=pcm_tone(3 * rate), arrived=0.0, turn=2), 3.0)
            await queue.put(AnswerEnded(turn=2), 0)
            await trio.sleep_until(t0 + 1.0)
            queue.clear()
            heard.interrupted(2)
            await queue.put(ClearPlayback(through=2), 0)
            await trio.sleep(5)  # a late Twilio echo of the discarded mark must change nothing
            nursery.cancel_scope.cancel()
    lines = []
    while True:
        try:
            data = log_receive.receive_nowait()
        except trio.WouldBlock:
            break
        assert data is not None
        lines.append(json.loads(data))
    first, second = lines
    measured = "estimate" if kind == "asterisk-no-marks" else "mark"
    assert {k: first[k] for k in ("role", "turn", "text", "heard", "heard_ms", "total_ms")} == {
        "role": "assistant", "turn": 1, "text": FULL, "heard": "all", "heard_ms": 1000,
        "total_ms": 1000,
    }  # fmt: skip
    assert (first["measured"], first["text_stage"]) == (measured, "final")
    assert second["turn"] == 2 and second["text"] == CUT and second["text_stage"] == "speculative"
    assert second["heard"] == "part" and second["total_ms"] == 3000
    assert second["measured"] == "estimate"
    assert abs(second["heard_ms"] - 1000) <= 20  # the clear reaches the carrier at once
    assert second["heard_text"] == "Your"  # a third of the text, cut back to a word
