"""The Sonic session alone, on trio's clock only: when streams are rotated.

Runs under the autojump clock with the scripted :class:`FakeSonic`, whose streams carry a
credential deadline on trio's clock (as the real client's do), so minutes of call time pass
instantly and each rotation's time is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from actors.sonic import output
from actors.sonic.session import (
    CREDENTIALS_MARGIN,
    MAX_ROTATION_WAIT,
    MIN_LEG_SECONDS,
    QUIET_BEFORE_ROTATION,
    SessionOutput,
    SonicSession,
    Transcript,
)
from tests.daemon.fakes import FakeSonic, new_session
from tests.daemon.test_call_channel import audio, audio_end, audio_start, text, text_start


@asynccontextmanager
async def running_session(
    sonic: FakeSonic, *, rotate_after: float
) -> AsyncIterator[tuple[SonicSession, list[SessionOutput]]]:
    """A session whose output is drained into a list, for the duration of the block."""
    send, receive = trio.open_memory_channel[tuple[SessionOutput, float]](0)
    session = new_session(
        sonic,
        output_channel=send,
        rotate_after=rotate_after,
    )
    received: list[SessionOutput] = []

    async def drain() -> None:
        async for item, _arrived in receive:
            received.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await nursery.start(session.run)
        yield session, received
        nursery.cancel_scope.cancel()


def since_start(sonic: FakeSonic) -> list[float]:
    return [t - sonic.open_times[0] for t in sonic.open_times]


async def test_streams_rotate_at_rotate_after(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=100.0) as (session, _):
        await trio.sleep(250)
    assert since_start(sonic) == pytest.approx([0.0, 100.0, 200.0])
    assert session.statistics.proactive_rotations == 2
    assert all(stream.closed for stream in sonic.streams)


async def test_streams_rotate_before_their_credentials_expire(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Credentials valid 300 s after each stream opens: every stream is replaced
    # CREDENTIALS_MARGIN before its own expiry, well before rotate_after (360 s).
    sonic = FakeSonic(credentials_lifetime=300.0)
    async with running_session(sonic, rotate_after=360.0):
        await trio.sleep(250)
    due = 300.0 - CREDENTIALS_MARGIN
    assert since_start(sonic) == pytest.approx([0.0, due, 2 * due])
    for old, replaced_at in zip(sonic.streams, sonic.open_times[1:], strict=False):
        assert old.credentials_deadline is not None
        assert replaced_at <= old.credentials_deadline - CREDENTIALS_MARGIN


async def test_credentials_never_refreshed_rotate_once_a_minute_at_most(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Each new stream gets credentials already inside the margin: "due" at once, yet each
    # stream lives MIN_LEG_SECONDS.
    sonic = FakeSonic(credentials_lifetime=100.0)
    async with running_session(sonic, rotate_after=360.0):
        await trio.sleep(200)
    assert since_start(sonic) == pytest.approx([0.0, MIN_LEG_SECONDS, 2 * MIN_LEG_SECONDS, 180.0])


async def test_rotation_waits_until_the_assistant_has_finished_speaking(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=10.0) as (_, received):
        stream = sonic.streams[0]
        await trio.sleep(9)
        stream.feed(audio_start("a1"))
        for _ in range(6):  # an answer from 9 s to 15 s, across the due time
            stream.feed(audio("a1", bytes(1600)))
            await trio.sleep(1)
        stream.feed(audio_end("a1"))
        await trio.sleep(5)
    # Rotated when the answer had ended and the assistant had been quiet a moment.
    assert since_start(sonic) == pytest.approx([0.0, 15.0 + QUIET_BEFORE_ROTATION])
    assert sum(isinstance(item, output.AudioOutput) for item in received) == 6


async def test_an_assistant_that_never_stops_is_rotated_anyway(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=10.0):
        sonic.streams[0].feed(audio_start("a1"))  # an answer that never ends
        await trio.sleep(10 + MAX_ROTATION_WAIT + 5)
    assert since_start(sonic) == pytest.approx([0.0, 10.0 + MAX_ROTATION_WAIT])


async def test_final_transcripts_follow_their_event_down_the_output_channel(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=100.0) as (session, received):
        stream = sonic.streams[0]
        stream.feed(text_start("u1", "USER", "FINAL"))
        stream.feed(text("u1", "USER", "Hello"))
        await trio.sleep(1)
    assert isinstance(received[-2], output.TextOutput)
    assert received[-1] == Transcript("USER", "Hello")
    assert [(m.role, m.text) for m in session.history.replay()] == [("USER", "Hello")]
