"""The emulator's event rules alone (sans-IO): good sequences pass, each bad one is named."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devkit.emulator.rules import (
    AudioChunk,
    AudioEnded,
    AudioStarted,
    EventRules,
    PromptEnded,
    PromptStarted,
    SessionEnded,
    SessionStarted,
    TextBlockEnded,
    ToolResultEnded,
    Violation,
)

P = "prompt-1"


def ev(name: str, **body: Any) -> bytes:
    return json.dumps({"event": {name: body}}).encode()


def session_start(**turn: Any) -> bytes:
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": 1024, "topP": 0.9, "temperature": 0.7}
    }
    if turn:
        body["turnDetectionConfiguration"] = turn
    return ev("sessionStart", **body)


def prompt_start(voice: str = "matthew", rate: int = 24000, name: str = P) -> bytes:
    return ev(
        "promptStart",
        promptName=name,
        textOutputConfiguration={"mediaType": "text/plain"},
        audioOutputConfiguration={
            "mediaType": "audio/lpcm",
            "sampleRateHertz": rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    )


def text_start(name: str, role: str, interactive: bool = False) -> bytes:
    return ev(
        "contentStart",
        promptName=P,
        contentName=name,
        type="TEXT",
        role=role,
        interactive=interactive,
        textInputConfiguration={"mediaType": "text/plain"},
    )


def text(name: str, content: str) -> bytes:
    return ev("textInput", promptName=P, contentName=name, content=content)


def end(name: str) -> bytes:
    return ev("contentEnd", promptName=P, contentName=name)


def audio_start(name: str = "audio", rate: int = 16000) -> bytes:
    return ev(
        "contentStart",
        promptName=P,
        contentName=name,
        type="AUDIO",
        role="USER",
        interactive=True,
        audioInputConfiguration={
            "mediaType": "audio/lpcm",
            "sampleRateHertz": rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "audioType": "SPEECH",
            "encoding": "base64",
        },
    )


def audio(name: str = "audio", pcm: bytes = b"\x00\x01" * 160) -> bytes:
    return ev("audioInput", promptName=P, contentName=name, content=base64.b64encode(pcm).decode())


def tool_start(name: str) -> bytes:
    return ev(
        "contentStart",
        promptName=P,
        contentName=name,
        type="TOOL",
        role="TOOL",
        interactive=False,
        toolResultInputConfiguration={
            "toolUseId": "t-1",
            "type": "TEXT",
            "textInputConfiguration": {"mediaType": "text/plain"},
        },
    )


def opening() -> list[bytes]:
    return [
        session_start(endpointingSensitivity="HIGH"),
        prompt_start(),
        text_start("sys", "SYSTEM"),
        text("sys", "You are helpful."),
        end("sys"),
    ]


def closing() -> list[bytes]:
    return [end("audio"), ev("promptEnd", promptName=P), ev("sessionEnd")]


def run(events: list[bytes]) -> list[object]:
    rules = EventRules()
    return [rules.feed(e) for e in events]


def test_full_good_session_yields_typed_records() -> None:
    history = [text_start("h1", "USER"), text("h1", "hi"), end("h1")]
    history += [text_start("h2", "ASSISTANT"), text("h2", "hello"), end("h2")]
    tool = [tool_start("tool1"), ev("toolResult", promptName=P, contentName="tool1", content="{}")]
    tool += [end("tool1")]
    cross = [text_start("x1", "USER", interactive=True), text("x1", "1 2 3"), end("x1")]
    events = [*opening(), *history, audio_start(), audio(), *tool, *cross, audio(), *closing()]
    results = run(events)
    assert not [r for r in results if isinstance(r, Violation)], results
    assert results[0] == SessionStarted(endpointing="HIGH")
    assert results[1] == PromptStarted(prompt_name=P, voice_id="matthew", output_sample_rate=24000)
    assert results[4] == TextBlockEnded(role="SYSTEM", interactive=False, text="You are helpful.")
    assert AudioStarted(content_name="audio", sample_rate=16000) in results
    assert results.count(AudioChunk(b"\x00\x01" * 160)) == 2
    assert ToolResultEnded(tool_use_id="t-1", content="{}") in results
    # One audioInput went before the cross-modal text: not the speaks-first position.
    assert (
        TextBlockEnded(role="USER", interactive=True, text="1 2 3", audio_chunks_before=1)
        in results
    )
    assert results[-3:] == [AudioEnded(), PromptEnded(), SessionEnded()]


def test_text_split_into_several_inputs_is_joined() -> None:
    events = [session_start(), prompt_start(), text_start("sys", "SYSTEM")]
    events += [text("sys", "a" * 1024), text("sys", "b" * 10), end("sys")]
    assert run(events)[-1] == TextBlockEnded(
        role="SYSTEM", interactive=False, text="a" * 1024 + "b" * 10
    )


BAD = [
    ("not json", [b"{nope"], "not valid JSON"),
    ("not an event", [b'{"foo": 1}'], "Invalid input request"),
    ("unknown event", [session_start(), ev("bogusEvent")], "Unknown event 'bogusEvent'"),
    ("prompt before session", [prompt_start()], "before sessionStart"),
    ("session twice", [session_start(), session_start()], "sessionStart received twice"),
    ("bad endpointing", [session_start(endpointingSensitivity="FAST")], "endpointingSensitivity"),
    (
        "unknown voice",
        [session_start(), prompt_start(voice="hal9000")],
        "'hal9000' is not a known voice",
    ),
    ("bad output rate", [session_start(), prompt_start(rate=44100)], "sampleRateHertz 44100"),
    (
        "prompt twice",
        [session_start(), prompt_start(), prompt_start()],
        "promptStart received twice",
    ),
    (
        "system not first",
        [session_start(), prompt_start(), text_start("h1", "USER")],
        "system prompt (TEXT, role SYSTEM) must be the first content",
    ),
    (
        "audio before system",
        [session_start(), prompt_start(), audio_start()],
        "must be the first content",
    ),
    (
        "wrong prompt name",
        [session_start(), prompt_start(), ev("contentStart", promptName="other", contentName="c")],
        "does not match the open prompt",
    ),
    (
        "history after audio",
        [*opening(), audio_start(), text_start("h1", "USER")],
        "Chat history should be sent completely before streaming audio.",
    ),
    (
        "history starts with assistant",
        [*opening(), text_start("h1", "ASSISTANT")],
        "Chat history must start with a USER message",
    ),
    (
        "second audio block",
        [*opening(), audio_start(), end("audio"), audio_start("audio2")],
        "Only one AUDIO content block",
    ),
    (
        "bad input rate",
        [*opening(), audio_start(rate=11025)],
        "sampleRateHertz 11025",
    ),
    (
        "audio with wrong content name",
        [*opening(), audio_start(), audio("someone-else")],
        "not the open AUDIO content block",
    ),
    (
        "audio interleaved in a text block",
        [*opening(), audio_start(), text_start("x1", "USER", True), audio()],
        "do not interleave audio",
    ),
    (
        "audio not base64",
        [
            *opening(),
            audio_start(),
            ev("audioInput", promptName=P, contentName="audio", content="!!"),
        ],
        "not valid base64",
    ),
    (
        "odd pcm length",
        [*opening(), audio_start(), audio(pcm=b"\x00\x01\x02")],
        "whole 16-bit samples",
    ),
    (
        "text input over 1 KB",
        [session_start(), prompt_start(), text_start("sys", "SYSTEM"), text("sys", "é" * 513)],
        "textInput.content is 1026 bytes; the limit is 1024",
    ),
    (
        "nested content start",
        [*opening(), audio_start(), text_start("a", "USER", True), text_start("b", "USER", True)],
        "still open",
    ),
    (
        "cross-modal text before the audio block",
        [*opening(), text_start("a", "USER", True)],
        "needs the AUDIO content started",
    ),
    (
        "reused content name",
        [*opening(), text_start("sys", "USER", True)],
        "was already used",
    ),
    (
        "empty text block",
        [session_start(), prompt_start(), text_start("sys", "SYSTEM"), end("sys")],
        "ended without a textInput",
    ),
    (
        "promptEnd with audio open",
        [*opening(), audio_start(), ev("promptEnd", promptName=P)],
        "promptEnd received while a content block is open",
    ),
    (
        "sessionEnd before promptEnd",
        [*opening(), ev("sessionEnd")],
        "sessionEnd received before promptEnd",
    ),
    (
        "event after sessionEnd",
        [*opening(), audio_start(), *closing(), audio()],
        "received after sessionEnd",
    ),
    (
        "text input for a closed block",
        [*opening(), text("sys", "late")],
        "is not an open TEXT content block",
    ),
    (
        "interactive assistant text",
        [*opening(), text_start("x", "ASSISTANT", True)],
        "interactive TEXT content must have role USER",
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(e, m) for _, e, m in BAD], ids=[n for n, _, _ in BAD]
)
def test_bad_sequence_is_refused_with_a_useful_message(events: list[bytes], expected: str) -> None:
    results = run(events)
    assert all(not isinstance(r, Violation) for r in results[:-1]), results
    assert isinstance(results[-1], Violation)
    assert expected in results[-1].message


def test_after_a_violation_everything_is_refused() -> None:
    rules = EventRules()
    first = rules.feed(prompt_start())
    assert isinstance(first, Violation)
    assert rules.feed(session_start()) == first
