"""The records of a call: its settings, its shared dependencies, and what happened in it.

Kept apart from :mod:`sessions.call` (the call's tasks) so configuration and reporting code
can use them without the call machinery.
"""

from __future__ import annotations

import attrs

from actors.audio_pumps import AudioInStatistics
from actors.prompt_fetch import PromptFetcher
from actors.sonic.session import SonicOpener
from sessions.close_codes import CallEnd
from sessions.logs import CallLog
from sessions.metrics import Metrics


@attrs.frozen(kw_only=True)
class CallSettings:
    """Per-call behaviour, fixed by the daemon's configuration."""

    default_assistant: str | None = None
    """Assistant used when the carrier names none (``None``: such calls are refused)."""
    voice_id: str = "matthew"
    endpointing_sensitivity: str | None = "MEDIUM"
    max_tokens: int = 1024
    top_p: float = 0.9
    temperature: float = 0.7
    start_timeout: float = 10.0
    """Seconds the carrier has, after the upgrade, to start the media stream."""
    chunk_ms: int = 32
    """Duration of one ``audioInput`` chunk (reference nova-sonic.md §4: about 32 ms)."""
    silence_after: float = 0.2
    """Quiet seconds from the carrier after which comfort silence is sent to Sonic."""
    pre_stream_seconds: float = 10.0
    """Caller audio kept while the Sonic stream opens; beyond it the newest is dropped."""
    outbound_seconds: float = 2.0
    """Assistant audio queued towards a slow or paused carrier before Sonic is held back."""
    close_timeout: float = 2.0
    """Seconds allowed for the carrier's close handshake at the end of a call."""
    rotate_after: float = 360.0
    """Seconds after which a call's Sonic stream is replaced by a fresh one (with the
    conversation replayed), ahead of Bedrock's 8-minute stream limit."""


@attrs.frozen(kw_only=True)
class CallDeps:
    """What every call shares: built once by the daemon, never broken by one call."""

    prompts: PromptFetcher
    sonic: SonicOpener
    metrics: Metrics
    call_log: CallLog
    settings: CallSettings


@attrs.define(eq=False, kw_only=True)
class CallSummary:
    """What happened in one call: the call-end log line and the demo's summary."""

    call_id: str | None = None
    assistant: str | None = None
    prompt_version: str | None = None
    end: CallEnd | None = None
    first_audio_seconds: float | None = None
    turns: int = 0
    barge_ins: int = 0
    frames_in: int = 0
    frames_out: int = 0
    marks_sent: int = 0
    marks_played: int = 0
    pre_stream_drops: int = 0
    sonic_streams: int = 0
    """Sonic streams opened (more than one when the call was rotated)."""
    audio_in: AudioInStatistics = attrs.field(factory=AudioInStatistics)
