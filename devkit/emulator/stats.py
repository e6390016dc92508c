"""Counters of what the emulator saw and did, and their frozen snapshot."""

from __future__ import annotations

import attrs

__all__ = ["TEXTS_KEPT", "Counters", "EmulatorStatistics"]

TEXTS_KEPT = 100


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
    cross_modal_texts: int = 0
    greetings: int = 0
    tool_uses: int = 0
    tool_results: int = 0
    tool_results_out_of_order: int = 0
    tool_uses_unanswered: int = 0
    texts: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.define
class Counters:
    """Mutable counters owned by one emulator (no module-level state).

    ``streams_opened`` counts 200 responses; ``streams_refused`` non-200 ones;
    ``streams_completed`` streams that ended with the client's clean close (sessionEnd and
    END_STREAM). ``faults_injected`` counts throttles, resets, GOAWAYs, stalls, corrupt
    frames and session-limit timeouts the emulator caused on purpose; ``faults_by_kind``
    counts the mid-stream ones by :class:`~devkit.emulator.config.StreamPlan` field name.

    ``cross_modal_texts`` counts interactive USER text blocks and ``texts`` keeps the last
    :data:`TEXTS_KEPT` of them (so a test can see what reached the "model" as text);
    ``greetings`` counts those sent right after the AUDIO block opened, before any audio
    (the speaks-first pattern). ``tool_uses`` counts ``toolUse`` events sent,
    ``tool_results`` accepted results, ``tool_results_out_of_order`` results that overtook
    an older pending tool use, ``tool_uses_unanswered`` tool uses whose stream ended
    without their result.
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
    cross_modal_texts: int = 0
    greetings: int = 0
    tool_uses: int = 0
    tool_results: int = 0
    tool_results_out_of_order: int = 0
    tool_uses_unanswered: int = 0
    texts: list[str] = attrs.field(factory=list)

    def text_received(self, text: str) -> None:
        """Keep one cross-modal text (the last :data:`TEXTS_KEPT`)."""
        self.cross_modal_texts += 1
        self.texts.append(text)
        del self.texts[:-TEXTS_KEPT]

    faults_by_kind: dict[str, int] = attrs.field(factory=dict)

    def snapshot(self) -> EmulatorStatistics:
        """Freeze the current values."""
        return EmulatorStatistics(**attrs.asdict(self))
