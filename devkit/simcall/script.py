"""What a simulated caller does, and when (sans-IO: time and playback state are passed in).

:class:`CallScript` describes a caller: how long the call lasts, how many turns, how long
each utterance is, whether and when it barges in, and how it misbehaves.
:class:`CallerTurns` runs that script one 20 ms frame at a time. Each
:meth:`~CallerTurns.tick` returns the frame to send now (speech or line noise) and, as a
side effect, records the instants the measurements are taken from: the end of each
utterance (for time to first assistant audio) and the onset of barge-in speech (for the
reaction time to ``clear``/``FLUSH_MEDIA``).

A turn: speak an utterance, then listen in silence. When the reply has played out (the
playback buffer stayed empty for ``reply_done_gap``) and ``think_seconds`` passed, speak
again; if no reply starts within ``reply_timeout``, count it and speak again anyway. On the
``barge_in_turn``'s reply the caller starts its next utterance ``barge_in_delay`` seconds
into playback, over the assistant.
"""

from __future__ import annotations

import enum
import random

import attrs

from devkit.simcall.audio import FRAME_MS, CallerVoice
from devkit.simcall.playback import PlaybackBuffer

FRAME_S = FRAME_MS / 1000

__all__ = ["CallScript", "CallerTurns", "Misbehaviour", "Tick"]


class Misbehaviour(enum.Enum):
    """How a caller breaks the rules (``NONE``: a well-behaved caller)."""

    NONE = "none"
    ABRUPT_DISCONNECT = "abrupt_disconnect"
    """The TCP connection is reset mid-call: no ``stop``, no WebSocket close frame."""
    MALFORMED = "malformed"
    """One malformed message mid-call (see each caller's ``MALFORMED_KINDS``)."""
    SILENCE = "silence"
    """The caller never speaks: line noise only, for the whole call length."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class CallScript:
    """One caller's behaviour. Times are seconds from the start of the stream."""

    length: float | None = 30.0
    """Hang up this long after the stream started (``None``: after ``max_turns``)."""
    max_turns: int | None = None
    """Hang up once this many replies played out (``None``: until ``length``)."""
    utterance_seconds: tuple[float, float] = (0.8, 1.6)
    """Each utterance lasts a seeded draw from this range."""
    lead_silence: float = 0.3
    think_seconds: float = 0.4
    reply_timeout: float = attrs.field(default=8.0, validator=_positive)
    reply_done_gap: float = 0.3
    max_reply_seconds: float = 60.0
    barge_in_turn: int | None = None
    """Barge in during the reply to this turn (0-based); ``None`` never."""
    barge_in_delay: float = 0.5
    misbehaviour: Misbehaviour = Misbehaviour.NONE
    misbehave_after: float = 1.0
    malformed_kind: str | None = None
    """Which malformed message (``None``: drawn from the seed)."""
    early_media_frames: int = 0
    """Asterisk only: frames sent before ``MEDIA_START`` (asterisk#1712)."""
    keypad: tuple[tuple[float, str], ...] = ()
    """Keys the caller presses: (seconds from the start of the stream, key), in time order
    (Twilio ``dtmf`` messages, Asterisk ``DTMF_END`` events)."""

    def __attrs_post_init__(self) -> None:
        if self.length is None and self.max_turns is None:
            raise ValueError("a script needs a length or a max_turns")


@attrs.frozen
class Tick:
    """One frame's decision: what to send and whether the caller hangs up instead."""

    frame: bytes
    speech: bool
    hangup: bool = False


class _State(enum.Enum):
    LEAD = "lead"
    SPEAK = "speak"
    LISTEN = "listen"
    DONE = "done"


class CallerTurns:
    """Runs a :class:`CallScript` frame by frame and records measurement instants."""

    def __init__(self, script: CallScript, voice: CallerVoice, *, seed: int, start: float) -> None:
        self.script = script
        self.voice = voice
        self.start = start
        self._rng = random.Random(seed)
        self._state = _State.LEAD
        self._frames: list[bytes] = []
        self._pos = 0
        self._noise = voice.noise_frames(0, 1.0)
        self._noise_pos = 0
        self.turns = 0
        """Utterances begun."""
        self.utterance_ends: list[float] = []
        self.reply_latencies: list[float] = []
        self.no_reply_turns = 0
        self.barge_onsets: list[float] = []
        self.barge_reactions: list[float] = []
        self.barges_missed = 0
        self._awaiting_since: float | None = None  # end of the utterance awaiting its reply
        self._reply_heard_at: float | None = None
        self._listen_since = 0.0
        self._barge_pending: float | None = None
        self._barged_this_reply = False

    @property
    def done(self) -> bool:
        """True once the caller decided to hang up."""
        return self._state is _State.DONE

    def _speak(self, now: float) -> None:
        lo, hi = self.script.utterance_seconds
        self._frames = self.voice.utterance_frames(self.turns, self._rng.uniform(lo, hi))
        self._pos = 0
        self.turns += 1
        self._state = _State.SPEAK

    def _noise_frame(self) -> bytes:
        frame = self._noise[self._noise_pos % len(self._noise)]
        self._noise_pos += 1
        return frame

    def tick(self, now: float, playback: PlaybackBuffer) -> Tick:
        """The frame to send at ``now`` (call once per 20 ms)."""
        script = self.script
        elapsed = now - self.start
        self._expire(now)
        if self._state is _State.DONE or (script.length is not None and elapsed >= script.length):
            self._state = _State.DONE
            return Tick(b"", speech=False, hangup=True)
        if script.misbehaviour is Misbehaviour.SILENCE:
            return Tick(self._noise_frame(), speech=False)
        if self._state is _State.LEAD and elapsed >= script.lead_silence:
            self._speak(now)
        elif self._state is _State.LISTEN:
            self._listen(now, playback)
        if self._state is _State.SPEAK:
            if self._pos < len(self._frames):
                frame = self._frames[self._pos]
                self._pos += 1
                return Tick(frame, speech=True)
            # The utterance's audio ended with the previous frame: this instant is its end.
            self.utterance_ends.append(now)
            self._awaiting_since = now
            self._reply_heard_at = None
            self._barged_this_reply = False
            self._listen_since = now
            self._state = _State.LISTEN
        if self._state is _State.DONE:
            return Tick(b"", speech=False, hangup=True)
        return Tick(self._noise_frame(), speech=False)

    def _listen(self, now: float, playback: PlaybackBuffer) -> None:
        script = self.script
        heard = self._reply_heard_at
        if heard is None:
            if now - self._listen_since >= script.reply_timeout:
                self.no_reply_turns += 1
                self._awaiting_since = None  # a later reply must not count for this turn
                self._next_turn(now)
            return
        barge_turn = script.barge_in_turn
        if (
            barge_turn is not None
            and self.turns - 1 == barge_turn
            and not self._barged_this_reply
            and playback.playing(now)
            and now - heard >= script.barge_in_delay
        ):
            self._barged_this_reply = True
            self._barge_pending = now
            self.barge_onsets.append(now)
            self._speak(now)
            return
        idle = now - playback.playback_end
        if (
            not playback.playing(now) and idle >= max(script.reply_done_gap, script.think_seconds)
        ) or now - heard >= script.max_reply_seconds:
            self._next_turn(now)

    def _next_turn(self, now: float) -> None:
        if self.script.max_turns is not None and self.turns >= self.script.max_turns:
            self._state = _State.DONE
        else:
            self._speak(now)

    def _expire(self, now: float) -> None:
        if (
            self._barge_pending is not None
            and now - self._barge_pending > self.script.reply_timeout
        ):
            self._barge_pending = None
            self.barges_missed += 1

    def on_assistant_audio(self, now: float) -> None:
        """Assistant audio arrived: the reply to the last utterance, unless a barge-in's
        ``clear`` is still outstanding (then it is the tail of the interrupted reply)."""
        if self._barge_pending is not None:
            return
        if self._awaiting_since is not None:
            self.reply_latencies.append(now - self._awaiting_since)
            self._awaiting_since = None
            if self._state is _State.LISTEN:
                self._reply_heard_at = now
        elif self._state is _State.LISTEN and self._reply_heard_at is None:
            self._reply_heard_at = now

    def on_clear(self, now: float) -> None:
        """The daemon cleared playback (barge-in reaction, if one is pending)."""
        if self._barge_pending is not None:
            self.barge_reactions.append(now - self._barge_pending)
            self._barge_pending = None

    def finish(self) -> None:
        """The call is over: an unanswered barge-in counts as missed."""
        if self._barge_pending is not None:
            self._barge_pending = None
            self.barges_missed += 1
