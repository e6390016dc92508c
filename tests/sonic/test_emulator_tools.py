"""The emulator's tool rules (sans-IO): toolConfiguration as Bedrock checks it, the
daemon's own promptStart accepted, one toolResult per toolUse, and text replies."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from actors.sonic import events
from devkit.emulator.rules import EventRules, PromptStarted, Violation
from devkit.emulator.tools import (
    ToolLedger,
    check_tool_configuration,
    reply_to_text,
    tool_use_events,
)

GOOD: dict[str, Any] = {
    "toolUseOutputConfiguration": {"mediaType": "application/json"},
    "toolConfiguration": {
        "tools": [
            {
                "toolSpec": {
                    "name": "hang_up",
                    "description": "End the call",
                    "inputSchema": {"json": '{"type":"object","properties":{}}'},
                }
            },
            {
                "toolSpec": {
                    "name": "lookup",
                    "description": "Look up an order",
                    "inputSchema": {"json": '{"type":"object"}'},
                }
            },
        ],
        "toolChoice": {"auto": {}},
    },
}


def spec(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    tool: dict[str, Any] = body["toolConfiguration"]["tools"][index]["toolSpec"]
    return tool


def test_a_good_configuration_names_its_tools() -> None:
    assert check_tool_configuration(GOOD) == (("hang_up", "lookup"), None)
    assert check_tool_configuration({}) == ((), None)


def test_the_daemons_own_prompt_start_is_accepted_with_its_tools() -> None:
    rules = EventRules()
    rules.feed(events.session_start())
    schema = '{"properties":{},"type":"object"}'
    got = rules.feed(
        events.prompt_start(
            prompt_name="p",
            voice_id="matthew",
            output_sample_rate=8000,
            tools=[events.ToolSpec(name="hang_up", description="Hang up", input_schema=schema)],
        )
    )
    assert got == PromptStarted(
        prompt_name="p", voice_id="matthew", output_sample_rate=8000, tools=("hang_up",)
    )


def _broken(path: str, value: object) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    if path == "schema-object":
        spec(body)["inputSchema"]["json"] = {"type": "object"}
    elif path == "schema-not-json":
        spec(body)["inputSchema"]["json"] = "{nope"
    elif path == "schema-array":
        spec(body)["inputSchema"]["json"] = "[]"
    elif path == "duplicate":
        spec(body, 1)["name"] = "hang_up"
    elif path == "no-description":
        del spec(body)["description"]
    elif path == "output-config":
        del body["toolUseOutputConfiguration"]
    elif path == "empty":
        body["toolConfiguration"]["tools"] = []
    elif path == "choice":
        body["toolConfiguration"]["toolChoice"] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("schema-object", None, "inputSchema.json must be a JSON Schema as a string"),
        ("schema-not-json", None, "is not valid JSON"),
        ("schema-array", None, "must be a JSON object"),
        ("duplicate", None, "is used twice"),
        ("no-description", None, "description must be a non-empty string"),
        ("output-config", None, "toolUseOutputConfiguration.mediaType must be application/json"),
        ("empty", None, "must be a non-empty list"),
        ("choice", {"auto": {}, "any": {}}, "toolChoice must be"),
        ("choice", {"sometimes": {}}, "toolChoice must be"),
        ("choice", {"tool": {"name": "transfer"}}, "is not an offered tool"),
        ("choice", {"auto": True}, "toolChoice.auto must be an object"),
    ],
)
def test_bad_configurations_are_refused_with_a_useful_message(
    path: str, value: object, message: str
) -> None:
    names, problem = check_tool_configuration(_broken(path, value))
    assert problem is not None and message in problem and names == ()


def test_a_bad_configuration_refuses_the_prompt_start() -> None:
    rules = EventRules()
    rules.feed(events.session_start())
    start = json.loads(
        events.prompt_start(prompt_name="p", voice_id="matthew", output_sample_rate=8000)
    )
    start["event"]["promptStart"].update(_broken("schema-object", None))
    got = rules.feed(json.dumps(start).encode())
    assert isinstance(got, Violation) and "as a string" in got.message


def test_the_ledger_wants_exactly_one_result_per_tool_use() -> None:
    ledger = ToolLedger()
    ledger.issue("a", "hang_up")
    ledger.issue("b", "lookup")
    assert ledger.answer("zzz") is not None
    assert ledger.answer("b") is None  # async tools may finish out of order: counted
    assert ledger.out_of_order == 1
    assert ledger.answer("a") is None
    problem = ledger.answer("a")
    assert problem is not None and "exactly one toolResult" in problem
    assert ledger.pending == []


def test_tool_use_events_parse_back_with_the_client_parser() -> None:
    from actors.sonic import output

    evs = tool_use_events(
        ids={"sessionId": "s", "promptName": "p", "completionId": "c"},
        content_id="k",
        tool_name="lookup",
        tool_use_id="u",
        content="{}",
    )
    parsed = [output.parse_output_event_json(e) for e in evs]
    assert isinstance(parsed[0], output.ContentStarted)
    assert parsed[0].kind is output.ContentKind.TOOL
    assert isinstance(parsed[1], output.ToolUse) and parsed[1].tool_use_id == "u"
    assert isinstance(parsed[2], output.ContentEnded) and parsed[2].stop_reason == "TOOL_USE"


def test_replies_to_text() -> None:
    request = 'Greet the caller now, saying: "Hi, Esther here."'
    assert reply_to_text(request, greeting=True) == "Hi, Esther here."
    assert reply_to_text("hi", greeting=True).startswith("Hello")
    assert reply_to_text("[keys: 12#]", greeting=False) == "You sent me: [keys: 12#]"
