"""Nova Sonic input builders, chunk wrapping and the emulator-side frame encoders."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import LocalProtocolError, RemoteProtocolError
from actors.sonic import events
from actors.sonic.eventstream import Header, Message, decode_message

from .vectors import bedrock_vector_paths, load_vector

VECTORS = bedrock_vector_paths()


def rebuild(nova_event_json: str) -> bytes:
    """Rebuild one recorded input event with our builders, from its parsed fields only."""
    ((name, body),) = json.loads(nova_event_json)["event"].items()
    if name == "sessionStart":
        inference = body["inferenceConfiguration"]
        turn = body.get("turnDetectionConfiguration")
        return events.session_start(
            max_tokens=inference["maxTokens"],
            top_p=inference["topP"],
            temperature=inference["temperature"],
            endpointing_sensitivity=turn["endpointingSensitivity"] if turn else None,
        )
    if name == "promptStart":
        audio = body["audioOutputConfiguration"]
        tools = [
            events.ToolSpec(
                name=t["toolSpec"]["name"],
                description=t["toolSpec"]["description"],
                input_schema=t["toolSpec"]["inputSchema"]["json"],
            )
            for t in body.get("toolConfiguration", {}).get("tools", [])
        ]
        return events.prompt_start(
            prompt_name=body["promptName"],
            voice_id=audio["voiceId"],
            output_sample_rate=audio["sampleRateHertz"],
            tools=tools,
        )
    names = {"prompt_name": body["promptName"]}
    if name == "promptEnd":
        return events.prompt_end(**names)
    names["content_name"] = body.get("contentName", "")
    if name == "contentStart" and body["type"] == "TEXT":
        return events.text_content_start(
            **names, role=body["role"], interactive=body["interactive"]
        )
    if name == "contentStart" and body["type"] == "AUDIO":
        rate = body["audioInputConfiguration"]["sampleRateHertz"]
        return events.audio_content_start(**names, sample_rate=rate)
    if name == "contentStart" and body["type"] == "TOOL":
        tool_use_id = body["toolResultInputConfiguration"]["toolUseId"]
        return events.tool_content_start(**names, tool_use_id=tool_use_id)
    if name == "textInput":
        return events.text_input(**names, content=body["content"])
    if name == "audioInput":
        return events.audio_input(**names, pcm=base64.b64decode(body["content"]))
    if name == "toolResult":
        return events.tool_result(**names, content=body["content"])
    if name == "contentEnd":
        return events.content_end(**names)
    raise AssertionError(f"no builder for {name}")


def _all_events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.stem}[{i}]", event)
        for path in VECTORS
        for i, event in enumerate(load_vector(path)["events"])
    ]


def test_session_end_has_no_fields() -> None:
    assert events.session_end() == b'{"event":{"sessionEnd":{}}}'


@pytest.mark.parametrize(("where", "event"), _all_events(), ids=lambda x: str(x)[:40])
def test_builders_reproduce_recorded_events_byte_for_byte(
    where: str, event: dict[str, Any]
) -> None:
    assert rebuild(event["nova_event_json"]) == event["nova_event_json"].encode("utf-8"), where


@pytest.mark.parametrize(("where", "event"), _all_events(), ids=lambda x: str(x)[:40])
def test_input_chunk_matches_recorded_inner_message(where: str, event: dict[str, Any]) -> None:
    inner = events.encode_input_chunk(event["nova_event_json"].encode("utf-8"))
    assert inner.hex() == event["inner_message_hex"], where


def _response_frames() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.stem}[{i}]", response)
        for path in VECTORS
        for i, response in enumerate(load_vector(path)["responses"])
    ]


@pytest.mark.parametrize(("where", "response"), _response_frames(), ids=lambda x: str(x)[:40])
def test_emulator_encoders_reproduce_recorded_frames(where: str, response: dict[str, Any]) -> None:
    frame = bytes.fromhex(response["frame_hex"])
    expect = response["expect"]
    if expect["kind"] == "event":
        message = decode_message(frame)
        if set(json.loads(message.payload)) != {"bytes"}:
            pytest.skip("payload carries extra members our encoder never writes")
        assert events.encode_output_chunk(expect["nova_event_json"].encode()) == frame, where
    elif expect["kind"] == "exception":
        extra = {
            key: expect[snake]
            for key, snake in (
                ("originalStatusCode", "original_status_code"),
                ("originalMessage", "original_message"),
            )
            if snake in expect
        }
        encoded = events.encode_exception(expect["exception_type"], expect["message"], **extra)
        assert encoded == frame, where
    else:
        pytest.skip(f"no byte-exact encoder claim for {expect['kind']} frames")


PCM = st.binary(max_size=2048)
NAMES = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(NAMES, NAMES, PCM)
def test_audio_input_is_valid_json_for_any_names(prompt: str, content: str, pcm: bytes) -> None:
    built = events.audio_input(prompt_name=prompt, content_name=content, pcm=pcm)
    parsed = json.loads(built)
    assert parsed == {
        "event": {
            "audioInput": {
                "promptName": prompt,
                "contentName": content,
                "content": base64.b64encode(pcm).decode(),
            }
        }
    }


def test_audio_input_escapes_hostile_names() -> None:
    built = events.audio_input(prompt_name='a"b\\c', content_name="x\ny", pcm=b"\x00\x01")
    body = json.loads(built)["event"]["audioInput"]
    assert (body["promptName"], body["contentName"]) == ('a"b\\c', "x\ny")


def test_audio_input_has_the_same_bytes_as_the_general_encoder() -> None:
    prompt, content, pcm = "3f2a9c1e-8d4b-4e6f-a1b2-c3d4e5f60718", "naïve “name”", b"\x01\x02" * 160
    expected = json.dumps(
        {
            "event": {
                "audioInput": {
                    "promptName": prompt,
                    "contentName": content,
                    "content": base64.b64encode(pcm).decode(),
                }
            }
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert events.audio_input(prompt_name=prompt, content_name=content, pcm=pcm) == expected


def test_chunk_wrapping_round_trip_and_extra_members_ignored() -> None:
    nova = events.prompt_end(prompt_name="p")
    inner = decode_message(events.encode_input_chunk(nova))
    assert [(h.name, h.value) for h in inner.headers] == [
        (":message-type", "event"),
        (":event-type", "chunk"),
        (":content-type", "application/json"),
    ]
    assert inner.payload == b'{"bytes":"' + base64.b64encode(nova) + b'"}'
    assert events.chunk_event_json(inner) == nova
    padded = Message(inner.headers, b'{"p":"xyz","bytes":"' + base64.b64encode(nova) + b'"}')
    assert events.chunk_event_json(padded) == nova


@pytest.mark.parametrize(
    "payload", [b"not json", b"{}", b'{"bytes": 3}', b'{"bytes":"***"}', b"[1]", b"\xff"]
)
def test_malformed_chunk_payload_is_a_remote_protocol_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        events.chunk_event_json(Message((Header.string(":event-type", "chunk"),), payload))


def test_prompt_start_with_tools_sends_the_schema_as_a_string() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    built = events.prompt_start(
        prompt_name="p",
        voice_id="tiffany",
        output_sample_rate=24000,
        tools=[events.ToolSpec(name="weather", description="Weather", input_schema=schema)],
    )
    body = json.loads(built)["event"]["promptStart"]
    assert body["toolUseOutputConfiguration"] == {"mediaType": "application/json"}
    spec = body["toolConfiguration"]["tools"][0]["toolSpec"]
    assert spec["name"] == "weather"
    assert json.loads(spec["inputSchema"]["json"]) == schema


def test_tool_result_block() -> None:
    start = json.loads(
        events.tool_content_start(prompt_name="p", content_name="c", tool_use_id="t")
    )
    config = start["event"]["contentStart"]["toolResultInputConfiguration"]
    assert config == {
        "toolUseId": "t",
        "type": "TEXT",
        "textInputConfiguration": {"mediaType": "text/plain"},
    }
    result = json.loads(events.tool_result(prompt_name="p", content_name="c", content='{"ok":1}'))
    assert result["event"]["toolResult"]["content"] == '{"ok":1}'


def test_session_start_without_turn_detection_for_nova_v1() -> None:
    body = json.loads(events.session_start(endpointing_sensitivity=None))["event"]["sessionStart"]
    assert "turnDetectionConfiguration" not in body


def test_builders_refuse_invalid_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        events.session_start(endpointing_sensitivity="SOMETIMES")
    with pytest.raises(LocalProtocolError):
        events.prompt_start(prompt_name="p", voice_id="matthew", output_sample_rate=44100)
    with pytest.raises(LocalProtocolError):
        events.audio_content_start(prompt_name="p", content_name="c", sample_rate=11025)
    with pytest.raises(LocalProtocolError):
        events.text_content_start(
            prompt_name="p", content_name="c", role="ROBOT", interactive=False
        )


def test_exception_and_error_frames() -> None:
    frame = decode_message(
        events.encode_exception(
            "modelStreamErrorException", "boom", originalStatusCode=500, originalMessage="x"
        )
    )
    assert frame.get(":message-type") == "exception"
    assert frame.get(":exception-type") == "modelStreamErrorException"
    assert json.loads(frame.payload) == {
        "message": "boom",
        "originalStatusCode": 500,
        "originalMessage": "x",
    }
    error = decode_message(events.encode_error("InternalFailure", "bad"))
    assert [(h.name, h.value) for h in error.headers] == [
        (":message-type", "error"),
        (":error-code", "InternalFailure"),
        (":error-message", "bad"),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=3000),
    st.integers(4, 1500),
)
def test_split_text_properties(text: str, limit: int) -> None:
    pieces = events.split_text(text, limit)
    assert "".join(pieces) == text
    assert all(0 < len(p.encode("utf-8")) <= limit for p in pieces)


def test_split_text_keeps_words_and_characters_whole() -> None:
    text = ("word " * 400) + "é" * 600
    pieces = events.split_text(text)
    assert all(len(p.encode()) <= 1024 for p in pieces)
    assert pieces[0].endswith(" ")
    assert "".join(pieces) == text
    assert events.split_text("") == []
    assert events.split_text("short") == ["short"]
    with pytest.raises(LocalProtocolError):
        events.split_text("abc", limit=3)


def test_vectors_are_found() -> None:
    assert {p.name for p in VECTORS} >= {"basic-session.json", "session-token.json"}
    assert all(isinstance(p, Path) for p in VECTORS)


def test_chunk_payload_with_json_escapes_takes_the_general_path() -> None:
    # '{"bytes":"YQ\u003d\u003d"}' is valid JSON for "YQ==" but defeats the byte-slice fast path.
    escaped = Message((), b'{"bytes":"YQ\\u003d\\u003d"}')
    assert events.chunk_event_json(escaped) == b"a"
    spaced = Message((), b'{ "bytes" : "YQ==" }')
    assert events.chunk_event_json(spaced) == b"a"
