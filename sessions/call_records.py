"""The records of a call: its shared dependencies, how and why it ended.

Kept apart from :mod:`sessions.call` (the call's tasks) so configuration and reporting code
can use them without the call machinery. The close codes themselves are the one table in
:mod:`actors.close_codes`; :func:`end_for_error` only reads the code each error carries.
"""

from __future__ import annotations

import attrs

from actors.assistant_definition import AssistantDefinition
from actors.audio_pumps import AudioInStatistics
from actors.close_codes import CloseCode
from actors.errors import CarrierError, PromptError, SonicError
from actors.fallback_audio import FallbackClips, shipped_fallback_clips
from actors.keypad import DEFAULT_POLICY, DtmfPolicy
from actors.prompt_fetch import PromptFetcher
from actors.sonic.events import ToolSpec as SonicToolSpec
from actors.sonic.recovery import RecoveryPolicy
from actors.sonic.session import SonicOpener
from sessions.config import CallSettings, ToolSettings
from sessions.logs import CallLog
from sessions.metrics import EndReason, FallbackOutcome, Metrics


@attrs.frozen
class CallEnd:
    """Why a call ended: the metrics reason, and the close code and reason for the carrier."""

    reason: EndReason
    code: CloseCode
    text: str


# What the carrier is told when a prompt fails: which assistant and how, never bucket or key.
_PROMPT_WHAT = {
    CloseCode.NO_ASSISTANT: "invalid assistant name",
    CloseCode.PROMPT_NOT_FOUND: "no prompt for assistant",
    CloseCode.PROMPT_TIMEOUT: "prompt load timed out for assistant",
}


def end_for_error(exc: Exception) -> CallEnd:
    """The :class:`CallEnd` for an error that ended a call (its own ``close_code``)."""
    if isinstance(exc, CarrierError):
        return CallEnd("protocol_error", exc.close_code, exc.reason)
    if isinstance(exc, PromptError):
        what = _PROMPT_WHAT.get(exc.close_code, "prompt store failed for assistant")
        # InvalidAssistantName already carries the name escaped and quoted.
        code = exc.close_code
        name = exc.assistant if code == CloseCode.NO_ASSISTANT else repr(exc.assistant)
        return CallEnd("prompt_error", code, _short(f"{what} {name}"))
    if isinstance(exc, SonicError):
        return CallEnd("sonic_error", exc.close_code, _short(f"Nova Sonic: {type(exc).__name__}"))
    # Anything else is a bug: it ends this call only, with 1011.
    return CallEnd("internal_error", CloseCode.INTERNAL_ERROR, "internal error")


def _short(text: str) -> str:
    # RFC 6455 caps a close reason at 123 bytes of UTF-8.
    return text.encode()[:123].decode(errors="ignore")


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
    greeting: str | None = attrs.field(default=None, repr=False)
    tools: tuple[SonicToolSpec, ...] = ()
    """The definition's tools as offered to the model (name, description, JSON Schema)."""
    dtmf: DtmfPolicy = DEFAULT_POLICY

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
            greeting=d.greeting,
            tools=tuple(
                SonicToolSpec(name=t.name, description=t.description, input_schema=t.input_schema)
                for t in d.tools
            ),
            dtmf=DEFAULT_POLICY if d.dtmf is None else d.dtmf,
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
            "greeting": self.greeting is not None,
            "tools": len(self.tools),
        }


@attrs.frozen(kw_only=True)
class CallDeps:
    """What every call shares: built once by the daemon, never broken by one call."""

    prompts: PromptFetcher
    sonic: SonicOpener
    metrics: Metrics
    call_log: CallLog
    settings: CallSettings
    fallback_clips: FallbackClips = attrs.field(factory=shipped_fallback_clips)
    """The clips a call can play when its assistant cannot go on (read at start-up)."""
    tools: ToolSettings = attrs.field(factory=ToolSettings)
    """The assistants' tools: limits, trust, the Twilio REST API."""
    twilio_auth_token: str | None = attrs.field(default=None, repr=False)
    """``TWILIO_AUTH_TOKEN``: the Twilio REST API's password for ``transfer``."""
    recovery: RecoveryPolicy = attrs.field(factory=RecoveryPolicy)
    """How calls recover from transient Sonic failures (``SONIC_RECOVERY_*``)."""


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
    """Caller frames dropped while the Sonic stream opened (the pre-stream buffer was full)."""
    audio_in_drops: int = 0
    """Caller frames dropped after it opened (the caller-audio channel was full)."""
    rate_limited_drops: int = 0
    """Caller frames dropped for coming faster than ``CALLER_AUDIO_RATE_LIMIT`` allows."""
    dtmf_digits: int = 0
    """Keypad digits pressed (the digits themselves are never kept)."""
    audio_sent_s: float = 0.0
    """Assistant audio sent to the carrier."""
    audio_heard_s: float = 0.0
    """Of it, what the caller heard: estimated (``sessions.playback_estimate``), not marks."""
    sonic_streams: int = 0
    """Sonic streams opened (more than one when the call was rotated)."""
    sonic_recoveries: int = 0
    """Transient Sonic failures the call survived on a new stream."""
    sonic_recovery_attempts: int = 0
    """Replacement streams tried after transient failures."""
    sonic_failures: dict[str, int] = attrs.field(factory=dict)
    """Transient Sonic failures by reason label (:mod:`actors.sonic.recovery`)."""
    audio_in: AudioInStatistics = attrs.field(factory=AudioInStatistics)
    fallback: FallbackOutcome | None = None
    """The fallback clip's outcome when the assistant could not go on: ``heard`` (to its
    end), ``cut`` (the caller hung up or it timed out), ``no_clip``; ``None``: not needed."""

    def drops(self) -> dict[str, int]:
        """Caller frames this call dropped, by reason: the ``queue`` labels of
        ``novavoice_queue_drops_total``, so the call-end line and the metric add up."""
        return {
            "pre_stream": self.pre_stream_drops,
            "audio_in": self.audio_in_drops,
            "rate_limited": self.rate_limited_drops,
        }
