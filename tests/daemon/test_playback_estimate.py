"""The heard-audio estimate used when the carrier gives no marks."""

from __future__ import annotations

import pytest

from sessions.playback_estimate import PlaybackEstimate


def test_sent_faster_than_real_time_is_heard_at_real_time() -> None:
    p = PlaybackEstimate()
    for _ in range(50):  # one second of 20 ms frames, all sent at t=0
        p.sent(0.0, 0.02)
    assert p.sent_s == pytest.approx(1.0)
    assert p.heard_s(0.4) == pytest.approx(0.4)
    assert p.heard_s(5.0) == pytest.approx(1.0)


def test_a_flush_forgets_what_was_still_queued() -> None:
    p = PlaybackEstimate()
    for _ in range(100):  # two seconds sent at t=10
        p.sent(10.0, 0.02)
    p.flushed(10.5)
    assert p.flushed_s == pytest.approx(1.5)
    assert p.heard_s(20.0) == pytest.approx(0.5)
    p.sent(30.0, 0.02)  # playback restarts from "now", not from the old clock
    assert p.heard_s(30.01) == pytest.approx(0.51)
    p.flushed(40.0)  # nothing queued: nothing flushed
    assert p.flushed_s == pytest.approx(1.5)
