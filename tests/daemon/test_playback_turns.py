"""The turn ledger (sans-IO): marks, clears and the playback estimate settle each turn once."""

from __future__ import annotations

import pytest

from sessions.heard_log import heard_prefix
from sessions.playback_turns import PlaybackTurns, TurnPlayed


def send(turns: PlaybackTurns, turn: int, at: float, seconds: float, frame: float = 0.02) -> None:
    """``seconds`` of ``turn`` sent at ``at`` in 20 ms frames (faster than real time)."""
    for _ in range(round(seconds / frame)):
        turns.audio(turn, at, frame)


def rounded(results: list[TurnPlayed]) -> list[tuple[int, float, float, bool, str]]:
    """Results with their seconds rounded to the microsecond (sums of 20 ms frames)."""
    return [
        (p.turn, round(p.sent_s, 6), round(p.heard_s, 6), p.complete, p.measured) for p in results
    ]


def test_a_mark_settles_its_turn_and_every_earlier_one_as_heard() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 0.0, 1.0)
    turns.ended(1, "a0")
    send(turns, 2, 0.5, 2.0)
    turns.ended(2, "a1")
    assert rounded(turns.mark_played("a1")) == [
        (1, 1.0, 1.0, True, "mark"),
        (2, 2.0, 2.0, True, "mark"),
    ]
    assert turns.mark_played("a0") == []  # already settled: nothing twice


def test_twilio_barge_in_cuts_at_the_estimate_and_the_late_echo_is_ignored() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 10.0, 3.0)  # all sent at once: the carrier plays it from 10.0 to 13.0
    turns.ended(1, "a0")
    assert rounded(turns.cleared(11.25, through=1)) == [(1, 3.0, 1.25, False, "estimate")]
    # Twilio echoes the pending mark right after the clear although it was discarded.
    assert turns.mark_played("a0") == []


def test_asterisk_flush_forgets_marks_and_a_later_turn_plays_after_the_cut() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 0.0, 2.0)
    turns.ended(1, "a0")
    assert [p.heard_s for p in turns.cleared(0.5, through=1)] == [pytest.approx(0.5)]
    # The carrier's queue was dropped: the next turn starts playing when it is sent.
    send(turns, 2, 1.0, 1.0)
    turns.ended(2, "a1")
    assert rounded(turns.mark_played("a1")) == [(2, 1.0, 1.0, True, "mark")]


def test_without_marks_a_turn_is_heard_once_its_estimated_playback_ends() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 5.0, 2.0)
    turns.ended(1, None)
    assert turns.estimated_end(1) == pytest.approx(7.0)
    assert turns.due(6.9) == []
    assert rounded(turns.due(7.0)) == [(1, 2.0, 2.0, True, "estimate")]
    assert turns.estimated_end(1) is None


def test_a_turn_dropped_before_reaching_the_carrier_was_not_heard() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 0.0, 0.5)
    settled = turns.cleared(0.1, through=2)  # turn 2 was still in the outbound queue
    assert [(p.turn, p.complete) for p in settled] == [(1, False), (2, False)]
    assert settled[1] == TurnPlayed(2, 0.0, 0.0, False, "estimate")
    send(turns, 2, 0.2, 0.5)  # a straggler frame of a settled turn changes nothing
    assert turns.finish(1.0) == []


def test_the_end_of_the_call_settles_what_is_still_playing() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 0.0, 2.0)
    turns.ended(1, "a0")
    assert rounded(turns.finish(1.5)) == [(1, 2.0, 1.5, False, "estimate")]


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (0.0, ""),
        (0.5, "Your"),  # cut inside "appointment": back to the previous word's end
        (0.6, "Your appointment"),
        (0.72, "Your appointment is"),
        (1.0, "Your appointment is at noon."),
    ],
)
def test_heard_prefix_cuts_back_to_a_word(fraction: float, expected: str) -> None:
    assert heard_prefix("Your appointment is at noon.", fraction) == expected


def test_the_estimate_pass_costs_nothing_once_unmarked_turns_are_settled() -> None:
    turns = PlaybackTurns()
    send(turns, 1, 0.0, 1.0)
    turns.ended(1, None)
    send(turns, 2, 0.0, 1.0)
    turns.ended(2, None)
    assert [p.turn for p in turns.due(1.0)] == [1]
    assert [p.turn for p in turns.cleared(1.5, through=2)] == [2]
    assert turns._unmarked == 0  # so due() returns at once from now on
    send(turns, 3, 2.0, 1.0)
    turns.ended(3, "a0")
    assert turns.due(10.0) == []  # a marked turn waits for its mark, not the estimate
