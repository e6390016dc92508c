"""Counters of what the emulator saw and did, and their frozen snapshot."""

from __future__ import annotations

import attrs

__all__ = ["Counters", "EmulatorStatistics"]


@attrs.frozen(kw_only=True)
class EmulatorStatistics:
    """A snapshot of :class:`Counters` (see there for the meaning of each field)."""

    connections_opened: int
    streams_opened: int
    streams_active: int
    streams_completed: int
    streams_refused: int
    events_in: int
    events_out: int
    audio_bytes_in: int
    audio_bytes_out: int
    turns: int
    barge_ins: int
    signature_failures: int
    validation_errors: int
    faults_injected: int
    faults_by_kind: dict[str, int]


@attrs.define
class Counters:
    """Mutable counters owned by one emulator (no module-level state).

    ``streams_opened`` counts 200 responses; ``streams_refused`` non-200 ones;
    ``streams_completed`` streams that ended with the client's clean close (sessionEnd and
    END_STREAM). ``faults_injected`` counts throttles, resets, GOAWAYs, stalls, corrupt
    frames and session-limit timeouts the emulator caused on purpose; ``faults_by_kind``
    counts the mid-stream ones by :class:`~devkit.emulator.config.StreamPlan` field name.
    """

    connections_opened: int = 0
    streams_opened: int = 0
    streams_active: int = 0
    streams_completed: int = 0
    streams_refused: int = 0
    events_in: int = 0
    events_out: int = 0
    audio_bytes_in: int = 0
    audio_bytes_out: int = 0
    turns: int = 0
    barge_ins: int = 0
    signature_failures: int = 0
    validation_errors: int = 0
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = attrs.field(factory=dict)

    def snapshot(self) -> EmulatorStatistics:
        """Freeze the current values."""
        return EmulatorStatistics(**attrs.asdict(self))
