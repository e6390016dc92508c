"""The caller-audio budget alone, under explicit time (sans-IO: the test is the clock)."""

from __future__ import annotations

import pytest

from actors.frame_budget import FrameBudget, Verdict

FRAME = 160  # 20 ms of 8 kHz μ-law
PER_SECOND = 8000


def budget(
    *, rate: float = 2.0, burst: float = 5.0, abuse_rate: float = 10.0, abuse_burst: float = 30.0
) -> FrameBudget:
    """A budget in μ-law bytes, rates in multiples of real time, bursts in seconds."""
    return FrameBudget(
        rate=rate * PER_SECOND,
        burst=burst * PER_SECOND,
        abuse_rate=abuse_rate * PER_SECOND,
        abuse_burst=abuse_burst * PER_SECOND,
        now=0.0,
    )


def send(b: FrameBudget, frames: int, *, start: float, every: float) -> list[Verdict]:
    return [b.admit(start + i * every, FRAME) for i in range(frames)]


def test_real_time_audio_is_never_dropped() -> None:
    b = budget()
    verdicts = send(b, 50 * 3600, start=0.0, every=0.02)  # an hour, frame by frame
    assert set(verdicts) == {Verdict.ADMIT}
    assert b.level == 5 * PER_SECOND - FRAME  # full but for the last frame


def test_a_burst_is_absorbed_then_the_excess_over_the_rate_is_dropped() -> None:
    b = budget(abuse_rate=0)
    # 5,000 frames (100 s of audio) all at t=1: only the 5 s burst (250 frames) passes.
    verdicts = send(b, 5000, start=1.0, every=0.0)
    assert verdicts.count(Verdict.ADMIT) == 250
    assert verdicts[250:] == [Verdict.DROP] * 4750
    # One second later the bucket has refilled twice real time: 100 more frames.
    verdicts = send(b, 1000, start=2.0, every=0.0)
    assert verdicts.count(Verdict.ADMIT) == 100


def test_over_any_window_at_most_burst_plus_rate_times_window_passes() -> None:
    b = budget(abuse_rate=0)
    # Ten times real time for 20 s: 10,000 frames, one every 2 ms.
    verdicts = send(b, 10_000, start=0.0, every=0.002)
    admitted = verdicts.count(Verdict.ADMIT)
    seconds = admitted * FRAME / PER_SECOND
    window = 9_999 * 0.002
    assert seconds <= 5.0 + 2.0 * window + FRAME / PER_SECOND
    assert seconds >= 5.0 + 2.0 * window - FRAME / PER_SECOND  # and no less: it is a rate


def test_a_stall_up_to_the_burst_loses_nothing() -> None:
    b = budget()
    send(b, 500, start=0.0, every=0.02)  # 10 s in real time
    # The network stalls 4 s, then the 4 s backlog (200 frames) arrives at once.
    assert set(send(b, 200, start=14.0, every=0.0)) == {Verdict.ADMIT}
    # Real time again for 5 s: at twice real time the bucket is full again.
    send(b, 250, start=14.02, every=0.02)
    assert b.level == 5 * PER_SECOND - FRAME
    # A 6 s stall is longer than the burst: of its backlog, the last second is dropped.
    verdicts = send(b, 300, start=25.0, every=0.0)
    assert verdicts == [Verdict.ADMIT] * 250 + [Verdict.DROP] * 50


def test_sustained_flooding_is_abuse_but_a_stall_backlog_is_not() -> None:
    b = budget()
    # A 20 s backlog at once: dropped beyond the burst, yet well within the abuse limit.
    assert Verdict.ABUSE not in send(b, 1000, start=1.0, every=0.0)
    # Eleven times real time, sustained: the abuse bucket (10x, 30 s) empties.
    b = budget()
    verdicts = send(b, 50 * 60 * 11, start=0.0, every=0.02 / 11)
    first = verdicts.index(Verdict.ABUSE)
    # (11 - 10) x T = 30 s of headroom: about 30 s in, i.e. 30 x 50 x 11 frames.
    assert 16_000 < first < 17_000
    assert Verdict.DROP in verdicts[:first]


def test_zero_rates_disable_each_bucket() -> None:
    b = budget(rate=0, abuse_rate=0)
    assert set(send(b, 100_000, start=0.0, every=0.0)) == {Verdict.ADMIT}
    b = budget(rate=0)  # no budget, but still an abuse limit
    verdicts = send(b, 100_000, start=0.0, every=0.0)
    assert Verdict.DROP not in verdicts and Verdict.ABUSE in verdicts


def test_a_grant_lets_replayed_early_audio_through_once() -> None:
    b = budget(abuse_rate=0)
    b.grant(10 * PER_SECOND)  # 10 s that arrived before the start, replayed at once
    assert set(send(b, 750, start=0.0, every=0.0)) == {Verdict.ADMIT}  # 10 s + the 5 s burst
    assert send(b, 1, start=0.0, every=0.0) == [Verdict.DROP]
    send(b, 1, start=100.0, every=0.0)
    assert b.level == 5 * PER_SECOND - FRAME  # refilled to the burst, never the credit


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        budget(burst=0)
    with pytest.raises(ValueError):
        budget(rate=-1)
