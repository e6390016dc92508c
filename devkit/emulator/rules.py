"""The Nova Sonic input event rules, checked one event at a time (sans-IO).

:class:`EventRules` is fed the Nova event JSON of every input chunk in order and returns
either a typed record of what the event means for the conversation, or a :class:`Violation`
whose message the emulator sends back in a ``validationException`` frame (reference §3.1–§3.2,
§3.5, §3.7, §3.8). Messages name the event and the rule, so a client author can fix the bug.
The records themselves are in :mod:`devkit.emulator.input_events` (re-exported here).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import attrs

from actors.sonic.events import VOICES
from devkit.emulator.input_events import (
    AudioChunk,
    AudioEnded,
    AudioStarted,
    InputEvent,
    Noted,
    PromptEnded,
    PromptStarted,
    SessionEnded,
    SessionStarted,
    TextBlockEnded,
    ToolResultEnded,
    Violation,
)
from devkit.emulator.tools import check_tool_configuration

__all__ = [
    "KNOWN_EVENTS",
    "KNOWN_VOICES",
    "SAMPLE_RATES",
    "AudioChunk",
    "AudioEnded",
    "AudioStarted",
    "EventRules",
    "InputEvent",
    "Noted",
    "PromptEnded",
    "PromptStarted",
    "SessionEnded",
    "SessionStarted",
    "TextBlockEnded",
    "ToolResultEnded",
    "Violation",
]

KNOWN_EVENTS = frozenset(
    {
        "sessionStart",
        "promptStart",
        "contentStart",
        "textInput",
        "audioInput",
        "toolResult",
        "contentEnd",
        "promptEnd",
        "sessionEnd",
    }
)
KNOWN_VOICES = VOICES
SAMPLE_RATES = frozenset({8000, 16000, 24000})
MAX_TEXT_INPUT_BYTES = 1024
MAX_HISTORY_BYTES = 40 * 1024
TEXT_ROLES = frozenset({"SYSTEM", "SYSTEM_SPEECH", "USER", "ASSISTANT"})


@attrs.define
class _Block:
    name: str
    type: str
    role: str
    interactive: bool
    tool_use_id: str = ""
    parts: list[str] = attrs.field(factory=list)


class _Reject(Exception):
    """Internal: unwinds a check with the violation message."""


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise _Reject(message)


def _str_field(body: dict[str, Any], name: str, event: str) -> str:
    value = body.get(name)
    _need(isinstance(value, str) and value != "", f"{event}.{name} must be a non-empty string")
    assert isinstance(value, str)
    return value


def _obj_field(body: dict[str, Any], name: str, event: str) -> dict[str, Any]:
    value = body.get(name)
    _need(isinstance(value, dict), f"{event}.{name} must be an object")
    assert isinstance(value, dict)
    return value


def _check_lpcm(cfg: dict[str, Any], where: str) -> int:
    _need(cfg.get("mediaType") == "audio/lpcm", f"{where}.mediaType must be audio/lpcm")
    rate = cfg.get("sampleRateHertz")
    _need(
        rate in SAMPLE_RATES,
        f"{where}.sampleRateHertz {rate!r} is not supported; use one of 8000, 16000, 24000",
    )
    _need(cfg.get("sampleSizeBits") == 16, f"{where}.sampleSizeBits must be 16")
    _need(cfg.get("channelCount") == 1, f"{where}.channelCount must be 1")
    _need(cfg.get("encoding") == "base64", f"{where}.encoding must be base64")
    assert isinstance(rate, int)
    return rate


class EventRules:
    """State machine over the input events of one stream.

    Once a violation has been returned the stream is dead: further calls return the same
    violation, as the emulator ends the stream after the exception frame.
    """

    def __init__(self) -> None:
        self._failed: Violation | None = None
        self._session_started = False
        self._prompt_name: str | None = None
        self._prompt_ended = False
        self._session_ended = False
        self._system_seen = False
        self._history_bytes = 0
        self._history_count = 0
        self._audio: _Block | None = None
        self._audio_done = False
        self._block: _Block | None = None
        self._names: set[str] = set()
        self._audio_chunks = 0

    @property
    def prompt_name(self) -> str | None:
        """The promptName of the session's prompt, once ``promptStart`` was accepted."""
        return self._prompt_name

    def feed(self, nova_event_json: bytes) -> InputEvent | Violation:
        """Check one event; return what it means, or the violation that ends the stream."""
        if self._failed is not None:
            return self._failed
        try:
            return self._check(nova_event_json)
        except _Reject as exc:
            self._failed = Violation(str(exc))
            return self._failed

    def _check(self, raw: bytes) -> InputEvent:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Reject(f"Invalid input request: event is not valid JSON ({exc})") from None
        _need(
            isinstance(doc, dict) and isinstance(doc.get("event"), dict) and len(doc["event"]) == 1,
            'Invalid input request: expected {"event": {"<eventName>": {...}}}',
        )
        ((name, body),) = doc["event"].items()
        _need(
            name in KNOWN_EVENTS, f"Unknown event {name!r}; expected one of {sorted(KNOWN_EVENTS)}"
        )
        _need(isinstance(body, dict), f"{name} must be a JSON object")
        _need(not self._session_ended, f"{name} received after sessionEnd")
        if name == "sessionStart":
            return self._session_start(body)
        _need(
            self._session_started,
            f"{name} received before sessionStart; sessionStart must be first",
        )
        if name == "sessionEnd":
            _need(
                self._prompt_name is None or self._prompt_ended,
                "sessionEnd received before promptEnd; "
                "close with contentEnd, promptEnd, sessionEnd",
            )
            self._session_ended = True
            return SessionEnded()
        if name == "promptStart":
            return self._prompt_start(body)
        _need(self._prompt_name is not None, f"{name} received before promptStart")
        _need(
            body.get("promptName") == self._prompt_name,
            f"{name}.promptName {body.get('promptName')!r} does not match the open prompt "
            f"{self._prompt_name!r}",
        )
        _need(not self._prompt_ended, f"{name} received after promptEnd")
        handler = {
            "contentStart": self._content_start,
            "textInput": self._text_input,
            "audioInput": self._audio_input,
            "toolResult": self._tool_result,
            "contentEnd": self._content_end,
            "promptEnd": self._prompt_end,
        }[name]
        return handler(body)

    def _session_start(self, body: dict[str, Any]) -> InputEvent:
        _need(not self._session_started, "sessionStart received twice")
        inference = _obj_field(body, "inferenceConfiguration", "sessionStart")
        max_tokens = inference.get("maxTokens")
        _need(
            isinstance(max_tokens, int) and 1 <= max_tokens <= 10000,
            f"sessionStart.inferenceConfiguration.maxTokens {max_tokens!r} must be 1..10000",
        )
        for key in ("topP", "temperature"):
            value = inference.get(key)
            if value is not None:
                _need(
                    isinstance(value, int | float) and 0.0 <= value <= 1.0,
                    f"sessionStart.inferenceConfiguration.{key} {value!r} must be within 0..1",
                )
        endpointing = None
        turn = body.get("turnDetectionConfiguration")
        if turn is not None:
            _need(
                isinstance(turn, dict), "sessionStart.turnDetectionConfiguration must be an object"
            )
            endpointing = turn.get("endpointingSensitivity")
            _need(
                endpointing in ("HIGH", "MEDIUM", "LOW"),
                f"endpointingSensitivity {endpointing!r} must be HIGH, MEDIUM or LOW",
            )
        self._session_started = True
        return SessionStarted(endpointing=endpointing)

    def _prompt_start(self, body: dict[str, Any]) -> InputEvent:
        _need(self._prompt_name is None, "promptStart received twice; one prompt per session")
        prompt_name = _str_field(body, "promptName", "promptStart")
        text_cfg = body.get("textOutputConfiguration")
        if text_cfg is not None:
            _need(
                isinstance(text_cfg, dict) and text_cfg.get("mediaType") == "text/plain",
                "promptStart.textOutputConfiguration.mediaType must be text/plain",
            )
        audio_cfg = _obj_field(body, "audioOutputConfiguration", "promptStart")
        rate = _check_lpcm(audio_cfg, "promptStart.audioOutputConfiguration")
        voice = audio_cfg.get("voiceId")
        _need(
            voice in KNOWN_VOICES,
            f"promptStart.audioOutputConfiguration.voiceId {voice!r} is not a known voice",
        )
        tools, problem = check_tool_configuration(body)
        _need(problem is None, str(problem))
        self._prompt_name = prompt_name
        return PromptStarted(
            prompt_name=prompt_name, voice_id=str(voice), output_sample_rate=rate, tools=tools
        )

    def _content_start(self, body: dict[str, Any]) -> InputEvent:
        name = _str_field(body, "contentName", "contentStart")
        _need(name not in self._names, f"contentStart.contentName {name!r} was already used")
        _need(
            self._block is None,
            f"contentStart {name!r} received while content block "
            f"{self._block.name if self._block else ''!r} is still open; end it first",
        )
        kind = body.get("type")
        role = body.get("role")
        interactive = body.get("interactive")
        _need(isinstance(interactive, bool), "contentStart.interactive must be a boolean")
        assert isinstance(interactive, bool)
        if kind == "AUDIO":
            return self._audio_start(body, name, role, interactive)
        if kind == "TEXT":
            _need(role in TEXT_ROLES, f"contentStart.role {role!r} is not valid for TEXT")
            cfg = body.get("textInputConfiguration")
            _need(
                isinstance(cfg, dict) and cfg.get("mediaType") == "text/plain",
                "contentStart.textInputConfiguration.mediaType must be text/plain",
            )
            if not self._system_seen:
                _need(
                    role == "SYSTEM",
                    "The system prompt (TEXT, role SYSTEM) must be the first content",
                )
                _need(not interactive, "The system prompt must have interactive false")
            else:
                _need(role != "SYSTEM", "The system prompt was already sent")
            if role in ("USER", "ASSISTANT") and not interactive:
                _need(
                    self._audio is None and not self._audio_done,
                    "Chat history should be sent completely before streaming audio.",
                )
                _need(
                    self._history_count > 0 or role == "USER",
                    "Chat history must start with a USER message",
                )
                self._history_count += 1
            if interactive:
                _need(role == "USER", f"interactive TEXT content must have role USER, not {role!r}")
                _need(self._audio is not None, "Cross-modal text needs the AUDIO content started")
            if role == "SYSTEM_SPEECH":
                _need(
                    self._history_count == 0 and self._audio is None,
                    "SYSTEM_SPEECH must follow the system prompt, before history and audio",
                )
            self._system_seen = True
            self._block = _Block(name, "TEXT", str(role), interactive)
        elif kind == "TOOL":
            _need(
                self._system_seen, "The system prompt (TEXT, role SYSTEM) must be the first content"
            )
            _need(role == "TOOL", "TOOL content must have role TOOL")
            cfg = _obj_field(body, "toolResultInputConfiguration", "contentStart")
            tool_use_id = _str_field(cfg, "toolUseId", "contentStart.toolResultInputConfiguration")
            self._block = _Block(name, "TOOL", "TOOL", interactive, tool_use_id=tool_use_id)
        else:
            raise _Reject(f"contentStart.type {kind!r} must be TEXT, AUDIO or TOOL")
        self._names.add(name)
        return Noted()

    def _audio_start(
        self, body: dict[str, Any], name: str, role: object, interactive: bool
    ) -> InputEvent:
        _need(self._system_seen, "The system prompt (TEXT, role SYSTEM) must be the first content")
        _need(
            self._audio is None and not self._audio_done,
            "Only one AUDIO content block is allowed per session",
        )
        _need(role == "USER", "AUDIO content must have role USER")
        _need(interactive, "AUDIO content must have interactive true")
        cfg = _obj_field(body, "audioInputConfiguration", "contentStart")
        rate = _check_lpcm(cfg, "contentStart.audioInputConfiguration")
        _need(
            cfg.get("audioType", "SPEECH") == "SPEECH",
            "audioInputConfiguration.audioType must be SPEECH",
        )
        self._names.add(name)
        self._audio = _Block(name, "AUDIO", "USER", True)
        return AudioStarted(content_name=name, sample_rate=rate)

    def _text_input(self, body: dict[str, Any]) -> InputEvent:
        name = body.get("contentName")
        block = self._block
        _need(
            block is not None and block.name == name and block.type == "TEXT",
            f"textInput.contentName {name!r} is not an open TEXT content block",
        )
        assert block is not None
        content = body.get("content")
        _need(isinstance(content, str), "textInput.content must be a string")
        assert isinstance(content, str)
        size = len(content.encode())
        _need(
            size <= MAX_TEXT_INPUT_BYTES,
            f"textInput.content is {size} bytes; the limit is {MAX_TEXT_INPUT_BYTES} bytes per "
            "textInput (split longer text into several textInput events)",
        )
        if block.role in ("USER", "ASSISTANT") and not block.interactive:
            self._history_bytes += size
            _need(
                self._history_bytes <= MAX_HISTORY_BYTES,
                f"Chat history exceeds {MAX_HISTORY_BYTES} bytes",
            )
        block.parts.append(content)
        return Noted()

    def _audio_input(self, body: dict[str, Any]) -> InputEvent:
        name = body.get("contentName")
        _need(
            self._audio is not None and self._audio.name == name,
            f"audioInput.contentName {name!r} is not the open AUDIO content block",
        )
        _need(
            self._block is None,
            "audioInput received inside content block "
            f"{self._block.name if self._block else ''!r}; "
            "do not interleave audio with another content block",
        )
        content = body.get("content")
        _need(isinstance(content, str), "audioInput.content must be a base64 string")
        assert isinstance(content, str)
        try:
            pcm = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _Reject("audioInput.content is not valid base64") from None
        _need(len(pcm) % 2 == 0, "audioInput.content must hold whole 16-bit samples (even length)")
        self._audio_chunks += 1
        return AudioChunk(pcm)

    def _tool_result(self, body: dict[str, Any]) -> InputEvent:
        name = body.get("contentName")
        block = self._block
        _need(
            block is not None and block.name == name and block.type == "TOOL",
            f"toolResult.contentName {name!r} is not an open TOOL content block",
        )
        assert block is not None
        content = body.get("content")
        _need(isinstance(content, str), "toolResult.content must be a string")
        assert isinstance(content, str)
        block.parts.append(content)
        return Noted()

    def _content_end(self, body: dict[str, Any]) -> InputEvent:
        name = body.get("contentName")
        if self._audio is not None and self._audio.name == name:
            _need(
                self._block is None, "AUDIO contentEnd received while another content block is open"
            )
            self._audio = None
            self._audio_done = True
            return AudioEnded()
        block = self._block
        _need(
            block is not None and block.name == name, f"contentEnd.contentName {name!r} is not open"
        )
        assert block is not None
        self._block = None
        if block.type == "TOOL":
            _need(bool(block.parts), f"TOOL content {name!r} ended without a toolResult")
            return ToolResultEnded(tool_use_id=block.tool_use_id, content="".join(block.parts))
        _need(bool(block.parts), f"TEXT content {name!r} ended without a textInput")
        return TextBlockEnded(
            role=block.role,
            interactive=block.interactive,
            text="".join(block.parts),
            audio_chunks_before=self._audio_chunks,
        )

    def _prompt_end(self, body: dict[str, Any]) -> InputEvent:
        _need(
            self._block is None and self._audio is None,
            "promptEnd received while a content block is open; send contentEnd first",
        )
        self._prompt_ended = True
        return PromptEnded()
