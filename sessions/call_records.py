"""The records of a call: its settings, its shared dependencies, and what happened in it.

Kept apart from :mod:`sessions.call` (the call's tasks) so configuration and reporting code
can use them without the call machinery.
"""

from __future__ import annotations

import attrs

from actors.assistant_definition import AssistantDefinition
from actors.audio_pumps import AudioInStatistics
from actors.prompt_fetch import PromptFetcher
from actors.sonic_session import SonicOpener
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
class SonicCallSettings:
    """What one call asks of Nova Sonic: its assistant's definition over the daemon's defaults.

    Resolved once, when the call's prompt is loaded, so every stream of the call (rotations
    included) uses the same settings, whatever is published meanwhile.
    """

    system_prompt: str = attrs.field(repr=False)
    voice_id: str
    endpointing_sensitivity: str | None
    max_tokens: int
    top_p: float
    temperature: float
    language: str | None = None

    @classmethod
    def resolve(cls, defaults: CallSettings, definition: AssistantDefinition) -> SonicCallSettings:
        """Each setting the definition sets wins; the others keep the daemon's default."""

        d = definition
        return cls(
            system_prompt=d.system_prompt(),
            voice_id=defaults.voice_id if d.voice is None else d.voice,
            endpointing_sensitivity=(
                defaults.endpointing_sensitivity if d.endpointing is None else d.endpointing
            ),
            max_tokens=defaults.max_tokens if d.max_tokens is None else d.max_tokens,
            top_p=defaults.top_p if d.top_p is None else d.top_p,
            temperature=defaults.temperature if d.temperature is None else d.temperature,
            language=d.language,
        )

    def log_fields(self) -> dict[str, object]:
        """The settings for the call's log line (never the prompt)."""
        return {
            "voice": self.voice_id,
            "endpointing": self.endpointing_sensitivity,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "temperature": self.temperature,
            "language": self.language,
        }


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
    audio_in: AudioInStatistics = attrs.field(factory=AudioInStatistics)
