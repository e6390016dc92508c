"""What the caller heard, estimated from the audio the daemon sent (sans-IO).

Used where the carrier gives no marks (Asterisk before 20.18.0 / 22.8.0 / 23.2.0, or
``ASTERISK_MARKS=off``). The carrier plays what it receives at real-time pace, queueing
the surplus (chan_websocket re-times our frames to ``ptime``). So each frame sent extends a
playback clock by its duration, starting no earlier than "now"; a flush drops whatever the
clock had not reached yet. Heard = sent - flushed - still queued.
"""

from __future__ import annotations

import attrs


@attrs.define
class PlaybackEstimate:
    """Sent, flushed and heard seconds of assistant audio on one call."""

    sent_s: float = 0.0
    """Audio handed to the carrier."""
    flushed_s: float = 0.0
    """Audio the carrier had queued, not yet played, when a flush dropped it."""
    last_sent_at: float | None = None
    """When audio last went to the carrier (``None``: never)."""
    _playing_until: float = 0.0

    @property
    def playing_until(self) -> float:
        """When the caller will have heard everything sent so far (past: already heard)."""
        return self._playing_until

    def sent(self, now: float, seconds: float) -> None:
        """``seconds`` of audio went to the carrier at ``now``."""
        self.sent_s += seconds
        self.last_sent_at = now
        self._playing_until = max(self._playing_until, now) + seconds

    def flushed(self, now: float) -> None:
        """A flush (barge-in) reached the carrier at ``now``: its queue is dropped."""
        self.flushed_s += max(0.0, self._playing_until - now)
        self._playing_until = min(self._playing_until, now)

    def heard_s(self, now: float) -> float:
        """Audio played to the caller by ``now``."""
        queued = max(0.0, self._playing_until - now)
        return max(0.0, self.sent_s - self.flushed_s - queued)
