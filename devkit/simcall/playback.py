"""The carrier's playback buffer, simulated in time (sans-IO: ``now`` is passed in).

Twilio and Asterisk buffer what the daemon sends and play it in real time. This model
keeps only the moment the buffer will run dry (``playback_end``) and the marks queued in
it, which is all the carrier's observable behaviour depends on: marks are due when
playback reaches them, a clear drops the audio (Twilio then echoes pending marks at once,
Asterisk forgets them).

It also measures the outbound stream the way a listener would notice it. Assistant audio
messages belong to one *response* while each arrives less than ``response_gap`` seconds
after the previous one with no clear in between. Within a response it records the
inter-arrival time of messages (their spread is the jitter the report gives; a daemon may
send ahead of real time, which a buffering carrier absorbs, so RFC 3550's media-clock
jitter would flag harmless bursts) and *underruns*: audio that arrived after the buffer
had already run dry, i.e. a gap the caller heard.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PlaybackBuffer"]


class PlaybackBuffer:
    """Simulated real-time playback of received assistant audio."""

    def __init__(self, *, response_gap: float = 1.0, underrun_tolerance: float = 0.001) -> None:
        self.response_gap = response_gap
        # Audio paced at exactly real time arrives as the previous frame ends; timer and
        # float noise of a millisecond is no audible gap.
        self.underrun_tolerance = underrun_tolerance
        self.playback_end = 0.0
        """Time at which everything queued so far has been played."""
        self.audio_seconds = 0.0
        self.messages = 0
        self.responses = 0
        self.underruns = 0
        self.underrun_seconds = 0.0
        self.interarrivals: list[float] = []
        self.response_started: float | None = None
        """Arrival time of the first message of the current response."""
        self.last_arrival: float | None = None
        self._marks: deque[tuple[float, str]] = deque()

    def add_audio(self, now: float, seconds: float) -> None:
        """Queue ``seconds`` of audio that arrived at ``now``."""
        last = self.last_arrival
        if last is None or self.response_started is None or now - last >= self.response_gap:
            self.responses += 1
            self.response_started = now
        else:
            self.interarrivals.append(now - last)
            if now - self.playback_end > self.underrun_tolerance:
                self.underruns += 1
                self.underrun_seconds += now - self.playback_end
        self.last_arrival = now
        self.messages += 1
        self.audio_seconds += seconds
        self.playback_end = max(self.playback_end, now) + seconds

    def add_mark(self, now: float, name: str) -> list[str]:
        """Queue a mark; returns it at once when nothing is left to play."""
        if self.playback_end <= now and not self._marks:
            return [name]
        self._marks.append((max(self.playback_end, now), name))
        return []

    def due_marks(self, now: float) -> list[str]:
        """Marks that playback has reached by ``now`` (removed from the queue)."""
        out: list[str] = []
        while self._marks and self._marks[0][0] <= now:
            out.append(self._marks.popleft()[1])
        return out

    def clear(self, now: float) -> list[str]:
        """Drop everything queued; returns the marks that were pending, oldest first."""
        pending = [name for _, name in self._marks]
        self._marks.clear()
        self.playback_end = min(self.playback_end, now)
        self.response_started = None  # the next audio starts a new response
        return pending

    def playing(self, now: float) -> bool:
        """True while queued audio remains to be played."""
        return self.playback_end > now

    def queued_seconds(self, now: float) -> float:
        """Seconds of audio still queued."""
        return max(0.0, self.playback_end - now)

    @property
    def pending_marks(self) -> int:
        """Marks queued and not yet reached."""
        return len(self._marks)
