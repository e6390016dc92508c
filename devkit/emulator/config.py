"""Configuration of the local Nova Sonic emulator: every knob, with what it imitates.

:class:`EmulatorConfig` is the whole server's configuration; :class:`StreamPlan` holds the
knobs that may differ per stream (timings and injected faults). A stream's plan starts from
``EmulatorConfig.plan``, is overridden by ``EmulatorConfig.stream_overrides`` for its ordinal
(1 = the first stream the emulator accepted) and finally by directives in its system prompt.

Directives let one faulty call run beside healthy ones: the SYSTEM text block may contain
``[emulator:KEY=VALUE,KEY=VALUE]`` (several brackets allowed). KEY is a :class:`StreamPlan`
field with ``-`` for ``_`` (``rst-after``, ``stall-after``, ``throttle-after``,
``corrupt-after``, ``error-after``, ``internal-error-after``, ``goaway-after``,
``session-limit``, ``idle-timeout``, ``time-to-first-audio``, ``reply-seconds``,
``audio-speed``, ``tool-use-turn``, ``tool-use-after``); VALUE is in seconds (or a factor for
``audio-speed``, a turn number for ``tool-use-turn``). Time-based faults count from the moment
the stream was opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "DEFAULT_MODEL_IDS",
    "ENDPOINTING_PAUSES",
    "FAULT_KINDS",
    "EmulatorConfig",
    "StreamPlan",
    "parse_directives",
]

#: Model ids the emulator serves; anything else gets Bedrock's 400 ValidationException.
DEFAULT_MODEL_IDS = frozenset({"amazon.nova-2-sonic-v1:0", "amazon.nova-sonic-v1:0"})

#: Pause of silence after which Nova 2 Sonic takes the turn (reference §3.2, sonic-turn-taking).
ENDPOINTING_PAUSES: Mapping[str, float] = {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}


def _positive_or_none(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, int | float) and value >= 0):
        raise ValueError(f"{attribute.name} must be None or >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class StreamPlan:
    """Per-stream timings and faults. ``None`` disables a fault; times are seconds.

    Attributes:
        session_limit: the stream ends with a ``modelTimeoutException`` frame this long after
            it opened (Bedrock: 8 minutes).
        idle_timeout: a ``validationException`` ends the stream when no input event arrived
            for this long (Bedrock's number is undocumented; reference §4 quotes 175 s).
        time_to_first_audio: delay between the end of the caller's utterance (plus the
            endpointing pause) and the assistant's first output audio.
        reply_seconds: duration of each synthetic assistant reply.
        audio_speed: how much faster than real time assistant audio is generated (the real
            model generates faster than real time; reference §3.4).
        throttle_after: send a ``throttlingException`` frame and end the stream.
        error_after: send a ``modelStreamErrorException`` frame and end the stream.
        internal_error_after: send an ``internalServerException`` frame and end the stream.
        rst_after: reset the stream abruptly (RST_STREAM, INTERNAL_ERROR).
        stall_after: stop sending anything while keeping the stream open and reading input.
        corrupt_after: send one output frame with a bad message CRC, then end the stream.
        goaway_after: send GOAWAY on this stream's connection and close it (abrupt: the
            other streams on that connection fail too) this long after the stream opened.
        tool_use_turn: the reply to this caller turn (1-based) starts with a ``toolUse``
            (of :attr:`EmulatorConfig.tool_use_name`, or the first tool offered).
        tool_use_after: send a ``toolUse`` this long after the stream opened (a schedule).
    """

    session_limit: float = attrs.field(default=480.0, validator=_positive_or_none)
    idle_timeout: float | None = attrs.field(default=175.0, validator=_positive_or_none)
    time_to_first_audio: float = attrs.field(default=0.35, validator=_positive_or_none)
    reply_seconds: float = attrs.field(default=2.0, validator=_positive_or_none)
    audio_speed: float = attrs.field(default=4.0, validator=_positive_or_none)
    throttle_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    error_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    internal_error_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    rst_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    stall_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    corrupt_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    goaway_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    tool_use_turn: float | None = attrs.field(default=None, validator=_positive_or_none)
    tool_use_after: float | None = attrs.field(default=None, validator=_positive_or_none)

    def with_overrides(self, overrides: Mapping[str, float]) -> StreamPlan:
        """Return a copy with ``overrides`` (field name → value) applied; unknown names raise."""
        known = {a.name for a in attrs.fields(StreamPlan)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown stream plan keys: {sorted(unknown)}")
        return attrs.evolve(self, **overrides)


#: The mid-stream faults a :class:`StreamPlan` can inject (its ``*_after`` fields).
FAULT_KINDS = (
    "rst_after",
    "goaway_after",
    "error_after",
    "throttle_after",
    "internal_error_after",
    "corrupt_after",
    "stall_after",
)

_DIRECTIVE = re.compile(r"\[emulator:([^\]]*)\]")


def parse_directives(text: str) -> dict[str, float]:
    """Extract ``[emulator:key=value,...]`` directives from a system prompt.

    Returns field names of :class:`StreamPlan` mapped to values; raises ``ValueError`` naming
    the bad item when a directive is malformed, so a typo in a test fails loudly.
    """
    known = {a.name for a in attrs.fields(StreamPlan)}
    found: dict[str, float] = {}
    for match in _DIRECTIVE.finditer(text):
        for item in match.group(1).split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, raw = item.partition("=")
            name = key.strip().replace("-", "_")
            if not sep or name not in known:
                raise ValueError(f"bad emulator directive {item!r}")
            try:
                found[name] = float(raw)
            except ValueError:
                raise ValueError(f"bad emulator directive value {item!r}") from None
    return found


@attrs.frozen(kw_only=True)
class EmulatorConfig:
    """Everything the emulator does, fixed when it starts.

    Attributes:
        credentials: access key id → secret access key; requests signed with anything else
            are refused with 403.
        session_tokens: access key id → session token the request must carry (temporary
            credentials); keys absent here accept any (or no) token.
        region: the SigV4 region requests must be signed for.
        model_ids: model ids served; others get 400 ValidationException.
        max_clock_skew: how far (seconds) ``x-amz-date`` and each event's ``:date`` may be
            from the emulator's clock (AWS: 5 minutes).
        signature_error_type: ``x-amzn-errortype`` of the 403 for a bad request signature.
        plan: the default :class:`StreamPlan` of every stream.
        stream_overrides: stream ordinal (1-based, in accept order) → plan overrides.
        pause_scale: multiplies the endpointing pauses (HIGH 1.5 s, MEDIUM 1.75 s, LOW 2 s)
            so tests can run turns quickly.
        speech_threshold_dbfs: RMS level (dBFS, per 10 ms frame) above which caller audio
            counts as speech.
        min_speech_seconds: speech must last this long to start an utterance (or barge in).
        output_chunk_seconds: audio per ``audioOutput`` event.
        throttle_open_every: every Nth stream is refused with 429 ThrottlingException (0 = off).
        throttle_open_ordinals: stream ordinals refused with 429 ThrottlingException.
        throttle_open_fraction: fraction of streams refused with 429, drawn with ``seed``.
        max_active_streams: streams open at once across connections; more get 429 (0 = off).
        max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection.
        receive_window: flow-control window (bytes) the emulator grants each stream
            (SETTINGS_INITIAL_WINDOW_SIZE); the connection's window is sized for
            ``max_concurrent_streams`` such streams, up to HTTP/2's 2**31 - 1. HTTP/2's
            64 KiB default would make a busy connection, not the model, the bottleneck.
        goaway_after_streams: after this many streams on one connection, send GOAWAY
            (graceful: running streams finish, new ones must use a new connection; 0 = off).
        goaway_after_seconds: send a graceful GOAWAY once a connection is this old.
        fault_fraction: fraction of accepted streams given one mid-stream fault, drawn with
            ``seed``; the kinds take turns through ``fault_kinds`` (so each gets its share)
            and each fires at a time drawn from ``fault_window`` (seconds after the open).
        fault_kinds: the :data:`FAULT_KINDS` that ``fault_fraction`` draws from.
        fault_window: (earliest, latest) seconds after the open for a drawn fault.
        seed: makes transcripts, voices and random throttling reproducible.
        tool_use_name: the tool the emulator calls (default: the first one offered; a
            stream offering no tools gets no ``toolUse``, as the model cannot call one).
        tool_use_text_pattern: a regular expression; a cross-modal text matching it is
            answered with a ``toolUse`` instead of speech.
    """

    credentials: Mapping[str, str] = attrs.field(factory=dict)
    session_tokens: Mapping[str, str] = attrs.field(factory=dict)
    region: str = "us-east-1"
    model_ids: frozenset[str] = DEFAULT_MODEL_IDS
    max_clock_skew: float = 300.0
    signature_error_type: str = "InvalidSignatureException"
    plan: StreamPlan = attrs.field(factory=StreamPlan)
    stream_overrides: Mapping[int, Mapping[str, float]] = attrs.field(factory=dict)
    pause_scale: float = 1.0
    speech_threshold_dbfs: float = -40.0
    min_speech_seconds: float = 0.1
    output_chunk_seconds: float = 0.1
    throttle_open_every: int = 0
    throttle_open_ordinals: frozenset[int] = frozenset()
    throttle_open_fraction: float = 0.0
    max_active_streams: int = 0
    max_concurrent_streams: int = 1000
    receive_window: int = attrs.field(
        default=1 << 20, validator=attrs.validators.in_(range(65_535, 2**31))
    )
    goaway_after_streams: int = 0
    goaway_after_seconds: float | None = None
    fault_fraction: float = 0.0
    fault_kinds: tuple[str, ...] = attrs.field(
        default=FAULT_KINDS,
        validator=attrs.validators.deep_iterable(attrs.validators.in_(FAULT_KINDS)),
    )
    fault_window: tuple[float, float] = (1.0, 4.0)
    seed: int = 0
    tool_use_name: str | None = None
    tool_use_text_pattern: str | None = None

    def plan_for(self, ordinal: int) -> StreamPlan:
        """The plan of stream number ``ordinal`` before system-prompt directives."""
        overrides = self.stream_overrides.get(ordinal)
        return self.plan.with_overrides(overrides) if overrides else self.plan

    def endpointing_pause(self, sensitivity: str | None) -> float:
        """Silence (seconds) that ends an utterance for ``sensitivity`` (None → MEDIUM)."""
        return ENDPOINTING_PAUSES[sensitivity or "MEDIUM"] * self.pause_scale
