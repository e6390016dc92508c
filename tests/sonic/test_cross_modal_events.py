"""Sans-IO tests of the Nova 2 cross-modal, tool-configuration and tool-result events.

The recorded vectors (``../shared/vectors/bedrock-bidi``) hold no textInput from the USER
role, no toolConfiguration and no toolResult, so these are byte-exact against the shapes and
key orders of the AWS documentation and its speaks-first sample (``client.ts``), written out
here by hand. The system-prompt triple, which the vectors do hold, is checked in
``test_events.py``.
"""

from __future__ import annotations

import json

import pytest

from actors.errors import LocalProtocolError
from actors.sonic import events, output

P = "3f2a9c1e-8d4b-4e6f-a1b2-c3d4e5f60718"
C = "0b6c1d2e-3f40-4a51-8b62-7c8d9e0f1a2b"


def x(template: str) -> bytes:
    """The expected event bytes: ``$P`` and ``$C`` stand for the prompt and content names."""
    return template.replace("$P", P).replace("$C", C).encode()


def test_cross_modal_text_is_a_user_interactive_triple_byte_exact() -> None:
    got = events.cross_modal_text(prompt_name=P, content_name=C, text="1234#")
    assert got == [
        x(
            '{"event":{"contentStart":{"promptName":"$P","contentName":"$C","type":"TEXT",'
            '"interactive":true,"role":"USER","textInputConfiguration":{"mediaType":"text/plain"}}}}'
        ),
        x('{"event":{"textInput":{"promptName":"$P","contentName":"$C","content":"1234#"}}}'),
        x('{"event":{"contentEnd":{"promptName":"$P","contentName":"$C"}}}'),
    ]


def test_cross_modal_text_splits_long_text_into_1kb_text_inputs_of_one_block() -> None:
    text = "word " * 500  # 2500 bytes
    got = events.cross_modal_text(prompt_name=P, content_name=C, text=text)
    inputs = [json.loads(e)["event"]["textInput"] for e in got[1:-1]]
    assert len(inputs) == 3
    assert all(len(i["content"].encode()) <= events.TEXT_INPUT_LIMIT for i in inputs)
    assert "".join(i["content"] for i in inputs) == text
    assert {i["contentName"] for i in inputs} == {C}


def test_cross_modal_text_refuses_empty_text() -> None:
    with pytest.raises(LocalProtocolError):
        events.cross_modal_text(prompt_name=P, content_name=C, text="")


def test_tool_result_block_byte_exact() -> None:
    got = events.tool_result_block(
        prompt_name=P, content_name=C, tool_use_id="tu-1", content='{"error":"no"}'
    )
    assert got == [
        x(
            '{"event":{"contentStart":{"promptName":"$P","contentName":"$C","type":"TOOL",'
            '"interactive":false,"role":"TOOL","toolResultInputConfiguration":{"toolUseId":"tu-1",'
            '"type":"TEXT","textInputConfiguration":{"mediaType":"text/plain"}}}}}'
        ),
        x(
            '{"event":{"toolResult":{"promptName":"$P","contentName":"$C",'
            '"content":"{\\"error\\":\\"no\\"}"}}}'
        ),
        x('{"event":{"contentEnd":{"promptName":"$P","contentName":"$C"}}}'),
    ]


def test_prompt_start_tool_configuration_byte_exact_with_tool_choice_auto() -> None:
    schema = '{"properties":{"reason":{"type":"string"}},"type":"object"}'
    got = events.prompt_start(
        prompt_name=P,
        voice_id="matthew",
        output_sample_rate=8000,
        tools=[events.ToolSpec(name="hang_up", description="End the call", input_schema=schema)],
    )
    assert got == x(
        '{"event":{"promptStart":{"promptName":"$P","textOutputConfiguration":{"mediaType":'
        '"text/plain"},"audioOutputConfiguration":{"mediaType":"audio/lpcm","sampleRateHertz":8000,'
        '"sampleSizeBits":16,"channelCount":1,"voiceId":"matthew","encoding":"base64",'
        '"audioType":"SPEECH"},"toolUseOutputConfiguration":{"mediaType":"application/json"},'
        '"toolConfiguration":{"tools":[{"toolSpec":{"name":"hang_up","description":"End the call",'
        '"inputSchema":{"json":"{\\"properties\\":{\\"reason\\":{\\"type\\":\\"string\\"}},'
        '\\"type\\":\\"object\\"}"}}}],"toolChoice":{"auto":{}}}}}}'
    )


def test_prompt_start_without_tools_has_no_tool_configuration() -> None:
    body = json.loads(
        events.prompt_start(prompt_name=P, voice_id="matthew", output_sample_rate=8000)
    )
    assert "toolConfiguration" not in body["event"]["promptStart"]
    assert "toolUseOutputConfiguration" not in body["event"]["promptStart"]


def _out(name: str, **body: object) -> output.OutputEvent:
    return output.parse_output_event_json(json.dumps({"event": {name: body}}).encode())


def test_parse_tool_content_start_tool_use_and_tool_content_end() -> None:
    ids = {"sessionId": "s", "promptName": P, "completionId": "c"}
    start = _out(
        "contentStart",
        **ids,
        contentId="k",
        type="TOOL",
        role="TOOL",
        toolUseOutputConfiguration={"mediaType": "application/json"},
    )
    assert isinstance(start, output.ContentStarted)
    assert start.kind is output.ContentKind.TOOL and start.role == "TOOL"
    use = _out("toolUse", **ids, contentId="k", toolName="hang_up", toolUseId="tu-9", content="{}")
    assert isinstance(use, output.ToolUse)
    assert (use.tool_use_id, use.tool_name, use.content) == ("tu-9", "hang_up", "{}")
    end = _out("contentEnd", **ids, contentId="k", type="TOOL", stopReason="TOOL_USE")
    assert isinstance(end, output.ContentEnded)
    assert end.kind is output.ContentKind.TOOL and end.stop_reason == "TOOL_USE"
