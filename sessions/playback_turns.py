"""Which assistant turns the caller heard, and how much of each (sans-IO).

The conversation numbers each assistant answer (a *turn*: one Sonic AUDIO content block,
or the fallback clip) and tags its audio with that number; the carrier link tells this
ledger what it sent, the marks it placed, the marks the carrier played and the clears
(barge-in) it sent. Each turn is settled once, as a :class:`TurnPlayed`:

- **Marks** (Twilio, Asterisk with ``MARK_MEDIA``): the link places a mark after each turn's
  last audio. The carrier answers when playback reaches it, so the turn was heard to its
  end (and so was every earlier turn: playback is in order). A clear (barge-in) settles
  every turn still playing. Twilio then echoes the pending marks at once although that
  audio was discarded, and Asterisk never answers them, so marks pending at a clear are
  forgotten and a late echo is ignored.
- **Estimate** (no marks: older Asterisk, ``ASTERISK_MARKS=off``; and the cut point of any
  turn a clear interrupts): the carrier plays what it receives at real-time pace after what
  it already holds (:mod:`sessions.playback_estimate`), so a turn started playing at
  ``max(previous end, first send)`` and, at a clear at ``now``, had played
  ``now - start`` of its audio. This is an estimate: it ignores the network's delay and the
  carrier's jitter buffer (tens of milliseconds).

Turn numbers only grow. A clear names the last turn the conversation had started, so a turn
whose audio was dropped before any of it reached the carrier is settled too (heard: none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs

Measured = Literal["mark", "estimate"]


@attrs.frozen
class TurnPlayed:
    """How one assistant turn played to the caller."""

    turn: int
    sent_s: float
    """Seconds of the turn's audio handed to the carrier."""
    heard_s: float
    """Of it, seconds the caller heard (exact at a mark, estimated otherwise)."""
    complete: bool
    """The caller heard the whole turn: no barge-in and no end of call cut it."""
    measured: Measured
    """``mark``: a carrier mark confirmed the end; ``estimate``: from the playback clock."""


@attrs.define(eq=False)
class _Turn:
    turn: int
    start: float
    """When the carrier began playing it (estimated)."""
    sent_s: float = 0.0
    ended: bool = False
    """The whole turn has been sent (its mark, if any, is placed)."""
    mark: str | None = None


# A turn whose estimated playback is this close to its length counts as heard to the end
# (float sums of frame durations are not exact).
_EPSILON = 1e-6


@attrs.define(eq=False)
class PlaybackTurns:
    """The ledger of one call's assistant turns on their way to the caller's ear."""

    _turns: dict[int, _Turn] = attrs.field(factory=dict)
    _marks: dict[str, int] = attrs.field(factory=dict)
    _settled_through: int = 0
    """Every turn up to this number is settled; later audio for them is ignored."""
    _playing_until: float = 0.0
    _unmarked: int = 0
    """Turns sent without a mark and not settled yet (so :meth:`due` is free otherwise)."""

    def audio(self, turn: int, now: float, seconds: float) -> None:
        """``seconds`` of ``turn``'s audio went to the carrier at ``now``."""
        if turn <= self._settled_through:
            return
        current = self._turns.get(turn)
        start = max(self._playing_until, now)
        if current is None:
            current = self._turns[turn] = _Turn(turn, start)
        current.sent_s += seconds
        self._playing_until = start + seconds

    def ended(self, turn: int, mark: str | None) -> None:
        """All of ``turn`` was sent; ``mark`` is the mark placed after it (``None``: the
        carrier takes no marks, so its end is estimated)."""
        current = self._turns.get(turn)
        if current is None:
            if turn <= self._settled_through:
                return
            # An answer with no audio at all (ended at once): nothing to hear.
            current = self._turns[turn] = _Turn(turn, self._playing_until)
        current.ended = True
        current.mark = mark
        if mark is not None:
            self._marks[mark] = turn
        else:
            self._unmarked += 1

    def mark_played(self, name: str) -> list[TurnPlayed]:
        """The carrier played up to mark ``name``: its turn and every earlier one were heard
        in full. Unknown and forgotten marks (echoed after a clear) settle nothing."""
        turn = self._marks.pop(name, None)
        if turn is None:
            return []
        settled = []
        for number in sorted(t for t in self._turns if t <= turn):
            t = self._turns.pop(number)
            if t.mark is not None:
                self._marks.pop(t.mark, None)
            elif t.ended:
                self._unmarked -= 1
            settled.append(TurnPlayed(number, t.sent_s, t.sent_s, True, "mark"))
        self._settled_through = max(self._settled_through, turn)
        return settled

    def cleared(self, now: float, through: int) -> list[TurnPlayed]:
        """A clear (barge-in) reached the carrier at ``now``: everything still queued there
        is dropped. Settles every outstanding turn up to ``through`` with what had played."""
        settled = [self._cut(t, now) for t in self._take(lambda t: t.turn <= through)]
        known = {p.turn for p in settled}
        for number in range(self._settled_through + 1, through + 1):
            if number not in known:
                settled.append(TurnPlayed(number, 0.0, 0.0, False, "estimate"))
        settled.sort(key=lambda p: p.turn)
        self._settled_through = max(self._settled_through, through)
        self._marks.clear()  # Twilio echoes them anyway; Asterisk never will
        self._playing_until = min(self._playing_until, now)
        return settled

    def due(self, now: float) -> list[TurnPlayed]:
        """Turns without a mark whose estimated playback has ended by ``now``."""
        if not self._unmarked:
            return []  # the writer asks after every command: no work with marks
        done = self._take(
            lambda t: t.ended and t.mark is None and now >= t.start + t.sent_s - _EPSILON
        )
        for t in done:
            self._settled_through = max(self._settled_through, t.turn)
        return [TurnPlayed(t.turn, t.sent_s, t.sent_s, True, "estimate") for t in done]

    def finish(self, now: float) -> list[TurnPlayed]:
        """The call is ending at ``now``: settle every outstanding turn as it stands."""
        settled = [self._cut(t, now) for t in self._take(lambda t: True)]
        self._marks.clear()
        return settled

    def estimated_end(self, turn: int) -> float | None:
        """When ``turn``'s playback ends by the estimate, if it is sent and has no mark to
        wait for (``None`` otherwise, or once it is settled)."""
        t = self._turns.get(turn)
        if t is None or not t.ended or t.mark is not None:
            return None
        return t.start + t.sent_s

    def _take(self, keep: Callable[[_Turn], bool]) -> list[_Turn]:
        chosen = [t for t in self._turns.values() if keep(t)]
        for t in chosen:
            del self._turns[t.turn]
            if t.ended and t.mark is None:
                self._unmarked -= 1
        return sorted(chosen, key=lambda t: t.turn)

    @staticmethod
    def _cut(t: _Turn, now: float) -> TurnPlayed:
        heard = min(t.sent_s, max(0.0, now - t.start))
        complete = t.ended and heard >= t.sent_s - _EPSILON
        return TurnPlayed(t.turn, t.sent_s, heard, complete, "estimate")
