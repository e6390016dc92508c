"""Output parser: typed records, barge-in detection, exception/error frames, bad input."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import RemoteProtocolError, SonicStreamError
from actors.sonic.events import encode_error, encode_exception, encode_output_chunk
from actors.sonic.eventstream import Header, Message, decode_message, encode_message
from actors.sonic.output import (
    BARGE_IN_SIGNAL,
    AudioOutput,
    CompletionEnded,
    CompletionStarted,
    ContentEnded,
    ContentKind,
    ContentStarted,
    GenerationStage,
    TextOutput,
    TokenCounts,
    ToolUse,
    UnknownEvent,
    UsageEvent,
    is_barge_in_text,
    parse_output_event_json,
    parse_output_message,
)

IDS = {"sessionId": "s", "promptName": "p", "completionId": "c"}
RECORD_IDS: dict[str, Any] = {"session_id": "s", "prompt_name": "p", "completion_id": "c"}


def _event(name: str, **body: Any) -> bytes:
    return json.dumps({"event": {name: {**IDS, **body}}}).encode()


def _parse_frame(nova: bytes) -> object:
    return parse_output_message(decode_message(encode_output_chunk(nova)))


def test_completion_start_and_end() -> None:
    assert _parse_frame(_event("completionStart")) == CompletionStarted(**RECORD_IDS)
    assert _parse_frame(_event("completionEnd", stopReason="END_TURN")) == CompletionEnded(
        **RECORD_IDS, stop_reason="END_TURN"
    )


@pytest.mark.parametrize(
    ("fields", "stage"),
    [
        ('{"generationStage":"FINAL"}', GenerationStage.FINAL),
        ('{ "generationStage" : "SPECULATIVE" }', GenerationStage.SPECULATIVE),
        ({"generationStage": "FINAL"}, GenerationStage.FINAL),
        ("not json", None),
        ('{"generationStage":"LATER"}', None),
        (None, None),
    ],
)
def test_text_content_start_with_generation_stage(
    fields: object, stage: GenerationStage | None
) -> None:
    extra = {} if fields is None else {"additionalModelFields": fields}
    record = _parse_frame(
        _event("contentStart", contentId="k", type="TEXT", role="ASSISTANT", **extra)
    )
    assert record == ContentStarted(
        **RECORD_IDS,
        content_id="k",
        kind=ContentKind.TEXT,
        role="ASSISTANT",
        generation_stage=stage,
    )


def test_audio_content_start_has_sample_rate() -> None:
    record = _parse_frame(
        _event(
            "contentStart",
            contentId="k",
            type="AUDIO",
            role="ASSISTANT",
            audioOutputConfiguration={"mediaType": "audio/lpcm", "sampleRateHertz": 24000},
        )
    )
    assert isinstance(record, ContentStarted)
    assert (record.kind, record.sample_rate, record.generation_stage) == (
        ContentKind.AUDIO,
        24000,
        None,
    )


def test_audio_output_decodes_pcm() -> None:
    pcm = bytes(range(256)) * 3
    record = _parse_frame(
        _event("audioOutput", contentId="a", content=base64.b64encode(pcm).decode())
    )
    assert record == AudioOutput(**RECORD_IDS, content_id="a", pcm=pcm)
    assert "768 bytes" in repr(record)


def test_tool_use_and_content_end() -> None:
    tool = _parse_frame(
        _event("toolUse", contentId="t", toolName="weather", toolUseId="u1", content='{"x":1}')
    )
    assert tool == ToolUse(
        **RECORD_IDS, content_id="t", tool_name="weather", tool_use_id="u1", content='{"x":1}'
    )
    end = _parse_frame(_event("contentEnd", contentId="t", type="TOOL", stopReason="TOOL_USE"))
    assert end == ContentEnded(
        **RECORD_IDS, content_id="t", kind=ContentKind.TOOL, role=None, stop_reason="TOOL_USE"
    )


def test_usage_event() -> None:
    details = {
        "delta": {
            "input": {"speechTokens": 12, "textTokens": 0},
            "output": {"speechTokens": 0, "textTokens": 5},
        },
        "total": {
            "input": {"speechTokens": 130, "textTokens": 24},
            "output": {"speechTokens": 48, "textTokens": 18},
        },
    }
    record = _parse_frame(
        _event(
            "usageEvent",
            details=details,
            totalInputTokens=154,
            totalOutputTokens=66,
            totalTokens=220,
        )
    )
    assert record == UsageEvent(
        **RECORD_IDS,
        delta=TokenCounts(input_speech=12, input_text=0, output_speech=0, output_text=5),
        total=TokenCounts(input_speech=130, input_text=24, output_speech=48, output_text=18),
        total_input_tokens=154,
        total_output_tokens=66,
        total_tokens=220,
    )


def test_unknown_events_are_kept_not_fatal() -> None:
    record = _parse_frame(_event("userSpeechEnd", extra=1))
    assert record == UnknownEvent(name="userSpeechEnd", body={**IDS, "extra": 1})
    odd_kind = _parse_frame(_event("contentStart", type="IMAGE"))
    assert isinstance(odd_kind, UnknownEvent)


@pytest.mark.parametrize(
    "content",
    [
        BARGE_IN_SIGNAL,
        '{"interrupted":true}',
        '{"interrupted": true}',
        ' {\n  "interrupted" : true\n} ',
    ],
)
def test_barge_in_variants(content: str) -> None:
    record = _parse_frame(_event("textOutput", contentId="k", role="ASSISTANT", content=content))
    assert isinstance(record, TextOutput)
    assert record.is_barge_in
    assert record.content == content


@pytest.mark.parametrize(
    ("role", "content"),
    [
        ("ASSISTANT", "Sorry, I was interrupted."),
        ("ASSISTANT", '{"interrupted": false}'),
        ("ASSISTANT", '{"interrupted": 1}'),
        ("ASSISTANT", '{"interrupted": true, "extra": 1}'),
        ("ASSISTANT", '["interrupted"]'),
        ("USER", BARGE_IN_SIGNAL),
    ],
)
def test_not_barge_in(role: str, content: str) -> None:
    record = _parse_frame(_event("textOutput", contentId="k", role=role, content=content))
    assert isinstance(record, TextOutput)
    assert not record.is_barge_in


def test_barge_in_signal_constant() -> None:
    assert BARGE_IN_SIGNAL == '{ "interrupted" : true }'
    assert is_barge_in_text(BARGE_IN_SIGNAL)


def test_exception_frame_raises_typed_stream_error() -> None:
    frame = decode_message(encode_exception("throttlingException", "slow down"))
    with pytest.raises(SonicStreamError) as caught:
        parse_output_message(frame)
    assert caught.value.exception_type == "throttlingException"
    assert caught.value.message == "slow down"
    assert caught.value.retryable

    frame = decode_message(
        encode_exception(
            "modelStreamErrorException", "m", originalStatusCode=500, originalMessage="orig"
        )
    )
    with pytest.raises(SonicStreamError) as caught:
        parse_output_message(frame)
    assert (caught.value.original_status_code, caught.value.original_message) == (500, "orig")

    with pytest.raises(SonicStreamError) as caught:
        parse_output_message(decode_message(encode_exception("validationException", "bad")))
    assert not caught.value.retryable


def test_error_frame_raises_with_code_and_message() -> None:
    with pytest.raises(SonicStreamError) as caught:
        parse_output_message(decode_message(encode_error("InternalFailure", "oops")))
    assert (caught.value.exception_type, caught.value.message) == ("InternalFailure", "oops")


@pytest.mark.parametrize(
    "headers",
    [
        [Header.string(":message-type", "surprise")],
        [],
        [Header.string(":message-type", "event"), Header.string(":event-type", "other")],
        [Header.string(":message-type", "exception")],
    ],
)
def test_unexpected_frames_are_remote_protocol_errors(headers: list[Header]) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_output_message(decode_message(encode_message(headers, b"{}")))


@pytest.mark.parametrize(
    "nova",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"event": []}',
        b'{"event": {}}',
        b'{"event": {"a": {}, "b": {}}}',
        b'{"event": {"textOutput": "x"}}',
        b'{"event": {"textOutput": {"role": "USER"}}}',
        b'{"event": {"audioOutput": {"content": "***"}}}',
        b'{"event": {"toolUse": {"toolName": "x"}}}',
    ],
)
def test_malformed_events_are_remote_protocol_errors(nova: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_output_event_json(nova)


def test_odd_field_types_do_not_crash() -> None:
    record = parse_output_event_json(
        _event("contentStart", type=["TEXT"], additionalModelFields=[1])
    )
    assert isinstance(record, UnknownEvent)
    record = parse_output_event_json(
        _event(
            "contentStart",
            type="TEXT",
            role=5,
            additionalModelFields={"generationStage": {"x": 1}},
        )
    )
    assert isinstance(record, ContentStarted)
    assert (record.role, record.generation_stage) == (None, None)
    usage = parse_output_event_json(_event("usageEvent", details="x", totalTokens=True))
    assert isinstance(usage, UsageEvent)
    assert usage.total_tokens == 0


def test_parse_message_payload_with_padding_member() -> None:
    nova = _event("completionStart")
    payload = b'{"p":"abc","bytes":"' + base64.b64encode(nova) + b'"}'
    message = Message(
        (
            Header.string(":event-type", "chunk"),
            Header.string(":content-type", "application/json"),
            Header.string(":message-type", "event"),
        ),
        payload,
    )
    assert parse_output_message(message) == CompletionStarted(**RECORD_IDS)


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RemoteProtocolError):
        parse_output_event_json(deep)
    chunk = Message((Header.string(":message-type", "event"),), deep)
    with pytest.raises(RemoteProtocolError):
        parse_output_message(Message((*chunk.headers, Header.string(":event-type", "chunk")), deep))
    with pytest.raises(SonicStreamError):
        parse_output_message(
            Message(
                (
                    Header.string(":message-type", "exception"),
                    Header.string(":exception-type", "validationException"),
                ),
                deep,
            )
        )
    nested_fields = json.dumps(
        {"event": {"contentStart": {"type": "TEXT", "additionalModelFields": "[" * 100_000}}}
    ).encode()
    record = parse_output_event_json(nested_fields)
    assert isinstance(record, ContentStarted)
    assert record.generation_stage is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "sessionId",
        "promptName",
        "completionId",
        "contentId",
        "type",
        "role",
        "content",
        "additionalModelFields",
        "audioOutputConfiguration",
        "stopReason",
        "toolName",
        "toolUseId",
        "details",
        "totalTokens",
    ]
)
NAMES = st.sampled_from(
    [
        "completionStart",
        "contentStart",
        "textOutput",
        "audioOutput",
        "toolUse",
        "contentEnd",
        "completionEnd",
        "usageEvent",
        "other",
    ]
)


@settings(max_examples=300, deadline=None)
@given(NAMES, st.dictionaries(FIELDS, JSON, max_size=8))
def test_any_field_values_give_a_record_or_a_protocol_error(
    name: str, body: dict[str, Any]
) -> None:
    nova = json.dumps({"event": {name: body}}).encode()
    with contextlib.suppress(RemoteProtocolError):
        parse_output_event_json(nova)
