"""The record of one simulated call (:class:`CallReport`) and the statistics helpers.

Times are seconds. ``started_at``/``ended_at`` are on trio's clock (monotonic), so a load
run can place every call on one timeline; every other duration is relative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from actors.close_codes import CloseCode

__all__ = ["OUTCOMES", "CallReport", "percentile"]

OUTCOMES = (
    "completed",
    "misbehaved",
    "rejected",
    "connect_failed",
    "closed_by_daemon",
    "hangup_by_daemon",
    "protocol_error",
)
"""How a call ended: the script ran out and we hung up; we misbehaved (abrupt disconnect,
or a malformed message the daemon then closed on); the upgrade was refused (HTTP status);
no connection or handshake; the daemon closed the socket early; the daemon sent Asterisk
``HANGUP``; the daemon sent something the carrier cannot accept."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation), ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo = math.floor(rank)
    hi = math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _tuple(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class CallReport:
    """Everything measured on one simulated call (JSON-serialisable by :meth:`to_json`)."""

    label: str
    dialect: str
    assistant: str | None
    seed: int
    misbehaviour: str
    outcome: str
    """One of :data:`OUTCOMES`."""
    started_at: float
    ended_at: float
    http_status: int | None = None
    """Status of a refused upgrade (``rejected``)."""
    error: str | None = None
    admission_s: float | None = None
    """Connect start → WebSocket handshake complete (TCP, TLS, upgrade, admission)."""
    first_audio_s: float | None = None
    """End of the caller's first utterance → first assistant audio message received."""
    reply_latencies_s: tuple[float, ...] = attrs.field(default=(), converter=_tuple)
    """The same for every utterance that got a reply, in order."""
    barge_in_reactions_s: tuple[float, ...] = attrs.field(default=(), converter=_tuple)
    """Caller speech onset over assistant audio → clear / ``FLUSH_MEDIA`` received."""
    barge_ins: int = 0
    barge_ins_missed: int = 0
    """Barge-ins the daemon never cleared playback for (within ``reply_timeout``)."""
    turns: int = 0
    no_reply_turns: int = 0
    frames_sent: int = 0
    frames_late: int = 0
    """Caller frames sent more than one frame behind the 20 ms schedule (harness overload)."""
    frames_unsent: int = 0
    """Frames the script still had to send when the daemon ended the call early."""
    frames_received: int = 0
    """Assistant audio received, in 20 ms frames (however many messages carried them)."""
    assistant_audio_s: float = 0.0
    responses: int = 0
    interarrival_p50_ms: float | None = None
    """Inter-arrival of assistant audio messages within a response (p50, p99, max)."""
    interarrival_p99_ms: float | None = None
    interarrival_max_ms: float | None = None
    jitter_ms: float | None = None
    """Standard deviation of those inter-arrival times."""
    underruns: int = 0
    """Playback ran dry in the middle of a response (the caller heard a gap)."""
    underrun_s: float = 0.0
    marks_received: int = 0
    marks_echoed: int = 0
    unknown_commands: int = 0
    duplicate_marks: int = 0
    """Marks whose name the daemon had already used on this call (ids must be unique)."""
    """Commands the simulated carrier release does not know (Asterisk only logs them)."""
    clears_received: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    """``caller``, ``daemon`` or ``network`` (the TCP connection broke)."""
    keys_sent: int = 0
    """Keypad keys the caller pressed (``CallScript.keypad``)."""
    audio_before_speech_s: float = 0.0
    """Assistant audio received before the caller's first utterance began (a greeting)."""

    @property
    def close_label(self) -> str:
        """The close code with its name from the daemon's table (``4100 NO_ASSISTANT``)."""
        if self.close_code is None:
            return "-"
        try:
            return f"{self.close_code} {CloseCode(self.close_code).name}"
        except ValueError:  # not one of ours (1005, 1006, a carrier's own code, ...)
            return str(self.close_code)

    @property
    def duration_s(self) -> float:
        """Wall time the call took, from connect to close."""
        return self.ended_at - self.started_at

    @property
    def ok(self) -> bool:
        """The call ended the way its script intended (a misbehaving call counts as ok
        when it misbehaved as planned; the daemon's answer is in ``close_code``)."""
        return self.outcome in ("completed", "misbehaved")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists; ``duration_s`` and ``ok`` included)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}
        out["duration_s"] = self.duration_s
        out["ok"] = self.ok
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallReport:
        """Inverse of :meth:`to_json` (derived fields are ignored)."""
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
