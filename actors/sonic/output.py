"""Typed, frozen records of what Nova Sonic sends back, and the parser (sans-IO).

Reference ``nova-sonic.md`` §2.3 (frames) and §3.3–§3.4 (events). A ``chunk`` frame becomes
one record; exception and error frames raise :class:`~actors.errors.SonicStreamError`;
anything else is a :class:`~actors.errors.RemoteProtocolError`. Events this module does
not know (for example Nova 2.5's ``userSpeechEnd``) become :class:`UnknownEvent` rather
than errors, because Nova protocol changes so far have been additive.

Barge-in: the model signals that the caller talked over it with an ASSISTANT
``textOutput`` whose content is ``{ "interrupted" : true }``. LiveKit compares that exact
string, Strands tests for a substring, and a third-party probe of Nova 2.5 saw
``{"interrupted": true}`` (§3.4). We parse the content as JSON and require exactly the object
``{"interrupted": true}``: whitespace variants match, while ordinary assistant speech that
merely mentions the word does not (a substring test would flush audio on it). USER
transcripts never count: they are what the caller said, not a signal.
"""

from __future__ import annotations

import binascii
import enum
import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from actors.errors import RemoteProtocolError, SonicStreamError
from actors.sonic.events import chunk_event_json
from actors.sonic.eventstream import Message

__all__ = [
    "BARGE_IN_SIGNAL",
    "AudioOutput",
    "CompletionEnded",
    "CompletionStarted",
    "ContentEnded",
    "ContentKind",
    "ContentStarted",
    "GenerationStage",
    "OutputEvent",
    "TextOutput",
    "TokenCounts",
    "ToolUse",
    "UnknownEvent",
    "UsageEvent",
    "is_barge_in_text",
    "parse_output_event_json",
    "parse_output_message",
]

BARGE_IN_SIGNAL: Final = '{ "interrupted" : true }'


class ContentKind(enum.StrEnum):
    """The ``type`` of an output content block."""

    TEXT = "TEXT"
    AUDIO = "AUDIO"
    TOOL = "TOOL"


class GenerationStage(enum.StrEnum):
    """``additionalModelFields.generationStage`` of a TEXT block."""

    FINAL = "FINAL"
    SPECULATIVE = "SPECULATIVE"


@attrs.frozen(kw_only=True)
class CompletionStarted:
    """The model started a completion (a response turn)."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None


@attrs.frozen(kw_only=True)
class ContentStarted:
    """A content block starts: USER/ASSISTANT text, ASSISTANT audio, or a tool call.

    ``generation_stage`` is set for TEXT (USER+FINAL = caller transcript, ASSISTANT+
    SPECULATIVE = what the model plans to say, ASSISTANT+FINAL = what it said);
    ``sample_rate`` for AUDIO.
    """

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    content_id: str | None
    kind: ContentKind
    role: str | None
    generation_stage: GenerationStage | None = None
    sample_rate: int | None = None


@attrs.frozen(kw_only=True)
class TextOutput:
    """Text of a TEXT block; ``is_barge_in`` marks the interruption signal."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    content_id: str | None
    role: str | None
    content: str
    is_barge_in: bool


@attrs.frozen(kw_only=True)
class AudioOutput:
    """One chunk of assistant speech: PCM16LE mono at the block's sample rate."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    content_id: str | None
    pcm: bytes = attrs.field(repr=lambda pcm: f"<{len(pcm)} bytes>")


@attrs.frozen(kw_only=True)
class ToolUse:
    """The model asks for a tool; ``content`` is the JSON text of its arguments."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    content_id: str | None
    tool_name: str
    tool_use_id: str
    content: str


@attrs.frozen(kw_only=True)
class ContentEnded:
    """A content block ended; ``stop_reason`` is PARTIAL_TURN, END_TURN, INTERRUPTED, TOOL_USE…"""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    content_id: str | None
    kind: ContentKind | None
    role: str | None
    stop_reason: str | None


@attrs.frozen(kw_only=True)
class CompletionEnded:
    """The completion ended (``stop_reason`` END_TURN, INTERRUPTED, …)."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    stop_reason: str | None


@attrs.frozen(kw_only=True)
class TokenCounts:
    """Speech and text tokens, input and output."""

    input_speech: int = 0
    input_text: int = 0
    output_speech: int = 0
    output_text: int = 0


@attrs.frozen(kw_only=True)
class UsageEvent:
    """Token usage: ``delta`` since the previous usage event and running ``total``."""

    session_id: str | None
    prompt_name: str | None
    completion_id: str | None
    delta: TokenCounts
    total: TokenCounts
    total_input_tokens: int
    total_output_tokens: int
    total_tokens: int


@attrs.frozen(kw_only=True)
class UnknownEvent:
    """An output event this version does not model; kept whole for logging."""

    name: str
    body: Mapping[str, Any]


OutputEvent = (
    CompletionStarted
    | ContentStarted
    | TextOutput
    | AudioOutput
    | ToolUse
    | ContentEnded
    | CompletionEnded
    | UsageEvent
    | UnknownEvent
)


def is_barge_in_text(content: str) -> bool:
    """True when ``content`` is the JSON object ``{"interrupted": true}`` in any spacing."""
    if "interrupted" not in content:  # cheap reject for ordinary speech
        return False
    try:
        value = json.loads(content)
    except (ValueError, RecursionError):
        return False
    # ``is True``: {"interrupted": 1} == {"interrupted": True} in Python, but is not the signal.
    return isinstance(value, dict) and len(value) == 1 and value.get("interrupted") is True


_KINDS: Final = frozenset(kind.value for kind in ContentKind)
_STAGES: Final = frozenset(stage.value for stage in GenerationStage)


def _str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _int(mapping: Any, *path: str) -> int:
    for key in path:
        if not isinstance(mapping, Mapping):
            return 0
        mapping = mapping.get(key)
    return mapping if isinstance(mapping, int) and not isinstance(mapping, bool) else 0


def _kind(body: Mapping[str, Any]) -> ContentKind | None:
    value = body.get("type")
    return ContentKind(value) if isinstance(value, str) and value in _KINDS else None


def _stage(body: Mapping[str, Any]) -> GenerationStage | None:
    fields = body.get("additionalModelFields")
    if isinstance(fields, str):  # a JSON document inside a JSON string
        try:
            fields = json.loads(fields)
        except (ValueError, RecursionError):
            return None
    stage = fields.get("generationStage") if isinstance(fields, Mapping) else None
    return GenerationStage(stage) if isinstance(stage, str) and stage in _STAGES else None


def _counts(details: Any, which: str) -> TokenCounts:
    part = details.get(which) if isinstance(details, Mapping) else None
    return TokenCounts(
        input_speech=_int(part, "input", "speechTokens"),
        input_text=_int(part, "input", "textTokens"),
        output_speech=_int(part, "output", "speechTokens"),
        output_text=_int(part, "output", "textTokens"),
    )


def _require_str(body: Mapping[str, Any], key: str, event: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError(f"{event}.{key} is missing or not a string")
    return value


def _parse(name: str, body: Mapping[str, Any]) -> OutputEvent:
    ids = {
        "session_id": _str(body, "sessionId"),
        "prompt_name": _str(body, "promptName"),
        "completion_id": _str(body, "completionId"),
    }
    if name == "audioOutput":
        try:
            pcm = binascii.a2b_base64(_require_str(body, "content", name), strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
            raise RemoteProtocolError(f"audioOutput.content is not base64: {exc}") from exc
        return AudioOutput(**ids, content_id=_str(body, "contentId"), pcm=pcm)
    if name == "textOutput":
        content = _require_str(body, "content", name)
        role = _str(body, "role")
        return TextOutput(
            **ids,
            content_id=_str(body, "contentId"),
            role=role,
            content=content,
            is_barge_in=role != "USER" and is_barge_in_text(content),
        )
    if name == "contentStart":
        kind = _kind(body)
        if kind is None:
            return UnknownEvent(name=name, body=body)
        audio = body.get("audioOutputConfiguration")
        rate = _int(audio, "sampleRateHertz") if kind is ContentKind.AUDIO else 0
        return ContentStarted(
            **ids,
            content_id=_str(body, "contentId"),
            kind=kind,
            role=_str(body, "role"),
            generation_stage=_stage(body) if kind is ContentKind.TEXT else None,
            sample_rate=rate or None,
        )
    if name == "contentEnd":
        return ContentEnded(
            **ids,
            content_id=_str(body, "contentId"),
            kind=_kind(body),
            role=_str(body, "role"),
            stop_reason=_str(body, "stopReason"),
        )
    if name == "completionStart":
        return CompletionStarted(**ids)
    if name == "completionEnd":
        return CompletionEnded(**ids, stop_reason=_str(body, "stopReason"))
    if name == "toolUse":
        return ToolUse(
            **ids,
            content_id=_str(body, "contentId"),
            tool_name=_require_str(body, "toolName", name),
            tool_use_id=_require_str(body, "toolUseId", name),
            content=_require_str(body, "content", name),
        )
    if name == "usageEvent":
        details = body.get("details")
        return UsageEvent(
            **ids,
            delta=_counts(details, "delta"),
            total=_counts(details, "total"),
            total_input_tokens=_int(body, "totalInputTokens"),
            total_output_tokens=_int(body, "totalOutputTokens"),
            total_tokens=_int(body, "totalTokens"),
        )
    return UnknownEvent(name=name, body=body)


def parse_output_event_json(nova_event_json: bytes) -> OutputEvent:
    """Parse one Nova output event ``{"event": {"<name>": {...}}}`` into a record."""
    try:
        document = json.loads(nova_event_json)
    except (ValueError, RecursionError) as exc:  # ValueError includes UnicodeDecodeError
        raise RemoteProtocolError(f"output event is not JSON: {exc}") from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict) or len(event) != 1:
        raise RemoteProtocolError("output event is not {'event': {<one name>: {...}}}")
    ((name, body),) = event.items()
    if not isinstance(body, dict):
        raise RemoteProtocolError(f"output event {name!r} body is not an object")
    return _parse(name, body)


def _exception_fields(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload) if payload else {}
    except (ValueError, RecursionError):
        return {"message": payload[:1000].decode("utf-8", "replace")}
    return body if isinstance(body, dict) else {}


def parse_output_message(message: Message) -> OutputEvent:
    """Turn one decoded response frame into a record, or raise what it reports."""
    message_type = message.get(":message-type")
    if message_type == "event":
        event_type = message.get(":event-type")
        if event_type != "chunk":
            raise RemoteProtocolError(f"unexpected :event-type {event_type!r}")
        return parse_output_event_json(chunk_event_json(message))
    if message_type == "exception":
        exception_type = message.get(":exception-type")
        if not isinstance(exception_type, str):
            raise RemoteProtocolError("exception frame without :exception-type")
        fields = _exception_fields(message.payload)
        status = fields.get("originalStatusCode")
        original = fields.get("originalMessage")
        raise SonicStreamError(
            exception_type,
            str(fields.get("message", "")),
            original_status_code=status if isinstance(status, int) else None,
            original_message=original if isinstance(original, str) else None,
        )
    if message_type == "error":
        code = message.get(":error-code")
        text = message.get(":error-message")
        raise SonicStreamError(
            code if isinstance(code, str) else "UnknownError",
            text if isinstance(text, str) else "",
        )
    raise RemoteProtocolError(f"unexpected :message-type {message_type!r}")
